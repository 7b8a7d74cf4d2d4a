// The real dytserve-server binary on loopback, serving the exported default
// repository, driven by the real client library and by raw v2 stubs.
#include <arpa/inet.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "dytserve/client.h"
#include "dytserve/inputs.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "inference/grpc_service.grpc.pb.h"
#include "support/server_process.h"
#include "support/suite_server.h"

namespace dytserve {
namespace {

namespace fs = std::filesystem;
using testing::ServerProcess;

const char* const kServer = DYTSERVE_SERVER_BIN;
const char* const kRepo = DYTSERVE_TEST_REPO;

// Reference outputs computed in-process with LibTorch from the same file.
at::Tensor Reference(const std::string& model, const std::vector<Tensor>& inputs) {
  torch::jit::Module module = torch::jit::load(absl::StrCat(kRepo, "/", model, "/1/model.pt"));
  module.eval();
  c10::InferenceMode guard;
  std::vector<torch::jit::IValue> args;
  for (const Tensor& t : inputs) {
    const at::ScalarType type = t.datatype == "INT64" ? at::kLong : at::kFloat;
    at::Tensor x = at::empty(t.shape, at::TensorOptions().dtype(type));
    std::memcpy(x.data_ptr(), t.data.data(), t.data.size());
    args.emplace_back(x);
  }
  return module.forward(args).toTensor();
}

at::Tensor ToAt(const Tensor& t) {
  absl::StatusOr<std::vector<float>> values = t.As<float>();
  EXPECT_TRUE(values.ok()) << values.status();
  return at::tensor(*values).reshape(t.shape);
}

class ServerTest : public testing::SuiteServerTest<ServerTest> {
 protected:
  static void SetUpTestSuite() {
    SuiteServerTest::SetUpTestSuite();
    if (server_ == nullptr) return;
    ClientOptions options;
    options.endpoints = {server_->grpc_address()};
    client_ = Client::Create(options)->release();
    channel_ = new std::shared_ptr<grpc::Channel>(
        grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials()));
  }
  static void TearDownTestSuite() {
    delete client_;
    delete channel_;
    SuiteServerTest::TearDownTestSuite();
  }

  static std::vector<Tensor> Inputs(const std::string& model, int64_t rows, int64_t seq_len, uint64_t seed) {
    absl::StatusOr<ModelMetadata> metadata = client_->GetModelMetadata(model);
    EXPECT_TRUE(metadata.ok()) << metadata.status();
    GenerateOptions options;
    options.rows = rows;
    options.seq_len = seq_len;
    options.int_high = 256;
    std::mt19937_64 rng(seed);
    return *GenerateInputs(*metadata, options, &rng);
  }

  // A valid raw ViT request for the raw-stub tests to break.
  static inference::ModelInferRequest VitRequest() {
    inference::ModelInferRequest req;
    Client::BuildRequest("vit_dyt", Inputs("vit_dyt", 2, 1, 7), {}, &req);
    return req;
  }

