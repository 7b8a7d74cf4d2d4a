// The fused DyT operator against what it replaces, side by side in one run:
// aten's layer_norm, the unfused TorchScript DyT (mul, tanh, mul, add), and a
// plain one-pass copy of the same tensor into a buffer allocated once (the
// memory-bandwidth limit of a kernel that reads x and writes y through the
// cache).
//
// Twice: first with LibTorch's own CPU allocator, then with the server's CPU
// block cache installed (what dytserve-server runs with, --cpu_block_cache_mb),
// which takes the page faults of fresh outputs out of every variant.
//
// The four variants of a row take turns in short blocks (TimeInTurns).
//
//   build/bench/dyt_op_bench [--min_seconds=0.5] [--device=cuda]
//
// Goals: fused >= 2x faster than layer_norm and >= 8x faster than unfused.
// --device=cuda (a CUDA build on a GPU): the CUDA kernel, layer_norm and the
// unfused ops on the GPU, and the fused kernel's bandwidth against a device
// copy (bytes read plus written per second), each call synchronized.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/time/clock.h"
#include "server/core/cpu_block_cache.h"
#include "server/ops/dyt_op.h"

ABSL_FLAG(double, min_seconds, 0.5, "Minimum measured time per variant (they take turns)");
ABSL_FLAG(std::string, device, "cpu", "cpu, or cuda: the CUDA kernel on GPU 0 (a CUDA build on a GPU machine)");

