// Triton's extensions of the v2 gRPC service (ModelConfig, ModelStatistics,
// the repository calls, ModelStreamInfer) and Triton-style repositories, on a
// real server over loopback, through raw inference.GRPCInferenceService stubs.
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "dytserve/client.h"
#include "dytserve/inputs.h"
#include "inference/grpc_service.grpc.pb.h"
#include "support/server_process.h"
#include "support/suite_server.h"

namespace dytserve {
namespace {

namespace fs = std::filesystem;
using testing::ServerProcess;

constexpr char kAdminToken[] = "triton-admin-token";

// A Triton config for a PyTorch model, as Triton's docs write them: the
// digits ViT under INPUT__0/OUTPUT__0.
constexpr char kTritonVit[] = R"(name: "triton_vit"
platform: "pytorch_libtorch"
backend: "pytorch"
max_batch_size: 8
input [
  {
    name: "INPUT__0"
    data_type: TYPE_FP32
    dims: [ 1, 8, 8 ]
  }
]
output [
  {
    name: "OUTPUT__0"
    data_type: TYPE_FP32
    dims: [ 10 ]
  }
]
dynamic_batching { }
instance_group [ { count: 2, kind: KIND_CPU } ]
version_policy: { latest: { num_versions: 1 } }
parameters: { key: "INFERENCE_MODE" value: { string_value: "true" } }
)";

// Triton fields that dytserve does not serve: each must be named.
constexpr char kTritonUnserved[] = R"(name: "triton_unserved"
platform: "pytorch_libtorch"
max_batch_size: 8
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 1, 8, 8 ] reshape: { shape: [ 64 ] } } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 10 ] label_filename: "labels.txt" } ]
sequence_batching { max_sequence_idle_microseconds: 5000000 }
model_warmup [ { name: "w" batch_size: 1 } ]
instance_group [ { kind: KIND_CPU rate_limiter { priority: 1 } } ]
)";

fs::path TestDir() { return fs::temp_directory_path() / absl::StrCat("dytserve-triton-", getpid()); }

class TritonTest : public testing::SuiteServerTest<TritonTest> {
 public:
  static std::vector<std::string> ServerArgs() {
    const fs::path dir = TestDir();
    fs::remove_all(dir);
    fs::create_directories(dir);
    testing::CopyModels(DYTSERVE_TEST_REPO, dir.string(), {"vit_dyt", "vit_ln", "llama_dyt"});
    const std::string vit_pt = (fs::path(DYTSERVE_TEST_REPO) / "vit_dyt" / "1" / "model.pt").string();
    testing::AddModel(dir.string(), "triton_vit", vit_pt, kTritonVit);
    testing::AddModel(dir.string(), "triton_unserved", vit_pt, kTritonUnserved);
    std::ofstream(dir / "admin.token") << kAdminToken << "\n";
    return {absl::StrCat("--model_repository=", dir.string()),
            absl::StrCat("--admin_token_file=", (dir / "admin.token").string()), "--strict_readiness=false"};
  }

 protected:
  static void TearDownTestSuite() {
    SuiteServerTest<TritonTest>::TearDownTestSuite();
    fs::remove_all(TestDir());
  }

  std::unique_ptr<inference::GRPCInferenceService::Stub> Stub() {
    return inference::GRPCInferenceService::NewStub(
        grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials()));
  }

  static void Admin(grpc::ClientContext* ctx) { ctx->AddMetadata("authorization", absl::StrCat("Bearer ", kAdminToken)); }

  // A valid request for `model` of `rows` rows, with id `id`.
  inference::ModelInferRequest Request(const std::string& model, int64_t rows, uint64_t seed, const std::string& id) {
    ModelMetadata metadata;
    metadata.name = model;
    metadata.inputs.push_back({"pixel_values", "FP32", {-1, 1, 8, 8}});
    if (absl::StartsWith(model, "triton_")) metadata.inputs[0].name = "INPUT__0";
    GenerateOptions options;
    options.rows = rows;
    std::mt19937_64 rng(seed);
    inference::ModelInferRequest req;
    Client::BuildRequest(model, *GenerateInputs(metadata, options, &rng), {}, &req);
    req.set_id(id);
    return req;
  }

  // Raw FP32 answers equal within 1e-5: a request batched with others may
  // differ from itself alone in the last bits.
  static void ExpectClose(const std::string& a, const std::string& b) {
    ASSERT_EQ(a.size(), b.size());
    std::vector<float> x(a.size() / 4), y(b.size() / 4);
    std::memcpy(x.data(), a.data(), a.size());
    std::memcpy(y.data(), b.data(), b.size());
    for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(x[i], y[i], 1e-5) << "element " << i;
  }

  grpc::Status Infer(const inference::ModelInferRequest& req, inference::ModelInferResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    return Stub()->ModelInfer(&ctx, req, resp);
  }
};

