// The runtime (issue #17) against a real server: models that current PyTorch
// makes (scaled_dot_product_attention scripted and traced, PyTorch's own
// encoder layer, a timm-style DyT ViT, AOTInductor packages) load, pass the
// config check, batch and serve their eager outputs; a file saved by PyTorch
// 1.13 still serves; every DyT of 2.11's graphs is fused; AOTInductor
// packages that cannot run here, or disagree with their config, are refused
// by name while the rest serve; the CPU server loads one LibTorch and no
// CUDA library beyond the two libtorch_cpu needs.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "dytserve/client.h"
#include "dytserve/experiment.h"
#include "dytserve/inputs.h"
#include "support/async_requests.h"
#include "support/server_process.h"
#include "support/suite_server.h"

namespace dytserve {
namespace {

namespace fs = std::filesystem;
using testing::ServerProcess;

constexpr char kModels[] = DYTSERVE_TEST_MODELS;
constexpr char kRepo[] = DYTSERVE_TEST_REPO;
constexpr int kRows = 3;  // rows per case (tests/support/export_test_models.py)

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// One case of export_test_models.py: inputs and the eager outputs, 3 rows each.
struct Case {
  std::vector<Tensor> inputs;
  std::vector<Tensor> outputs;
};

Case LoadCase(const std::string& model) {
  const fs::path path = fs::path(kModels) / "cases" / (model + ".json");
  google::protobuf::Struct json;
  Case c;
  if (!google::protobuf::util::JsonStringToMessage(ReadFile(path), &json).ok()) {
    ADD_FAILURE() << path << " is not JSON";
    return c;
  }
  for (const char* part : {"inputs", "outputs"}) {
    // ParseInputsJson reads the v2 layout {"inputs": [...]}: give it each part so.
    google::protobuf::Struct wrapped;
    (*wrapped.mutable_fields())["inputs"] = json.fields().at(part);
    std::string text;
    (void)google::protobuf::util::MessageToJsonString(wrapped, &text);
    absl::StatusOr<std::vector<Tensor>> tensors = ParseInputsJson(text, path.string());
    EXPECT_TRUE(tensors.ok()) << tensors.status();
    if (tensors.ok()) (std::string(part) == "inputs" ? c.inputs : c.outputs) = *std::move(tensors);
  }
  return c;
}

// Row `row` of a batch-first tensor, as a batch of one.
Tensor Row(const Tensor& t, int64_t row) {
  Tensor out = t;
  const size_t bytes = t.data.size() / static_cast<size_t>(t.shape[0]);
  out.shape[0] = 1;
  out.data.assign(t.data.begin() + static_cast<std::ptrdiff_t>(bytes * row),
                  t.data.begin() + static_cast<std::ptrdiff_t>(bytes * (row + 1)));
  return out;
}

// Largest |got - want| over one output row; infinity when the shapes differ.
double MaxDifference(const Tensor& got, const Tensor& want_batch, int64_t row) {
  const Tensor want = Row(want_batch, row);
  if (got.shape != want.shape) return INFINITY;
  absl::StatusOr<std::vector<double>> a = got.AsDoubles();
  absl::StatusOr<std::vector<double>> b = want.AsDoubles();
  if (!a.ok() || !b.ok() || a->size() != b->size()) return INFINITY;
  double worst = 0;
  for (size_t i = 0; i < a->size(); ++i) worst = std::max(worst, std::abs((*a)[i] - (*b)[i]));
  return worst;
}

// The value of the sample `family{labels}` (labels exactly as exposed), or -1.
double Sample(const std::string& scrape, const std::string& family, const std::string& labels) {
  const std::string prefix = absl::StrCat(family, "{", labels, "} ");
  for (absl::string_view line : absl::StrSplit(scrape, '\n')) {
    double v = 0;
    if (absl::StartsWith(line, prefix) && absl::SimpleAtod(line.substr(prefix.size()), &v)) return v;
  }
  return -1;
}

// Per model: how many DyTs the rewrite must fuse, and fold.
std::map<std::string, std::pair<int, int>> ExpectedFusions() {
  google::protobuf::Struct json;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(ReadFile(fs::path(kModels) / "expected.json"), &json).ok());
  std::map<std::string, std::pair<int, int>> out;
  for (const auto& [name, facts] : json.fields()) {
    const auto& f = facts.struct_value().fields();
    out[name] = {static_cast<int>(f.at("fused_dyt").number_value()), static_cast<int>(f.at("folded_dyt").number_value())};
  }
  return out;
}

class CurrentPyTorchModels : public testing::SuiteServerTest<CurrentPyTorchModels> {
 public:
  static std::vector<std::string> ServerArgs() { return {absl::StrCat("--model_repository=", kModels)}; }