  static grpc::Status RawInfer(const inference::ModelInferRequest& req, inference::ModelInferResponse* resp,
                               absl::Duration deadline = absl::Seconds(30)) {
    auto stub = inference::GRPCInferenceService::NewStub(*channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    return stub->ModelInfer(&ctx, req, resp);
  }

  static Client* client_;
  static std::shared_ptr<grpc::Channel>* channel_;
};

Client* ServerTest::client_ = nullptr;
std::shared_ptr<grpc::Channel>* ServerTest::channel_ = nullptr;

TEST_F(ServerTest, ListeningLineIsExactlyOneStdoutLine) {
  EXPECT_TRUE(absl::StartsWith(server_->listening_line(), "dytserve listening grpc=127.0.0.1:"));
  EXPECT_NE(server_->listening_line().find(" metrics=127.0.0.1:"), std::string::npos);
}

TEST_F(ServerTest, VitOutputsMatchLibTorch) {
  // The softmax pair and the softmax-free (ReLU(qk/sqrt(d))/L) pair.
  for (const std::string model : {"vit_ln", "vit_dyt", "vit_relu_attn", "vit_dyt_relu_attn"}) {
    SCOPED_TRACE(model);
    const std::vector<Tensor> inputs = Inputs(model, 3, 1, 11);
    absl::StatusOr<InferResult> result = client_->Infer(model, inputs);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->model_name, model);
    EXPECT_EQ(result->model_version, "1");
    const Tensor* logits = result->Find("logits");
    ASSERT_NE(logits, nullptr);
    EXPECT_EQ(logits->shape, (std::vector<int64_t>{3, 10}));
    const double diff = (ToAt(*logits) - Reference(model, inputs)).abs().max().item<double>();
    EXPECT_LE(diff, 1e-5);
  }
}

TEST_F(ServerTest, DecoderOutputsMatchLibTorchAtSeveralLengths) {
  for (const std::string model : {"llama_rms", "llama_dyt"}) {
    for (int64_t len : {1, 5, 33}) {
      SCOPED_TRACE(absl::StrCat(model, " len ", len));
      const std::vector<Tensor> inputs = Inputs(model, 2, len, 100 + len);
      absl::StatusOr<InferResult> result = client_->Infer(model, inputs);
      ASSERT_TRUE(result.ok()) << result.status();
      const Tensor* logits = result->Find("logits");
      ASSERT_NE(logits, nullptr);
      EXPECT_EQ(logits->shape, (std::vector<int64_t>{2, len, 256}));
      const double diff = (ToAt(*logits) - Reference(model, inputs)).abs().max().item<double>();
      EXPECT_LE(diff, 1e-5);
    }
  }
}

TEST_F(ServerTest, TypedContentsGiveTheSameAnswerAsRaw) {
  inference::ModelInferRequest raw = VitRequest();
  inference::ModelInferRequest typed = raw;
  typed.clear_raw_input_contents();
  const std::string& bytes = raw.raw_input_contents(0);
  for (size_t i = 0; i < bytes.size(); i += 4) {
    float v;
    std::memcpy(&v, bytes.data() + i, 4);
    typed.mutable_inputs(0)->mutable_contents()->add_fp32_contents(v);
  }
  inference::ModelInferResponse a, b;
  ASSERT_TRUE(RawInfer(raw, &a).ok());
  const grpc::Status s = RawInfer(typed, &b);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(a.raw_output_contents(0), b.raw_output_contents(0));
}

TEST_F(ServerTest, AsyncInferWorks) {
  absl::Notification done;
  absl::StatusOr<InferResult> got = absl::UnknownError("not called");
  client_->InferAsync("vit_ln", Inputs("vit_ln", 1, 1, 3), {}, [&](absl::StatusOr<InferResult> r) {
    got = std::move(r);
    done.Notify();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(60)));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->Find("logits")->shape, (std::vector<int64_t>{1, 10}));
}

struct ErrorCase {
  const char* label;
  std::function<void(inference::ModelInferRequest*)> mutate;
  grpc::StatusCode code;
  const char* message_part;
};
// Test logs name the case, not its bytes.
void PrintTo(const ErrorCase& c, std::ostream* os) { *os << c.label; }


class ServerErrors : public ServerTest, public ::testing::WithParamInterface<ErrorCase> {};