TEST_F(TritonTest, ServerMetadataListsExactlyTheExtensionsServed) {
  grpc::ClientContext ctx;
  inference::ServerMetadataResponse resp;
  ASSERT_TRUE(Stub()->ServerMetadata(&ctx, {}, &resp).ok());
  EXPECT_EQ(std::set<std::string>(resp.extensions().begin(), resp.extensions().end()),
            (std::set<std::string>{"model_configuration", "statistics", "model_repository"}));
}

TEST_F(TritonTest, ModelConfigCarriesWhatTritonToolsRead) {
  grpc::ClientContext ctx;
  inference::ModelConfigRequest req;
  req.set_name("vit_dyt");
  inference::ModelConfigResponse resp;
  ASSERT_TRUE(Stub()->ModelConfig(&ctx, req, &resp).ok());
  const inference::ModelConfig& c = resp.config();
  EXPECT_EQ(c.name(), "vit_dyt");
  EXPECT_EQ(c.platform(), "pytorch_libtorch");
  EXPECT_EQ(c.backend(), "pytorch");
  EXPECT_EQ(c.max_batch_size(), 64);
  ASSERT_EQ(c.input_size(), 1);
  EXPECT_EQ(c.input(0).name(), "pixel_values");
  EXPECT_EQ(c.input(0).data_type(), inference::TYPE_FP32);
  EXPECT_EQ(std::vector<int64_t>(c.input(0).dims().begin(), c.input(0).dims().end()), (std::vector<int64_t>{1, 8, 8}));
  ASSERT_EQ(c.output_size(), 1);
  EXPECT_EQ(c.output(0).name(), "logits");
  EXPECT_EQ(std::vector<int64_t>(c.output(0).dims().begin(), c.output(0).dims().end()), (std::vector<int64_t>{10}));
  ASSERT_TRUE(c.has_dynamic_batching());
  EXPECT_EQ(c.dynamic_batching().max_queue_delay_microseconds(), 2000u);
  EXPECT_EQ(c.dynamic_batching().default_queue_policy().max_queue_size(), 256u);
  ASSERT_EQ(c.instance_group_size(), 1);
  EXPECT_EQ(c.instance_group(0).kind(), inference::ModelInstanceGroup::KIND_CPU);
  EXPECT_EQ(c.instance_group(0).count(), 1);
  EXPECT_EQ(c.parameters().at("norm").string_value(), "dyt");
  EXPECT_TRUE(c.version_policy().has_latest());

  // The decoder: INT64 tokens of any length; its server-made mask is not an input.
  grpc::ClientContext ctx2;
  req.set_name("llama_dyt");
  ASSERT_TRUE(Stub()->ModelConfig(&ctx2, req, &resp).ok());
  ASSERT_EQ(resp.config().input_size(), 1);
  EXPECT_EQ(resp.config().input(0).data_type(), inference::TYPE_INT64);
  EXPECT_EQ(resp.config().input(0).dims(0), -1);

  grpc::ClientContext ctx3;
  req.set_name("no_such_model");
  grpc::Status missing = Stub()->ModelConfig(&ctx3, req, &resp);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(absl::StrContains(missing.error_message(), "no_such_model")) << missing.error_message();
}

