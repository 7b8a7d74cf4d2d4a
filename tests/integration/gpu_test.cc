// On a machine with an NVIDIA GPU (scripts/gpu_check.sh runs these there):
// the zoo's DyT models served on cuda:0 answer as on the CPU, the CUDA
// allocator's memory shows in /metrics, and a batch that runs the GPU out of
// memory is split and retried. Without a usable GPU each test skips and says
// why (a CPU build, or no device visible).
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/script.h>
#ifdef DYTSERVE_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "dytserve/client.h"
#include "support/async_requests.h"
#include "support/server_process.h"

namespace dytserve {
namespace {

namespace fs = std::filesystem;
using testing::ServerProcess;

// The GPU kit (scripts/gpu_kit.sh) runs this binary far from the tree it was
// built in: the environment may name the repository and the server.
std::string FromEnv(const char* name, const char* built_in) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : built_in;
}
const std::string kRepo = FromEnv("DYTSERVE_TEST_REPO", DYTSERVE_TEST_REPO);
const std::string kServer = FromEnv("DYTSERVE_SERVER_BIN", DYTSERVE_SERVER_BIN);

// Empty when a GPU can serve here; otherwise why not.
std::string WhyNoGpu() {
#ifndef DYTSERVE_WITH_CUDA
  return "a CPU build (configure with -DDYTSERVE_WITH_CUDA=ON)";
#else
  return torch::cuda::is_available() ? "" : "a CUDA build, but no CUDA device is visible";
#endif
}

#define SKIP_WITHOUT_GPU()                                           \
  if (const std::string why = WhyNoGpu(); !why.empty()) GTEST_SKIP() << "no GPU: " << why

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// <dir>/<name>/ serving <kRepo>/<model>'s version 1 on `device`.
void AddOnDevice(const fs::path& dir, const std::string& model, const std::string& name, const std::string& device) {
  fs::create_directories(dir / name / "1");
  for (const char* file : {"model.pt", "model.pt2"}) {
    if (fs::exists(fs::path(kRepo) / model / "1" / file)) {
      fs::create_symlink(fs::path(kRepo) / model / "1" / file, dir / name / "1" / file);
    }
  }
  std::string config = ReadFile(fs::path(kRepo) / model / "config.pbtxt");
  const size_t at = config.find("instance_group {");
  if (at != std::string::npos) config.erase(at, config.find('}', at) - at + 1);
  const size_t name_at = config.find("name: \"");
  if (name_at == 0) config.erase(0, config.find('\n') + 1);
  std::ofstream(dir / name / "config.pbtxt") << config << "instance_group { device: \"" << device << "\" }\n";
}

std::unique_ptr<Client> ClientOf(const ServerProcess& server) {
  ClientOptions options;
  options.endpoints = {server.grpc_address()};
  return *Client::Create(options);
}

double MaxDifference(const Tensor& a, const Tensor& b) {
  absl::StatusOr<std::vector<double>> x = a.AsDoubles(), y = b.AsDoubles();
  if (!x.ok() || !y.ok() || x->size() != y->size() || a.shape != b.shape) return INFINITY;
  double worst = 0;
  for (size_t i = 0; i < x->size(); ++i) worst = std::max(worst, std::abs((*x)[i] - (*y)[i]));
  return worst;
}

TEST(Gpu, DytModelsServedOnCudaAnswerAsOnTheCpuAndTheirMemoryShows) {
  SKIP_WITHOUT_GPU();
  const fs::path dir = fs::temp_directory_path() / absl::StrCat("dytserve-gpu-", getpid());
  fs::remove_all(dir);
  for (const std::string model : {"vit_dyt", "llama_dyt", "vit_ln", "llama_rms"}) {
    AddOnDevice(dir, model, model + "_cpu", "cpu");
    AddOnDevice(dir, model, model + "_cuda", "cuda:0");
  }
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(kServer, {absl::StrCat("--model_repository=", dir.string())});
  ASSERT_TRUE(server.ok()) << server.status();
  std::unique_ptr<Client> client = ClientOf(**server);
  std::vector<float> pixels(4 * 64);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<float>((i * 7) % 17) / 16.0f;
  std::vector<int64_t> ids(3 * 40);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>((i * 31 + 7) % 256);
  for (const std::string model : {"vit_dyt", "llama_dyt", "vit_ln", "llama_rms"}) {
    SCOPED_TRACE(model);
    const std::vector<Tensor> inputs =
        absl::StartsWith(model, "vit") ? std::vector<Tensor>{Tensor::From<float>("pixel_values", {4, 1, 8, 8}, pixels)}
                                       : std::vector<Tensor>{Tensor::From<int64_t>("input_ids", {3, 40}, ids)};
    absl::StatusOr<InferResult> cpu = client->Infer(model + "_cpu", inputs);
    absl::StatusOr<InferResult> cuda = client->Infer(model + "_cuda", inputs);
    ASSERT_TRUE(cpu.ok()) << cpu.status();
    ASSERT_TRUE(cuda.ok()) << cuda.status();
    // TF32 is off in LibTorch by default; what remains is summation order.
    EXPECT_LE(MaxDifference(cpu->outputs[0], cuda->outputs[0]), 1e-4);
  }
  const std::string scrape = *testing::HttpGet((*server)->metrics_address(), "/metrics");
  EXPECT_TRUE(absl::StrContains(scrape, "dytserve_cuda_allocated_bytes{device=\"cuda:0\"}")) << scrape;
  EXPECT_TRUE(absl::StrContains(scrape, "dytserve_model_fused_dyt{model=\"vit_dyt_cuda\",version=\"1\"} 9")) << scrape;
  EXPECT_TRUE(absl::StrContains(scrape, "dytserve_model_weight_bytes{device=\"cuda:0\"")) << scrape;
  EXPECT_EQ((*server)->Stop(SIGTERM), 0);
  fs::remove_all(dir);
}

// Each row asks the GPU for 35% of its memory (the second input value, in
// GiB): a batch of 4 rows cannot fit, halves of 2 can. The server splits the
// failed batch and retries, so all four requests succeed.
TEST(Gpu, ABatchThatRunsOutOfMemoryIsSplitAndRetried) {
  SKIP_WITHOUT_GPU();
#ifdef DYTSERVE_WITH_CUDA
  const float gib_per_row =
      static_cast<float>(static_cast<double>(at::cuda::getDeviceProperties(0)->totalGlobalMem) * 0.35 / (1 << 30));
#else
  const float gib_per_row = 0;
#endif
  const fs::path dir = fs::temp_directory_path() / absl::StrCat("dytserve-gpu-oom-", getpid());
  fs::remove_all(dir);
  fs::create_directories(dir / "hungry" / "1");
  torch::jit::Module module("Hungry");
  module.define(R"py(
def forward(self, x):
    # x[:, 1] GiB of float32 per row, written, so the allocation is real
    per_row = int(x[0, 1].item() * 268435456)
    scratch = torch.ones([x.size(0), per_row], dtype=torch.float32, device=x.device)
    return x * 2.0 + scratch[:, :2].sum(dim=1, keepdim=True) * 0.0
)py");
  module.save((dir / "hungry" / "1" / "model.pt").string());
  std::ofstream(dir / "hungry" / "config.pbtxt")
      << "max_batch_size: 4\n"
         "input { name: \"x\" data_type: TYPE_FP32 dims: [2] }\n"
         "output { name: \"y\" data_type: TYPE_FP32 dims: [2] }\n"
         "dynamic_batching { max_queue_delay_us: 200000 preferred_batch_sizes: [4] }\n"
         "instance_group { device: \"cuda:0\" }\n"
         "optimization { freeze: false }\n";
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(kServer, {absl::StrCat("--model_repository=", dir.string())});
  ASSERT_TRUE(server.ok()) << server.status();
  std::unique_ptr<Client> client = ClientOf(**server);
  std::vector<std::vector<Tensor>> requests;
  for (int i = 0; i < 4; ++i) requests.push_back({Tensor::From<float>("x", {1, 2}, {1.0f * i, gib_per_row})});
  const std::vector<absl::StatusOr<InferResult>> results = testing::InferAll(*client, "hungry", requests);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].status();
    EXPECT_EQ(*results[i]->outputs[0].As<float>(), (std::vector<float>{2.0f * i, 2.0f * gib_per_row}));
  }
  const std::string log = (*server)->Stderr();
  EXPECT_TRUE(absl::StrContains(log, "model 'hungry': a batch of 4 rows ran out of memory; retrying it as 2 and 2"))
      << log;
  EXPECT_EQ((*server)->Stop(SIGTERM), 0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace dytserve