TEST_P(ServerErrors, ReturnsItsCodeAndTheServerLivesOn) {
  inference::ModelInferRequest req = VitRequest();
  GetParam().mutate(&req);
  inference::ModelInferResponse resp;
  const grpc::Status s = RawInfer(req, &resp);
  EXPECT_EQ(s.error_code(), GetParam().code) << s.error_message();
  EXPECT_NE(s.error_message().find(GetParam().message_part), std::string::npos) << s.error_message();
  // The server still answers a good request.
  inference::ModelInferResponse ok;
  EXPECT_TRUE(RawInfer(VitRequest(), &ok).ok());
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ServerErrors,
    ::testing::Values(
        ErrorCase{"unknown_model", [](auto* r) { r->set_model_name("nope"); }, grpc::NOT_FOUND, "'nope'"},
        ErrorCase{"unknown_version", [](auto* r) { r->set_model_version("9"); }, grpc::NOT_FOUND, "no version '9'"},
        ErrorCase{"missing_input", [](auto* r) { r->clear_inputs(); r->clear_raw_input_contents(); },
                  grpc::INVALID_ARGUMENT, "'pixel_values': is missing"},
        ErrorCase{"extra_input", [](auto* r) { auto* in = r->add_inputs(); *in = r->inputs(0); in->set_name("extra"); r->add_raw_input_contents(r->raw_input_contents(0)); },
                  grpc::INVALID_ARGUMENT, "unexpected input 'extra'"},
        ErrorCase{"duplicate_input", [](auto* r) { *r->add_inputs() = r->inputs(0); r->add_raw_input_contents(r->raw_input_contents(0)); },
                  grpc::INVALID_ARGUMENT, "given more than once"},
        ErrorCase{"wrong_datatype", [](auto* r) { r->mutable_inputs(0)->set_datatype("FP64"); },
                  grpc::INVALID_ARGUMENT, "datatype FP64 does not match the model's FP32"},
        ErrorCase{"wrong_rank", [](auto* r) { r->mutable_inputs(0)->add_shape(1); }, grpc::INVALID_ARGUMENT, "rank 5"},
        ErrorCase{"wrong_shape", [](auto* r) { r->mutable_inputs(0)->set_shape(2, 4); r->mutable_inputs(0)->set_shape(3, 16); },
                  grpc::INVALID_ARGUMENT, "at dimension 2"},
        ErrorCase{"negative_dim", [](auto* r) { r->mutable_inputs(0)->set_shape(0, -1); }, grpc::INVALID_ARGUMENT, "negative"},
        ErrorCase{"overflowing_dims", [](auto* r) { r->mutable_inputs(0)->set_shape(0, int64_t{1} << 61); },
                  grpc::INVALID_ARGUMENT, "too many elements"},
        ErrorCase{"raw_size", [](auto* r) { r->mutable_raw_input_contents(0)->pop_back(); }, grpc::INVALID_ARGUMENT,
                  "raw contents have 511 bytes"},
        ErrorCase{"raw_and_typed", [](auto* r) { r->mutable_inputs(0)->mutable_contents()->add_fp32_contents(1); },
                  grpc::INVALID_ARGUMENT, "one or the other"},
        ErrorCase{"typed_wrong_kind", [](auto* r) { r->clear_raw_input_contents(); for (int i = 0; i < 128; ++i) r->mutable_inputs(0)->mutable_contents()->add_int64_contents(1); },
                  grpc::INVALID_ARGUMENT, "wrong kind"},
        ErrorCase{"typed_wrong_count", [](auto* r) { r->clear_raw_input_contents(); r->mutable_inputs(0)->mutable_contents()->add_fp32_contents(1); },
                  grpc::INVALID_ARGUMENT, "has 1 values, the shape needs 128"},
        ErrorCase{"batch_too_large", [](auto* r) { r->mutable_inputs(0)->set_shape(0, 65); r->mutable_raw_input_contents(0)->resize(65 * 256); },
                  grpc::INVALID_ARGUMENT, "exceeds max_batch_size 64"},
        ErrorCase{"timeout_param_type", [](auto* r) { (*r->mutable_parameters())["timeout_us"].set_string_param("5"); },
                  grpc::INVALID_ARGUMENT, "'timeout_us' must be a positive int64_param"},
        ErrorCase{"timeout_param_passed", [](auto* r) { (*r->mutable_parameters())["timeout_us"].set_int64_param(1); },
                  grpc::DEADLINE_EXCEEDED, "deadline passed"},
        ErrorCase{"unknown_output", [](auto* r) { r->add_outputs()->set_name("probs"); }, grpc::INVALID_ARGUMENT,
                  "requested output 'probs'"}),
    [](const auto& info) { return std::string(info.param.label); });

TEST_F(ServerTest, ExpiredDeadlineIsHonoured) {
  inference::ModelInferResponse resp;
  const grpc::Status s = RawInfer(VitRequest(), &resp, absl::Microseconds(1));
  EXPECT_EQ(s.error_code(), grpc::DEADLINE_EXCEEDED) << s.error_message();
}

TEST_F(ServerTest, ModelThatThrowsFailsOnlyThatRequest) {
  // Token ids beyond the vocabulary make the embedding throw inside the model.
  std::vector<Tensor> inputs = {Tensor::From<int64_t>("input_ids", {1, 3}, {1, 100000, 2})};
  absl::StatusOr<InferResult> bad = client_->Infer("llama_dyt", inputs);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInternal) << bad.status();
  EXPECT_NE(bad.status().message().find("llama_dyt"), std::string::npos) << bad.status();
  EXPECT_TRUE(client_->Infer("llama_dyt", Inputs("llama_dyt", 1, 4, 5)).ok());
}