namespace dytserve {
namespace {

// Median seconds per call of each of `fns`. They take turns in blocks of
// about 20 ms (at least 15 turns and --min_seconds each): a shared machine's
// speed drifts within seconds, and variants timed one after the other would
// each get a different machine. Within a block the calls repeat, as a
// model's ops find their tensors in the cache; the first call of each block,
// which does not, is left out.
std::vector<double> TimeInTurns(const std::vector<std::function<void()>>& fns) {
  std::vector<int> calls;  // per block
  for (const auto& fn : fns) {
    fn();  // lazy initialisation
    const absl::Time t0 = absl::Now();
    fn();
    const double once = absl::ToDoubleSeconds(absl::Now() - t0);
    calls.push_back(1 + static_cast<int>(std::clamp(0.02 / std::max(once, 1e-9), 1.0, 10000.0)));
  }
  std::vector<std::vector<double>> samples(fns.size());
  const absl::Time start = absl::Now();
  const absl::Duration budget = absl::Seconds(absl::GetFlag(FLAGS_min_seconds)) * static_cast<double>(fns.size());
  for (int turn = 0; turn < 15 || absl::Now() - start < budget; ++turn) {
    for (size_t i = 0; i < fns.size(); ++i) {
      fns[i]();
      for (int k = 1; k < calls[i]; ++k) {
        const absl::Time t0 = absl::Now();
        fns[i]();
        samples[i].push_back(absl::ToDoubleSeconds(absl::Now() - t0));
      }
    }
  }
  std::vector<double> medians;
  for (std::vector<double>& v : samples) {
    std::sort(v.begin(), v.end());
    medians.push_back(v[v.size() / 2]);
  }
  return medians;
}

int RunCuda(torch::jit::Function& unfused) {
  if (!torch::cuda::is_available()) {
    std::fprintf(stderr, "dyt_op_bench: --device=cuda, but no CUDA device is visible (or this is a CPU build)\n");
    return 2;
  }
  ops::EnsureDytRegistered();
  auto op = c10::Dispatcher::singleton()
                .findSchemaOrThrow("dytserve::dyt", "")
                .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const c10::optional<at::Tensor>&,
                                  const c10::optional<at::Tensor>&, bool)>();
  c10::InferenceMode guard;
  std::printf("DyT operator benchmark (CUDA device 0, fp32, each call synchronized); times are medians\n");
  std::printf("%-18s | %9s %9s %9s %9s | %9s %9s | %8s %9s %10s\n", "shape", "copy ms", "fused ms", "LN ms",
              "unfused", "copy GB/s", "fused GB/s", "LN/fused", "unf/fused", "fused/copy");
  for (const std::vector<int64_t>& shape : {std::vector<int64_t>{64, 197, 192}, std::vector<int64_t>{32, 2048, 4096},
                                            std::vector<int64_t>{8, 4096, 8192}}) {
    const int64_t c = shape.back();
    const auto cuda = at::TensorOptions().device(at::kCUDA);
    const at::Tensor x = at::randn(shape, cuda);
    const at::Tensor alpha = at::full({1}, 0.5, cuda), w = at::randn({c}, cuda), b = at::randn({c}, cuda);
    at::Tensor out = at::empty_like(x);
    auto synced = [](std::function<void()> fn) {
      return [fn] {
        fn();
        torch::cuda::synchronize();
      };
    };
    const std::vector<double> t = TimeInTurns({synced([&] { out.copy_(x); }),
                                               synced([&] { op.call(x, alpha, w, b, true); }),
                                               synced([&] { at::layer_norm(x, {c}, w, b, 1e-6); }),
                                               synced([&] { unfused({x, alpha, w, b}); })});
    const double bytes = 2.0 * static_cast<double>(x.numel()) * sizeof(float);  // read x, write y
    char label[40];
    std::snprintf(label, sizeof(label), "[%ld,%ld,%ld]", static_cast<long>(shape[0]), static_cast<long>(shape[1]),
                  static_cast<long>(shape[2]));
    std::printf("%-18s | %9.3f %9.3f %9.3f %9.3f | %9.0f %9.0f | %7.2fx %8.2fx %9.0f%%\n", label, t[0] * 1e3,
                t[1] * 1e3, t[2] * 1e3, t[3] * 1e3, bytes / t[0] / 1e9, bytes / t[1] / 1e9, t[2] / t[1], t[3] / t[1],
                100 * t[0] / t[1]);
  }
  std::printf("fused/copy: the kernel's share of a device copy's bandwidth (100%%: at the copy's limit)\n");
  return 0;
}

int Run() {
  torch::jit::CompilationUnit unfused_cu;
  unfused_cu.define(c10::nullopt,
                    "def dyt(x, alpha, w, b):\n  return torch.tanh(alpha * x) * w + b\n",
                    torch::jit::nativeResolver(), nullptr);
  torch::jit::Function& unfused = unfused_cu.get_function("dyt");
  if (absl::GetFlag(FLAGS_device) == "cuda") return RunCuda(unfused);
  if (absl::GetFlag(FLAGS_device) != "cpu") {
    std::fprintf(stderr, "dyt_op_bench: --device=%s: use cpu or cuda\n", absl::GetFlag(FLAGS_device).c_str());
    return 2;
  }
  c10::InferenceMode guard;

  std::printf("DyT operator benchmark (CPU, fp32, ISA %s); times are medians\n",
              ops::DytIsaName(ops::ActiveDytIsa()));
  for (const bool cached : {false, true}) {
    if (cached && !CpuBlockCache::Install({}).ok()) return 1;
    std::printf("\n%s\n", cached ? "with the server's CPU block cache (as served)"
                                  : "with LibTorch's CPU allocator (fresh pages for every large output)");
    std::printf("%-16s %3s | %9s %9s %9s %9s | %8s %9s %9s\n", "shape", "thr", "copy ms", "fused ms", "LN ms",
                "unfused", "LN/fused", "unf/fused", "copy/fused");
    for (const std::vector<int64_t>& shape :
         {std::vector<int64_t>{1, 197, 192}, std::vector<int64_t>{64, 197, 192}, std::vector<int64_t>{4, 2048, 4096}}) {
      const int64_t c = shape.back();
      const at::Tensor x = at::randn(shape);
      const at::Tensor alpha = at::full({1}, 0.5), w = at::randn({c}), b = at::randn({c});
      at::Tensor out = at::empty_like(x);
      for (int threads : {1, 2}) {
        at::set_num_threads(threads);
        const std::vector<double> t = TimeInTurns({[&] { out.copy_(x); }, [&] { ops::Dyt(x, alpha, w, b, true); },
                                                   [&] { at::layer_norm(x, {c}, w, b, 1e-6); },
                                                   [&] { unfused({x, alpha, w, b}); }});
        const double copy = t[0], fused = t[1], ln = t[2], unf = t[3];
        char label[32];
        std::snprintf(label, sizeof(label), "[%ld,%ld,%ld]", static_cast<long>(shape[0]), static_cast<long>(shape[1]),
                      static_cast<long>(shape[2]));
        std::printf("%-16s %3d | %9.3f %9.3f %9.3f %9.3f | %7.2fx %8.2fx %8.0f%%\n", label, at::get_num_threads(),
                    copy * 1e3, fused * 1e3, ln * 1e3, unf * 1e3, ln / fused, unf / fused, 100 * copy / fused);
      }
    }
  }
  std::printf("goals: LN/fused >= 2x, unfused/fused >= 8x; copy/fused is the fraction of the bandwidth limit "
              "(over 100%%: the fused output is streamed past the cache, the copy's is not)\n");
  return 0;
}

}  // namespace
}  // namespace dytserve

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return dytserve::Run();
}