TEST_F(TritonTest, StatisticsCountRequestsBatchesAndTheirTimes) {
  auto stats = [this](const std::string& model) {
    grpc::ClientContext ctx;
    inference::ModelStatisticsRequest req;
    req.set_name(model);
    inference::ModelStatisticsResponse resp;
    EXPECT_TRUE(Stub()->ModelStatistics(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.model_stats_size(), 1);
    return resp.model_stats_size() == 1 ? resp.model_stats(0) : inference::ModelStatistics();
  };
  const inference::ModelStatistics before = stats("vit_ln");
  const absl::Time start = absl::Now();
  for (int i = 0; i < 3; ++i) {
    inference::ModelInferResponse resp;
    ASSERT_TRUE(Infer(Request("vit_ln", 2, i, "s"), &resp).ok());
  }
  inference::ModelInferRequest bad = Request("vit_ln", 1, 9, "bad");
  bad.mutable_inputs(0)->set_datatype("INT64");  // refused before it queues
  inference::ModelInferResponse ignored;
  EXPECT_FALSE(Infer(bad, &ignored).ok());

  const inference::ModelStatistics after = stats("vit_ln");
  EXPECT_EQ(after.name(), "vit_ln");
  EXPECT_EQ(after.version(), "1");
  const inference::InferStatistics& s = after.inference_stats();
  const inference::InferStatistics& b = before.inference_stats();
  EXPECT_EQ(s.success().count() - b.success().count(), 3u);
  EXPECT_GT(s.success().ns(), b.success().ns());
  EXPECT_EQ(s.queue().count() - b.queue().count(), 3u);
  EXPECT_EQ(s.compute_infer().count() - b.compute_infer().count(), 3u);
  EXPECT_GT(s.compute_infer().ns(), b.compute_infer().ns());
  EXPECT_EQ(s.compute_input().count() - b.compute_input().count(), 3u);
  EXPECT_EQ(s.compute_output().count() - b.compute_output().count(), 3u);
  EXPECT_EQ(after.inference_count() - before.inference_count(), 6u);
  EXPECT_EQ(after.execution_count() - before.execution_count(), 3u);
  // A request's success time covers its queue and compute times.
  EXPECT_GE(s.success().ns() - b.success().ns(), s.compute_infer().ns() - b.compute_infer().ns());
  EXPECT_GE(after.last_inference(), static_cast<uint64_t>(absl::ToUnixMillis(start)));
  uint64_t executions = 0;
  for (const inference::InferBatchStatistics& batch : after.batch_stats()) {
    EXPECT_GT(batch.batch_size(), 0u);
    EXPECT_EQ(batch.compute_infer().count(), batch.compute_input().count());
    executions += batch.compute_infer().count();
  }
  EXPECT_EQ(executions, after.execution_count());

  // Every model and version at once; an unknown one is NOT_FOUND.
  grpc::ClientContext all_ctx;
  inference::ModelStatisticsResponse all;
  ASSERT_TRUE(Stub()->ModelStatistics(&all_ctx, {}, &all).ok());
  std::set<std::string> names;
  for (const auto& m : all.model_stats()) names.insert(m.name());
  EXPECT_EQ(names, (std::set<std::string>{"llama_dyt", "triton_vit", "vit_dyt", "vit_ln"}));
  grpc::ClientContext missing_ctx;
  inference::ModelStatisticsRequest missing;
  missing.set_name("vit_ln");
  missing.set_version("7");
  EXPECT_EQ(Stub()->ModelStatistics(&missing_ctx, missing, &all).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(TritonTest, RepositoryCallsNeedTheAdminTokenAndControlTheRepository) {
  // No token, a wrong one: refused.
  {
    grpc::ClientContext ctx;
    inference::RepositoryIndexResponse resp;
    EXPECT_EQ(Stub()->RepositoryIndex(&ctx, {}, &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED);
    grpc::ClientContext wrong;
    wrong.AddMetadata("authorization", "Bearer nope");
    inference::RepositoryModelUnloadRequest unload;
    unload.set_model_name("vit_ln");
    inference::RepositoryModelUnloadResponse unloaded;
    EXPECT_EQ(Stub()->RepositoryModelUnload(&wrong, unload, &unloaded).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  auto index = [this](bool ready_only) {
    grpc::ClientContext ctx;
    Admin(&ctx);
    inference::RepositoryIndexRequest req;
    req.set_ready(ready_only);
    inference::RepositoryIndexResponse resp;
    EXPECT_TRUE(Stub()->RepositoryIndex(&ctx, req, &resp).ok());
    std::map<std::string, inference::RepositoryIndexResponse::ModelIndex> out;
    for (const auto& m : resp.models()) out[m.name()] = m;
    return out;
  };
  auto all = index(false);
  ASSERT_EQ(all.count("vit_ln"), 1u);
  EXPECT_EQ(all["vit_ln"].state(), "READY");
  EXPECT_EQ(all["vit_ln"].version(), "1");
  // The Triton config with unserved fields is listed, not ready, with why.
  ASSERT_EQ(all.count("triton_unserved"), 1u);
  EXPECT_EQ(all["triton_unserved"].state(), "UNAVAILABLE");
  EXPECT_TRUE(absl::StrContains(all["triton_unserved"].reason(), "sequence_batching")) << all["triton_unserved"].reason();
  EXPECT_FALSE(absl::StrContains(all["triton_unserved"].reason(), "ModelWarmup")) << all["triton_unserved"].reason();
  EXPECT_EQ(index(true).count("triton_unserved"), 0u);

  // Unload, then load again, by Triton's calls.
  {
    grpc::ClientContext ctx;
    Admin(&ctx);
    inference::RepositoryModelUnloadRequest req;
    req.set_model_name("vit_dyt");
    inference::RepositoryModelUnloadResponse resp;
    ASSERT_TRUE(Stub()->RepositoryModelUnload(&ctx, req, &resp).ok());
  }
  {
    grpc::ClientContext ctx;
    inference::ModelReadyRequest req;
    req.set_name("vit_dyt");
    inference::ModelReadyResponse resp;
    ASSERT_TRUE(Stub()->ModelReady(&ctx, req, &resp).ok());
    EXPECT_FALSE(resp.ready());
  }
  EXPECT_EQ(index(true).count("vit_dyt"), 0u);
  {
    grpc::ClientContext ctx;
    Admin(&ctx);
    inference::RepositoryModelLoadRequest req;
    req.set_model_name("vit_dyt");
    inference::RepositoryModelLoadResponse resp;
    grpc::Status loaded = Stub()->RepositoryModelLoad(&ctx, req, &resp);
    ASSERT_TRUE(loaded.ok()) << loaded.error_code() << " " << loaded.error_message() << server_->Stderr();
  }
  inference::ModelInferResponse served;
  EXPECT_TRUE(Infer(Request("vit_dyt", 1, 3, "after-load"), &served).ok());

  // What dytserve cannot do is refused by name.
  {
    grpc::ClientContext ctx;
    Admin(&ctx);
    inference::RepositoryModelLoadRequest req;
    req.set_model_name("vit_dyt");
    (*req.mutable_parameters())["config"].set_string_param("{}");
    inference::RepositoryModelLoadResponse resp;
    grpc::Status s = Stub()->RepositoryModelLoad(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_TRUE(absl::StrContains(s.error_message(), "config")) << s.error_message();
    grpc::ClientContext other;
    Admin(&other);
    req.clear_parameters();
    req.set_repository_name("elsewhere");
    s = Stub()->RepositoryModelLoad(&other, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_TRUE(absl::StrContains(s.error_message(), "elsewhere")) << s.error_message();
  }
}

TEST_F(TritonTest, ATritonRepositoryModelServesAsItIs) {
  inference::ModelInferResponse triton;
  inference::ModelInferResponse own;
  ASSERT_TRUE(Infer(Request("triton_vit", 3, 5, "t"), &triton).ok());
  ASSERT_TRUE(Infer(Request("vit_dyt", 3, 5, "o"), &own).ok());
  ASSERT_EQ(triton.outputs_size(), 1);
  EXPECT_EQ(triton.outputs(0).name(), "OUTPUT__0");
  ExpectClose(triton.raw_output_contents(0), own.raw_output_contents(0));  // same file, same inputs

  grpc::ClientContext ctx;
  inference::ModelConfigRequest req;
  req.set_name("triton_vit");
  inference::ModelConfigResponse config;
  ASSERT_TRUE(Stub()->ModelConfig(&ctx, req, &config).ok());
  EXPECT_EQ(config.config().instance_group(0).count(), 2);
  EXPECT_EQ(config.config().parameters().at("INFERENCE_MODE").string_value(), "true");
  EXPECT_EQ(config.config().input(0).name(), "INPUT__0");
}

TEST_F(TritonTest, UnservedTritonFieldsAreEachNamed) {
  const std::string log = server_->Stderr();
  for (const char* field : {"input[0].reshape", "output[0].label_filename", "sequence_batching", "model_warmup",
                            "instance_group[0].rate_limiter"}) {
    EXPECT_TRUE(absl::StrContains(log, field)) << field << " is not named in:\n" << log;
  }
}

// Requests written on one stream are answered on it, each with its id; a bad
// one is answered with error_message and the stream goes on.
TEST_F(TritonTest, StreamAnswersEachRequestByIdAndErrorsInBand) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  auto stream = Stub()->ModelStreamInfer(&ctx);
  std::map<std::string, inference::ModelInferRequest> sent;
  for (int i = 0; i < 8; ++i) {
    inference::ModelInferRequest req = Request(i % 2 == 0 ? "vit_dyt" : "vit_ln", 1 + i % 3, 100 + i, absl::StrCat("r", i));
    if (i == 4) req.mutable_inputs(0)->set_datatype("INT64");  // wrong
    if (i == 6) req.set_model_name("no_such_model");
    sent[req.id()] = req;
    ASSERT_TRUE(stream->Write(req));
  }
  ASSERT_TRUE(stream->WritesDone());
  std::map<std::string, inference::ModelStreamInferResponse> got;
  inference::ModelStreamInferResponse resp;
  while (stream->Read(&resp)) got[resp.infer_response().id()] = resp;
  grpc::Status status = stream->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(got.size(), sent.size());
  for (const auto& [id, req] : sent) {
    SCOPED_TRACE(id);
    const inference::ModelStreamInferResponse& r = got[id];
    if (id == "r4" || id == "r6") {
      EXPECT_FALSE(r.error_message().empty());
      EXPECT_TRUE(absl::StrContains(r.error_message(), id == "r4" ? "datatype" : "no_such_model")) << r.error_message();
      continue;
    }
    EXPECT_EQ(r.error_message(), "");
    inference::ModelInferResponse unary;
    ASSERT_TRUE(Infer(req, &unary).ok());
    EXPECT_EQ(r.infer_response().model_name(), req.model_name());
    ASSERT_EQ(r.infer_response().raw_output_contents_size(), 1);
    ExpectClose(r.infer_response().raw_output_contents(0), unary.raw_output_contents(0));
  }
}

TEST_F(TritonTest, StreamCancelledOrPastItsDeadlineEndsAndTheServerServesOn) {
  {
    grpc::ClientContext ctx;
    auto stream = Stub()->ModelStreamInfer(&ctx);
    for (int i = 0; i < 16; ++i) ASSERT_TRUE(stream->Write(Request("vit_dyt", 8, i, absl::StrCat("c", i))));
    ctx.TryCancel();
    inference::ModelStreamInferResponse resp;
    while (stream->Read(&resp)) {
    }
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  {
    grpc::ClientContext ctx;
    // Long enough for an answer on a loaded machine under a sanitizer; the
    // stream then stays open until the deadline ends it.
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(3)));
    auto stream = Stub()->ModelStreamInfer(&ctx);
    ASSERT_TRUE(stream->Write(Request("vit_dyt", 1, 1, "d")));
    inference::ModelStreamInferResponse resp;
    ASSERT_TRUE(stream->Read(&resp));  // answered within the deadline
    EXPECT_EQ(resp.infer_response().id(), "d");
    // The stream is left open: the deadline ends it.
    while (stream->Read(&resp)) {
    }
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  inference::ModelInferResponse resp;
  EXPECT_TRUE(Infer(Request("vit_dyt", 1, 2, "after"), &resp).ok());
}

}  // namespace
}  // namespace dytserve