TEST_F(ServerTest, HugeShapeWithoutContentsIsRefusedWithoutAllocating) {
  inference::ModelInferRequest req;
  req.set_model_name("llama_dyt");
  auto* in = req.add_inputs();
  in->set_name("input_ids");
  in->set_datatype("INT64");
  in->add_shape(1);
  in->add_shape(int64_t{1} << 37);  // 1 TiB of INT64 if it were allocated
  in->mutable_contents();
  inference::ModelInferResponse resp;
  const grpc::Status s = RawInfer(req, &resp);
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT) << s.error_message();
  // The server's element limit sees it first, from the declared shape alone.
  EXPECT_NE(s.error_message().find("over the server's --max_request_elements"), std::string::npos)
      << s.error_message();
  req.mutable_inputs(0)->set_shape(1, 0);
  EXPECT_EQ(RawInfer(req, &resp).error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_TRUE(*client_->ServerLive());
}

TEST_F(ServerTest, DeclaredElementsThatOverflowWhenSummedAreRefused) {
  // Each input alone stays below 2^63 elements; their sum would not.
  inference::ModelInferRequest req;
  req.set_model_name("vit_ln");
  for (const char* name : {"pixel_values", "extra"}) {
    auto* in = req.add_inputs();
    in->set_name(name);
    in->set_datatype("FP32");
    in->add_shape(int64_t{1} << 62);
  }
  inference::ModelInferResponse resp;
  const grpc::Status s = RawInfer(req, &resp);
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("over the server's --max_request_elements"), std::string::npos)
      << s.error_message();
  EXPECT_TRUE(client_->ServerLive().value_or(false)) << "the server survived";
}

TEST_F(ServerTest, OneBadRequestDoesNotFailItsBatchmates) {
  constexpr int kRequests = 12;
  absl::Mutex mu;
  std::vector<absl::StatusCode> codes(kRequests, absl::StatusCode::kUnknown);
  absl::BlockingCounter pending(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    std::vector<int64_t> ids = {1, 2, 3, 4};
    if (i == 5) ids[2] = 100000;  // past the vocabulary: the embedding throws
    client_->InferAsync("llama_rms", {Tensor::From<int64_t>("input_ids", {1, 4}, ids)}, {},
                        [&, i](absl::StatusOr<InferResult> r) {
                          {
                            absl::MutexLock lock(&mu);
                            codes[i] = r.status().code();
                          }
                          // After the lock: once the count hits zero the test
                          // may return and destroy `mu`.
                          pending.DecrementCount();
                        });
  }
  pending.Wait();
  for (int i = 0; i < kRequests; ++i) {
    EXPECT_EQ(codes[i], i == 5 ? absl::StatusCode::kInternal : absl::StatusCode::kOk) << "request " << i;
  }
}