 protected:
  std::unique_ptr<Client> NewClient() {
    ClientOptions options;
    options.endpoints = {server_->grpc_address()};
    return *Client::Create(options);
  }
};

// Each model: ready; its rows sent as concurrent one-row requests (which the
// batcher may join) and as one request of all rows, each answer within 1e-5
// of eager PyTorch; the DyTs the rewrite fused and folded are the model's.
TEST_F(CurrentPyTorchModels, EveryModelLoadsBatchesAndServesItsEagerOutputs) {
  const std::map<std::string, std::pair<int, int>> fused = ExpectedFusions();
  ASSERT_EQ(fused.size(), 11u);
  std::unique_ptr<Client> client = NewClient();
  for (const auto& [model, expected] : fused) {
    SCOPED_TRACE(model);
    ASSERT_TRUE(*client->ModelReady(model));
    const Case c = LoadCase(model);
    ASSERT_FALSE(c.inputs.empty());
    ASSERT_EQ(c.inputs[0].shape[0], kRows);

    std::vector<std::vector<Tensor>> rows;
    for (int64_t r = 0; r < kRows; ++r) {
      rows.emplace_back();
      for (const Tensor& t : c.inputs) rows.back().push_back(Row(t, r));
    }
    const std::vector<absl::StatusOr<InferResult>> results = testing::InferAll(*client, model, rows);
    for (int64_t r = 0; r < kRows; ++r) {
      const absl::StatusOr<InferResult>& result = results[static_cast<size_t>(r)];
      ASSERT_TRUE(result.ok()) << result.status();
      ASSERT_EQ(result->outputs.size(), c.outputs.size());
      for (const Tensor& want : c.outputs) {
        const Tensor* got = result->Find(want.name);
        ASSERT_NE(got, nullptr) << want.name;
        EXPECT_LE(MaxDifference(*got, want, r), 1e-5) << want.name << " row " << r;
      }
    }

    absl::StatusOr<InferResult> all = client->Infer(model, c.inputs);
    ASSERT_TRUE(all.ok()) << all.status();
    for (const Tensor& want : c.outputs) {
      const Tensor* got = all->Find(want.name);
      ASSERT_NE(got, nullptr) << want.name;
      ASSERT_EQ(got->shape, want.shape);
      for (int64_t r = 0; r < kRows; ++r) EXPECT_LE(MaxDifference(Row(*got, r), want, r), 1e-5) << want.name;
    }

    const std::string scrape = *testing::HttpGet(server_->metrics_address(), "/metrics");
    EXPECT_EQ(Sample(scrape, "dytserve_model_fused_dyt", absl::StrCat("model=\"", model, "\",version=\"1\"")),
              expected.first);
    EXPECT_EQ(Sample(scrape, "dytserve_model_folded_dyt_affine", absl::StrCat("model=\"", model, "\",version=\"1\"")),
              expected.second);
    // Batched: the request of all rows ran as one batch of kRows.
    EXPECT_GE(Sample(scrape, "dytserve_batch_size_bucket",
                     absl::StrCat("model=\"", model, "\",version=\"1\",le=\"+Inf\"")),
              1);
    const double sum = Sample(scrape, "dytserve_batch_size_sum", absl::StrCat("model=\"", model, "\",version=\"1\""));
    const double count =
        Sample(scrape, "dytserve_batch_size_count", absl::StrCat("model=\"", model, "\",version=\"1\""));
    EXPECT_EQ(sum, 2 * kRows) << "every row computed once, in the batched request and the one-row ones";
    EXPECT_LE(count, kRows + 1) << "the all-rows request was one batch";
  }
}

// The formats a version folder holds and the model's metadata says.
TEST_F(CurrentPyTorchModels, MetadataNamesEachFormatsPlatform) {
  std::unique_ptr<Client> client = NewClient();
  EXPECT_EQ(client->GetModelMetadata("timm_vit_dyt_aoti")->platform, "torch_aoti");
  EXPECT_EQ(client->GetModelMetadata("timm_vit_dyt_scripted")->platform, "pytorch_libtorch");
  EXPECT_EQ(client->GetModelMetadata("legacy_113")->platform, "pytorch_libtorch");
}

// A CPU build's server holds one LibTorch (the wheel's), one Protobuf
// runtime (Debian's), and, with AOTInductor packages loaded, still no
// libtorch_cuda and none of the CUDA libraries behind it.
TEST_F(CurrentPyTorchModels, TheProcessHoldsOneLibTorchOneProtobufAndNoCudaLibraries) {
  const std::string maps = ReadFile(absl::StrCat("/proc/", server_->pid(), "/maps"));
  std::set<std::string> libraries;
  for (absl::string_view line : absl::StrSplit(maps, '\n')) {
    const size_t slash = line.find('/');
    if (slash != absl::string_view::npos && absl::StrContains(line, ".so")) libraries.insert(std::string(line.substr(slash)));
  }
  int protobuf = 0, torch_cpu = 0;
  for (const std::string& lib : libraries) {
    const std::string file = fs::path(lib).filename().string();
    if (absl::StartsWith(file, "libprotobuf.so")) ++protobuf;
    if (file == "libtorch_cpu.so") {
      ++torch_cpu;
      EXPECT_TRUE(absl::StrContains(lib, "site-packages/torch/lib")) << lib;
    }
    EXPECT_FALSE(absl::StrContains(lib, "x86_64-linux-gnu/libtorch")) << "Debian's LibTorch: " << lib;
#ifndef DYTSERVE_WITH_CUDA
    EXPECT_FALSE(absl::StartsWith(file, "libtorch_cuda") || absl::StartsWith(file, "libc10_cuda") ||
                 absl::StartsWith(file, "libcudnn") || absl::StartsWith(file, "libcublas") ||
                 absl::StartsWith(file, "libnccl"))
        << lib;
#endif
  }
  EXPECT_EQ(protobuf, 1);
  EXPECT_EQ(torch_cpu, 1);
}

// A repository of AOTInductor packages that cannot serve here, or whose
// configs disagree with them: each is refused with the model and the field
// or the reason named, and the good model beside them serves.
TEST(AotiPackages, WhatCannotServeIsRefusedByNameAndTheRestServes) {
  const fs::path dir = fs::temp_directory_path() / absl::StrCat("dytserve-aoti-", getpid());
  fs::remove_all(dir);
  const fs::path package = fs::path(kModels) / "timm_vit_dyt_aoti" / "1" / "model.pt2";
  const fs::path keyword = fs::path(kModels) / "keyword_aoti" / "1" / "model.pt2";
  const std::string keyword_out =
      "output { name: \"sum\" data_type: TYPE_FP32 dims: [4] }\n"
      "output { name: \"scaled\" data_type: TYPE_FP32 dims: [4] }\n";
  const std::string io =
      "input { name: \"pixel_values\" data_type: TYPE_FP32 dims: [3, 16, 16] }\n"
      "output { name: \"logits\" data_type: TYPE_FP32 dims: [10] }\n";
  struct Bad {
    std::string name;
    fs::path file;
    std::string config;
    std::string error;
  };
  const std::vector<Bad> bad = {
      {"two_inputs", package,
       "max_batch_size: 8\n" + io + "input { name: \"extra\" data_type: TYPE_FP32 dims: [1] }\n",
       "model 'two_inputs': input[1] 'extra': the package was exported with inputs 'pixel_values'"},
      // keyword_aoti's package carries no description of its tensors: only
      // its call spec (count, keyword names, order) can be checked.
      {"one_of_two_keywords", keyword,
       "max_batch_size: 8\ninput { name: \"a\" data_type: TYPE_FP32 dims: [4] }\n" + keyword_out,
       "model 'one_of_two_keywords': input: the config names 1 input(s), the package takes 2 tensor(s): 0 "
       "positional and keyword 'b', 'a'"},
      {"unknown_keyword", keyword,
       "max_batch_size: 8\ninput { name: \"a\" data_type: TYPE_FP32 dims: [4] }\n"
       "input { name: \"c\" data_type: TYPE_FP32 dims: [4] }\n" + keyword_out,
       "model 'unknown_keyword': input: the package takes keyword argument 'b', which is not among the config's "
       "inputs"},
      {"unknown_output", keyword,
       "max_batch_size: 8\ninput { name: \"a\" data_type: TYPE_FP32 dims: [4] }\n"
       "input { name: \"b\" data_type: TYPE_FP32 dims: [4] }\n"
       "output { name: \"sum\" data_type: TYPE_FP32 dims: [4] }\n"
       "output { name: \"product\" data_type: TYPE_FP32 dims: [4] }\n",
       "model 'unknown_output': output 'product': the package returns a dict of 'scaled', 'sum'"},
      {"wrong_type", package,
       "max_batch_size: 8\ninput { name: \"pixel_values\" data_type: TYPE_INT64 dims: [3, 16, 16] }\n"
       "output { name: \"logits\" data_type: TYPE_FP32 dims: [10] }\n",
       "model 'wrong_type': input[0] 'pixel_values'.data_type: the package's is FP32, the config says INT64"},
      {"wrong_dims", package,
       "max_batch_size: 8\ninput { name: \"pixel_values\" data_type: TYPE_FP32 dims: [3, 8, 8] }\n"
       "output { name: \"logits\" data_type: TYPE_FP32 dims: [10] }\n",
       "model 'wrong_dims': input[0] 'pixel_values'.dims: the package's shape is [-1, 3, 16, 16]"},
      {"wrong_name", package,
       "max_batch_size: 8\ninput { name: \"image\" data_type: TYPE_FP32 dims: [3, 16, 16] }\n"
       "output { name: \"logits\" data_type: TYPE_FP32 dims: [10] }\n",
       "model 'wrong_name': input[0] 'image': the package was exported with inputs 'pixel_values'"},
      {"too_many_rows", package, "max_batch_size: 64\n" + io,
       "model 'too_many_rows': max_batch_size: 64, but the package was exported for batches of at most 8 rows"},
      {"on_cuda_device", package, "max_batch_size: 8\n" + io + "instance_group { device: \"cuda:0\" }\n",
       "model 'on_cuda_device': instance_group.device: 'cuda:0', but the package was compiled for the CPU"},
      {"other_torch", fs::path(kModels) / "packages" / "other_torch.pt2", "max_batch_size: 8\n" + io,
       "model 'other_torch': model.pt2: exported by PyTorch 2.10.0+cu128, this server runs LibTorch 2.11.0"},
      {"other_isa", fs::path(kModels) / "packages" / "other_isa.pt2", "max_batch_size: 8\n" + io,
       "model 'other_isa': model.pt2: the package's CPU kernels use NEON, which this host's CPU lacks"},
      {"aoti_platform_without_package", fs::path(kModels) / "sdpa_scripted" / "1" / "model.pt",
       "platform: \"torch_aoti\"\nmax_batch_size: 8\n" + io, "platform 'torch_aoti' but "},
  };
  // A CUDA package where no CUDA device is visible (a CPU build, or a CUDA
  // build on a machine without a GPU).
  std::vector<Bad> cuda;
  if (!torch::cuda::is_available()) {
    cuda.push_back({"cuda_package", fs::path(kModels) / "packages" / "cuda.pt2", "max_batch_size: 8\n" + io,
                    "model 'cuda_package': instance_group.device: the package was compiled for CUDA, and CUDA is not "
                    "available ("});
  }
  std::vector<Bad> all = bad;
  all.insert(all.end(), cuda.begin(), cuda.end());
  for (const Bad& b : all) {
    fs::create_directories(dir / b.name / "1");
    fs::create_symlink(b.file, dir / b.name / "1" / (b.file.extension() == ".pt2" ? "model.pt2" : "model.pt"));
    std::ofstream(dir / b.name / "config.pbtxt") << b.config;
  }
  // Both formats in one version folder, and no platform to choose.
  fs::create_directories(dir / "both_formats" / "1");
  fs::create_symlink(package, dir / "both_formats" / "1" / "model.pt2");
  fs::create_symlink(fs::path(kModels) / "timm_vit_dyt_scripted" / "1" / "model.pt",
                     dir / "both_formats" / "1" / "model.pt");
  std::ofstream(dir / "both_formats" / "config.pbtxt") << "max_batch_size: 8\n" + io;
  // The good one.
  fs::create_directories(dir / "good" / "1");
  fs::create_symlink(package, dir / "good" / "1" / "model.pt2");
  std::ofstream(dir / "good" / "config.pbtxt") << "max_batch_size: 8\n" + io;

  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(DYTSERVE_SERVER_BIN, {absl::StrCat("--model_repository=", dir.string())});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string log = (*server)->Stderr();
  for (const Bad& b : all) EXPECT_TRUE(absl::StrContains(log, b.error)) << b.name << "\n" << log;
  EXPECT_TRUE(absl::StrContains(log, "holds both model.pt and model.pt2; set platform")) << log;
  ClientOptions options;
  options.endpoints = {(*server)->grpc_address()};
  std::unique_ptr<Client> client = *Client::Create(options);
  EXPECT_TRUE(*client->ModelReady("good"));
  for (const Bad& b : all) EXPECT_FALSE(*client->ModelReady(b.name)) << b.name;
  const Case c = LoadCase("timm_vit_dyt_aoti");
  absl::StatusOr<InferResult> result = client->Infer("good", c.inputs);
  ASSERT_TRUE(result.ok()) << result.status();
  for (int64_t r = 0; r < kRows; ++r) EXPECT_LE(MaxDifference(Row(result->outputs[0], r), c.outputs[0], r), 1e-5);
  EXPECT_EQ((*server)->Stop(SIGTERM), 0);
  fs::remove_all(dir);
}

// The default repository's AOTInductor twins serve like their TorchScript
// twins: ragged batches of the decoder, an experiment arm and a shadow
// across formats, a new version loaded while serving.
class AotiServing : public testing::SuiteServerTest<AotiServing> {
 protected:
  std::unique_ptr<Client> NewClient() {
    ClientOptions options;
    options.endpoints = {server_->grpc_address()};
    return *Client::Create(options);
  }
};

std::vector<Tensor> Tokens(int64_t length, int64_t seed) {
  std::vector<int64_t> ids(static_cast<size_t>(length));
  for (int64_t i = 0; i < length; ++i) ids[i] = (i * 31 + seed * 17 + 5) % 256;
  return {Tensor::From<int64_t>("input_ids", {1, length}, ids)};
}

// Prompts of 1 to 30 tokens, 24 in flight at once (one bucket of 32: they
// share right-padded batches), each answered by llama_dyt_aoti as by
// llama_dyt, the same weights scripted, served alone.
TEST_F(AotiServing, RaggedDecoderBatchesMatchTheTorchScriptTwin) {
  std::unique_ptr<Client> client = NewClient();
  constexpr int kRequests = 24;
  std::vector<std::vector<Tensor>> prompts;
  for (int i = 0; i < kRequests; ++i) prompts.push_back(Tokens(1 + (i * 7) % 30, i));
  const std::vector<absl::StatusOr<InferResult>> results = testing::InferAll(*client, "llama_dyt_aoti", prompts);
  for (int i = 0; i < kRequests; ++i) {
    const int64_t length = 1 + (i * 7) % 30;
    const absl::StatusOr<InferResult>& got = results[static_cast<size_t>(i)];
    ASSERT_TRUE(got.ok()) << got.status();
    absl::StatusOr<InferResult> want = client->Infer("llama_dyt", Tokens(length, i));
    ASSERT_TRUE(want.ok()) << want.status();
    ASSERT_EQ(got->outputs[0].shape, (std::vector<int64_t>{1, length, 256}));
    EXPECT_LE(MaxDifference(got->outputs[0], want->outputs[0], 0), 1e-5) << "length " << length;
  }
  const std::string scrape = *testing::HttpGet(server_->metrics_address(), "/metrics");
  const double batches =
      Sample(scrape, "dytserve_batch_size_count", "model=\"llama_dyt_aoti\",version=\"1\"");
  EXPECT_LT(batches, kRequests) << "24 concurrent prompts of one bucket should share batches";
}

// An experiment whose arms are the two formats of vit_dyt, with the AOTI
// package also shadowing the TorchScript arm: both arms serve, and the shadow
// agrees with the served answer on every top-1 class.
TEST_F(AotiServing, AnExperimentComparesFormatsAndTheShadowAgrees) {
  std::unique_ptr<Client> client = NewClient();
  Experiment e;
  e.name = "formats";
  e.arms = {{"torchscript", "vit_dyt", "", 50, false, 0}, {"aoti", "vit_dyt_aoti", "", 50, false, 0}};
  ASSERT_TRUE(client->CreateExperiment(e).ok());
  Experiment shadowed;
  shadowed.name = "formats_shadow";
  shadowed.arms = {{"torchscript", "vit_dyt", "", 100, false, 0}, {"aoti_shadow", "vit_dyt_aoti", "", 0, true, 1.0}};
  ASSERT_TRUE(client->CreateExperiment(shadowed).ok());
  std::vector<float> pixels(64);
  for (int i = 0; i < 64; ++i) pixels[i] = static_cast<float>((i * 13) % 17) / 16.0f;
  const std::vector<Tensor> image = {Tensor::From<float>("pixel_values", {1, 1, 8, 8}, pixels)};
  std::vector<testing::Outcome> split = testing::SendAsync(*client, "formats", image, 200, {});
  std::map<std::string, int> arms;
  for (const testing::Outcome& o : split) {
    ASSERT_TRUE(o.status.ok()) << o.status;
    ++arms[o.arm];
  }
  EXPECT_GT(arms["torchscript"], 50);
  EXPECT_GT(arms["aoti"], 50);
  std::vector<testing::Outcome> shadow = testing::SendAsync(*client, "formats_shadow", image, 50, {});
  for (const testing::Outcome& o : shadow) ASSERT_TRUE(o.status.ok()) << o.status;
  // Shadows finish after the answer; wait for all 50 comparisons.
  double compared = 0, agreed = 0;
  for (int i = 0; i < 100 && compared < 50; ++i) {
    const std::string scrape = *testing::HttpGet(server_->metrics_address(), "/metrics");
    const std::string labels = "arm=\"aoti_shadow\",experiment=\"formats_shadow\",output=\"logits\"";
    compared = Sample(scrape, "dytserve_shadow_top1_comparisons_total", labels);
    agreed = Sample(scrape, "dytserve_shadow_top1_agreements_total", labels);
    if (compared < 50) absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(compared, 50);
  EXPECT_EQ(agreed, compared);
}

// A second version of an AOTInductor model, loaded while the first serves:
// the answer then names version 2, and version 2's load shows in metrics.
TEST(AotiReload, ANewVersionLoadsWhileTheFirstServes) {
  const fs::path dir = fs::temp_directory_path() / absl::StrCat("dytserve-aoti-reload-", getpid());
  fs::remove_all(dir);
  const fs::path package = fs::path(kRepo) / "vit_dyt_aoti" / "1" / "model.pt2";
  fs::create_directories(dir / "vit_dyt_aoti" / "1");
  fs::create_symlink(package, dir / "vit_dyt_aoti" / "1" / "model.pt2");
  fs::copy_file(fs::path(kRepo) / "vit_dyt_aoti" / "config.pbtxt", dir / "vit_dyt_aoti" / "config.pbtxt");
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(DYTSERVE_SERVER_BIN, {absl::StrCat("--model_repository=", dir.string())});
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions options;
  options.endpoints = {(*server)->grpc_address()};
  std::unique_ptr<Client> client = *Client::Create(options);
  const std::vector<Tensor> image = {Tensor::From<float>("pixel_values", {2, 1, 8, 8}, std::vector<float>(128, 0.5f))};
  absl::StatusOr<InferResult> before = client->Infer("vit_dyt_aoti", image);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(before->model_version, "1");

  fs::create_directories(dir / "vit_dyt_aoti" / "2");
  fs::create_symlink(package, dir / "vit_dyt_aoti" / "2" / "model.pt2");
  absl::StatusOr<std::vector<int64_t>> loaded = client->LoadModel("vit_dyt_aoti");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(*loaded, std::vector<int64_t>{2});
  absl::StatusOr<InferResult> after = client->Infer("vit_dyt_aoti", image);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->model_version, "2");
  for (int64_t r = 0; r < 2; ++r) EXPECT_LE(MaxDifference(Row(after->outputs[0], r), before->outputs[0], r), 0.0);
  const std::string scrape = *testing::HttpGet((*server)->metrics_address(), "/metrics");
  EXPECT_TRUE(absl::StrContains(scrape, "dytserve_model_load_duration_seconds{model=\"vit_dyt_aoti\",version=\"2\"}")) << scrape;
  EXPECT_EQ((*server)->Stop(SIGTERM), 0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace dytserve