TEST_F(ServerTest, HealthCheckAndWatch) {
  EXPECT_EQ(*client_->Health(""), HealthStatus::kServing);
  for (const char* model : {"vit_ln", "vit_dyt", "llama_rms", "llama_dyt"}) {
    EXPECT_EQ(*client_->Health(model), HealthStatus::kServing) << model;
    EXPECT_TRUE(*client_->ModelReady(model)) << model;
  }
  EXPECT_EQ(client_->Health("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(*client_->ModelReady("nope"));
  EXPECT_TRUE(*client_->ServerLive());
  EXPECT_TRUE(*client_->ServerReady());

  auto stub = grpc::health::v1::Health::NewStub(*channel_);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  grpc::health::v1::HealthCheckRequest req;
  req.set_service("vit_dyt");
  auto reader = stub->Watch(&ctx, req);
  grpc::health::v1::HealthCheckResponse first;
  ASSERT_TRUE(reader->Read(&first));
  EXPECT_EQ(first.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  ctx.TryCancel();
}

TEST_F(ServerTest, Metadata) {
  absl::StatusOr<ServerMetadata> server = client_->GetServerMetadata();
  ASSERT_TRUE(server.ok());
  EXPECT_EQ(server->name, "dytserve");
  absl::StatusOr<ModelMetadata> vit = client_->GetModelMetadata("vit_dyt");
  ASSERT_TRUE(vit.ok());
  EXPECT_EQ(vit->versions, std::vector<std::string>{"1"});
  ASSERT_EQ(vit->inputs.size(), 1u);
  EXPECT_EQ(vit->inputs[0].name, "pixel_values");
  EXPECT_EQ(vit->inputs[0].datatype, "FP32");
  EXPECT_EQ(vit->inputs[0].shape, (std::vector<int64_t>{-1, 1, 8, 8}));
  EXPECT_EQ(vit->outputs[0].shape, (std::vector<int64_t>{-1, 10}));
  absl::StatusOr<ModelMetadata> llama = client_->GetModelMetadata("llama_rms");
  ASSERT_TRUE(llama.ok());
  EXPECT_EQ(llama->inputs[0].datatype, "INT64");
  EXPECT_EQ(llama->inputs[0].shape, (std::vector<int64_t>{-1, -1}));
  EXPECT_EQ(client_->GetModelMetadata("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ServerTest, MetricsCountServedRequests) {
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(client_->Infer("vit_ln", Inputs("vit_ln", 1, 1, i)).ok());
  absl::StatusOr<std::string> body = testing::HttpGet(server_->metrics_address(), "/metrics");
  ASSERT_TRUE(body.ok()) << body.status();
  const std::string prefix = "dytserve_requests_total{arm=\"\",code=\"OK\",experiment=\"\",model=\"vit_ln\",version=\"1\"} ";
  const size_t at = body->find(prefix);
  ASSERT_NE(at, std::string::npos) << *body;
  EXPECT_GE(std::stod(body->substr(at + prefix.size())), 3);
  EXPECT_NE(body->find("process_resident_memory_bytes "), std::string::npos);
  // The load-time rewrite found every DyT of the zoo and nothing in the norm twins.
  EXPECT_NE(body->find("dytserve_model_fused_dyt{model=\"vit_dyt\",version=\"1\"} 9"), std::string::npos);
  EXPECT_NE(body->find("dytserve_model_fused_dyt{model=\"llama_dyt\",version=\"1\"} 5"), std::string::npos);
  EXPECT_NE(body->find("dytserve_model_fused_dyt{model=\"vit_ln\",version=\"1\"} 0"), std::string::npos);
  EXPECT_NE(body->find("dytserve_model_fused_dyt{model=\"llama_rms\",version=\"1\"} 0"), std::string::npos);
  // Every DyT that feeds only Linear layers was folded: all but the ViT's final
  // norm, which feeds the class-token slice.
  EXPECT_NE(body->find("dytserve_model_folded_dyt_affine{model=\"vit_dyt\",version=\"1\"} 8"), std::string::npos);
  EXPECT_NE(body->find("dytserve_model_folded_dyt_affine{model=\"llama_dyt\",version=\"1\"} 5"), std::string::npos);
  EXPECT_NE(body->find("dytserve_model_weight_bytes{device=\"cpu\",model=\"vit_dyt\",model_instance=\"0\",version=\"1\"}"),
            std::string::npos);
}

double MetricValue(const std::string& body, const std::string& series) {
  const size_t at = body.find(series + " ");
  return at == std::string::npos ? -1 : std::stod(body.substr(at + series.size() + 1));
}

TEST_F(ServerTest, PeakBatchMemoryIsMeasuredAndGrowsWithTheBatch) {
  const std::string series =
      "dytserve_model_peak_batch_bytes{device=\"cpu\",model=\"llama_rms\",model_instance=\"0\",version=\"1\"}";
  ASSERT_TRUE(client_->Infer("llama_rms", Inputs("llama_rms", 1, 4, 1)).ok());
  const double small = MetricValue(*testing::HttpGet(server_->metrics_address(), "/metrics"), series);
  ASSERT_TRUE(client_->Infer("llama_rms", Inputs("llama_rms", 8, 64, 1)).ok());
  const double large = MetricValue(*testing::HttpGet(server_->metrics_address(), "/metrics"), series);
  // 8 x 64 tokens: at least the logits (8*64*256 floats) were allocated.
  EXPECT_GE(large, 8 * 64 * 256 * 4);
  EXPECT_GT(large, small);
  EXPECT_GT(small, 0);
  ASSERT_TRUE(client_->Infer("llama_rms", Inputs("llama_rms", 1, 4, 1)).ok());
  EXPECT_EQ(MetricValue(*testing::HttpGet(server_->metrics_address(), "/metrics"), series), large)
      << "the gauge keeps the largest batch so far";
}

TEST_F(ServerTest, LargeActivationsReuseCachedCpuBlocks) {
  // 8 rows x 2048 tokens: the SwiGLU activations (8 x 2048 x 512 floats,
  // 32 MiB each) are blocks the CPU block cache keeps; the second batch finds
  // them there. (The attention scores are never whole: the decoder calls
  // scaled_dot_product_attention, which works on blocks of them.)
  const std::string reused = "dytserve_cpu_block_cache_allocations_total{source=\"reused\"}";
  const std::string mapped = "dytserve_cpu_block_cache_allocations_total{source=\"mapped\"}";
  const std::string before = *testing::HttpGet(server_->metrics_address(), "/metrics");
  ASSERT_GE(MetricValue(before, reused), 0) << "the cache's families are exported";
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(client_->Infer("llama_rms", Inputs("llama_rms", 8, 2048, i)).ok());
  const std::string after = *testing::HttpGet(server_->metrics_address(), "/metrics");
  EXPECT_GT(MetricValue(after, reused), MetricValue(before, reused)) << after;
  EXPECT_GE(MetricValue(after, "dytserve_cpu_block_cache_bytes{state=\"cached\"}"), 32 << 20) << after;
  EXPECT_GE(MetricValue(after, mapped), 1) << after;
}

TEST_F(ServerTest, MetricsEndpointRefusesWhatIsNotAScrape) {
  EXPECT_FALSE(testing::HttpGet(server_->metrics_address(), "/nope").ok()) << "404";
  // A header that never ends is cut off at 16 KiB with 431, not read forever.
  const std::string address = server_->metrics_address();
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1))));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string junk = "GET /metrics HTTP/1.1\r\nX: " + std::string(20000, 'a');
  send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
  char buf[64] = {};
  timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  ASSERT_GT(recv(fd, buf, sizeof(buf) - 1, 0), 0);
  close(fd);
  EXPECT_TRUE(absl::StartsWith(buf, "HTTP/1.1 431")) << buf;
  EXPECT_TRUE(testing::HttpGet(server_->metrics_address(), "/metrics").ok()) << "scrapes still work";
}

TEST_F(ServerTest, ScrapePassesPromtoolCheckMetrics) {
  ASSERT_TRUE(client_->Infer("vit_dyt", Inputs("vit_dyt", 2, 1, 1)).ok());
  absl::StatusOr<std::string> body = testing::HttpGet(server_->metrics_address(), "/metrics");
  ASSERT_TRUE(body.ok()) << body.status();
  const std::string path = ::testing::TempDir() + "/dytserve-scrape.txt";
  std::ofstream(path) << *body;
  const testing::CommandResult promtool = testing::RunCommand(absl::StrCat("promtool check metrics < ", path));
  EXPECT_EQ(promtool.exit_code, 0) << "promtool check metrics:\n" << promtool.output;
  EXPECT_EQ(promtool.output, "") << "promtool reports lint problems";
}

// A repository with broken models still serves the good ones, and each error
// names the model and the field.
TEST(BadRepository, GoodModelsLoadAndErrorsNameModelAndField) {
  const fs::path dir = fs::temp_directory_path() / absl::StrCat("dytserve-badrepo-", getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::create_directory_symlink(fs::path(kRepo) / "vit_ln", dir / "vit_ln");
  // A config that disagrees with its module: 11 classes instead of 10.
  testing::AddModel(dir, "wrong_dims", absl::StrCat(kRepo, "/vit_ln/1/model.pt"), testing::VitConfig(8, "", 11));
  // A config with a typo.
  testing::AddModel(dir, "typo", absl::StrCat(kRepo, "/vit_ln/1/model.pt"), "max_batch_size: 8\nmax_batch_sizes: 4\n");
  // A file that is not TorchScript.
  fs::create_directories(dir / "garbage/1");
  std::ofstream(dir / "garbage/1/model.pt") << "not a model";
  std::ofstream(dir / "garbage/config.pbtxt")
      << "input { name: \"x\" data_type: TYPE_FP32 dims: [1] }\noutput { name: \"y\" data_type: TYPE_FP32 dims: [1] }\n";

  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(kServer, {absl::StrCat("--model_repository=", dir.string())});
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions options;
  options.endpoints = {(*server)->grpc_address()};
  std::unique_ptr<Client> client = *Client::Create(options);

  EXPECT_TRUE(*client->ModelReady("vit_ln"));
  EXPECT_EQ(*client->Health("vit_ln"), HealthStatus::kServing);
  for (const char* broken : {"wrong_dims", "typo", "garbage"}) {
    EXPECT_FALSE(*client->ModelReady(broken)) << broken;
    EXPECT_EQ(*client->Health(broken), HealthStatus::kNotServing) << broken;
  }
  EXPECT_FALSE(*client->ServerReady()) << "strict readiness: not every model loaded";
  EXPECT_TRUE(*client->ServerLive());
  std::mt19937_64 rng(1);
  EXPECT_TRUE(client->Infer("vit_ln", *GenerateInputs(*client->GetModelMetadata("vit_ln"), {}, &rng)).ok());

  const std::string log = (*server)->Stderr();
  EXPECT_NE(log.find("model 'wrong_dims': output[0] 'logits'.dims"), std::string::npos) << log;
  EXPECT_NE(log.find("typo/config.pbtxt: line 2"), std::string::npos) << log;
  EXPECT_NE(log.find("max_batch_sizes"), std::string::npos) << log;
  EXPECT_NE(log.find("model 'garbage': cannot load"), std::string::npos) << log;
  EXPECT_EQ((*server)->Stop(SIGTERM), 0);
  fs::remove_all(dir);
}

TEST(DytFusion, ConfigSwitchTurnsItOff) {
  const fs::path dir = fs::temp_directory_path() / absl::StrCat("dytserve-nofuse-", getpid());
  fs::remove_all(dir);
  testing::AddModel(dir, "vit_dyt", absl::StrCat(kRepo, "/vit_dyt/1/model.pt"),
                    testing::VitConfig(8, "optimization { fuse_dyt: false }\n"));
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(kServer, {absl::StrCat("--model_repository=", dir.string())});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string body = *testing::HttpGet((*server)->metrics_address(), "/metrics");
  EXPECT_NE(body.find("dytserve_model_fused_dyt{model=\"vit_dyt\",version=\"1\"} 0"), std::string::npos) << body;
  EXPECT_EQ((*server)->Stderr().find("fused"), std::string::npos);
  EXPECT_EQ((*server)->Stop(SIGTERM), 0);
  fs::remove_all(dir);
}

TEST(Devices, AutoFallsBackToCpuAndMissingCudaIsAModelError) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "this checks the CPU-only behaviour";
  const fs::path dir = fs::temp_directory_path() / absl::StrCat("dytserve-devices-", getpid());
  fs::remove_all(dir);
  for (const std::string device : {"auto", "cuda:0"}) {
    const std::string name = device == "auto" ? "on_auto" : "on_cuda";
    testing::AddModel(dir, name, absl::StrCat(kRepo, "/vit_ln/1/model.pt"),
                      testing::VitConfig(8, absl::StrCat("instance_group { device: \"", device, "\" }\n")));
  }
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(kServer, {absl::StrCat("--model_repository=", dir.string())});
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions options;
  options.endpoints = {(*server)->grpc_address()};
  std::unique_ptr<Client> client = *Client::Create(options);
  EXPECT_TRUE(*client->ModelReady("on_auto"));
  EXPECT_FALSE(*client->ModelReady("on_cuda"));
  const std::string log = (*server)->Stderr();
  EXPECT_NE(log.find("model 'on_auto': device auto: CUDA is not available ("), std::string::npos) << log;
  EXPECT_NE(log.find("), serving on CPU"), std::string::npos) << log;
  EXPECT_NE(log.find("model 'on_cuda': instance_group.device: 'cuda:0' requested but CUDA is not available"),
            std::string::npos)
      << log;
  EXPECT_EQ((*server)->Stop(SIGTERM), 0);
  fs::remove_all(dir);
}

// --intra_op_threads sizes LibTorch's OpenMP pool, which MKL's matrix
// products share (the wheel's LibTorch has no separate BLAS pool); answers stay
// right whatever its size.
TEST(Threads, IntraOpThreadsSizeLibTorchsPoolAndAnswersStayRight) {
  struct Case {
    std::vector<std::string> flags;
    std::string logged;
  };
  const std::vector<Case> cases = {{{"--intra_op_threads=1"}, "threads: LibTorch intra-op 1 (OpenMP"},
                                   {{"--intra_op_threads=2"}, "threads: LibTorch intra-op 2 (OpenMP"}};
  const std::vector<Tensor> image = {
      Tensor::From<float>("pixel_values", {2, 1, 8, 8}, std::vector<float>(128, 0.25f))};
  std::vector<float> first_logits;
  for (const Case& c : cases) {
    std::vector<std::string> args = {absl::StrCat("--model_repository=", kRepo)};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    absl::StatusOr<std::unique_ptr<ServerProcess>> server = ServerProcess::Start(kServer, args);
    ASSERT_TRUE(server.ok()) << server.status();
    const std::string log = (*server)->Stderr();
    EXPECT_NE(log.find(c.logged), std::string::npos) << log;
    ClientOptions options;
    options.endpoints = {(*server)->grpc_address()};
    std::unique_ptr<Client> client = *Client::Create(options);
    absl::StatusOr<InferResult> result = client->Infer("vit_ln", image);
    ASSERT_TRUE(result.ok()) << result.status();
    absl::StatusOr<std::vector<float>> values = result->outputs.at(0).As<float>();
    ASSERT_TRUE(values.ok()) << values.status();
    const std::vector<float>& logits = *values;
    ASSERT_FALSE(logits.empty());
    if (first_logits.empty()) {
      first_logits = logits;
    } else {
      ASSERT_EQ(logits.size(), first_logits.size());
      for (size_t i = 0; i < logits.size(); ++i) EXPECT_NEAR(logits[i], first_logits[i], 1e-4) << i;
    }
    EXPECT_EQ((*server)->Stop(SIGTERM), 0);
  }
}

TEST(Limits, ElementAndRowLimitsRefuseOnlyWhatIsOver) {
  absl::StatusOr<std::unique_ptr<ServerProcess>> server = ServerProcess::Start(
      kServer, {absl::StrCat("--model_repository=", kRepo), "--max_request_elements=200", "--max_request_rows=3"});
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions options;
  options.endpoints = {(*server)->grpc_address()};
  std::unique_ptr<Client> client = *Client::Create(options);
  auto image = [](int64_t rows) {
    return std::vector<Tensor>{
        Tensor::From<float>("pixel_values", {rows, 1, 8, 8}, std::vector<float>(static_cast<size_t>(rows * 64)))};
  };
  EXPECT_TRUE(client->Infer("vit_ln", image(3)).ok());  // 192 elements, 3 rows
  absl::Status rows = client->Infer("vit_ln", image(4)).status();
  EXPECT_EQ(rows.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(rows.message().find("4 rows, over the server's --max_request_rows=3"), std::string::npos) << rows;
  auto tokens = Tensor::From<int64_t>("input_ids", {1, 201}, std::vector<int64_t>(201, 1));
  absl::Status elements = client->Infer("llama_rms", {tokens}).status();
  EXPECT_EQ(elements.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(elements.message().find("201 elements, over the server's --max_request_elements=200"), std::string::npos)
      << elements;
  EXPECT_TRUE(client->Infer("llama_rms", {Tensor::From<int64_t>("input_ids", {1, 200}, std::vector<int64_t>(200, 1))})
                  .ok());
  absl::StatusOr<std::unique_ptr<ServerProcess>> negative = ServerProcess::Start(
      kServer, {absl::StrCat("--model_repository=", kRepo), "--max_request_rows=-1"}, absl::Seconds(60));
  ASSERT_FALSE(negative.ok());
  EXPECT_NE(negative.status().message().find("--max_request_rows must be >= 0"), std::string::npos)
      << negative.status();
}

TEST(BadFlags, ServerRefusesWithAClearMessage) {
  absl::StatusOr<std::unique_ptr<ServerProcess>> missing = ServerProcess::Start(kServer, {}, absl::Seconds(60));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("--model_repository is required"), std::string::npos)
      << missing.status();
  absl::StatusOr<std::unique_ptr<ServerProcess>> nodir =
      ServerProcess::Start(kServer, {"--model_repository=/nonexistent/repo"}, absl::Seconds(60));
  ASSERT_FALSE(nodir.ok());
  EXPECT_NE(nodir.status().message().find("'/nonexistent/repo' is not a directory"), std::string::npos)
      << nodir.status();
  absl::StatusOr<std::unique_ptr<ServerProcess>> cache = ServerProcess::Start(
      kServer, {absl::StrCat("--model_repository=", kRepo), "--cpu_block_cache_mb=-5"}, absl::Seconds(60));
  ASSERT_FALSE(cache.ok());
  EXPECT_NE(cache.status().message().find("--cpu_block_cache_mb must be in 0..16777216"), std::string::npos)
      << cache.status();
  // Gone with Debian's OpenBLAS: an old deployment's flag is refused by name.
  absl::StatusOr<std::unique_ptr<ServerProcess>> blas = ServerProcess::Start(
      kServer, {absl::StrCat("--model_repository=", kRepo), "--blas_threads=1"}, absl::Seconds(60));
  ASSERT_FALSE(blas.ok());
  EXPECT_NE(blas.status().message().find("Unknown command line flag 'blas_threads'"), std::string::npos)
      << blas.status();
}

}  // namespace
}  // namespace dytserve
