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
//   build/bench/dyt_op_bench [--min_seconds=0.5]
//
// Goals: fused >= 2x faster than layer_norm and >= 8x faster than unfused.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/script.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/time/clock.h"
#include "server/core/cpu_block_cache.h"
#include "server/ops/dyt_op.h"

ABSL_FLAG(double, min_seconds, 0.5, "Minimum measured time per variant");

namespace dytserve {
namespace {

// Median seconds per call over repeated runs of at least --min_seconds.
double Time(const std::function<void()>& fn) {
  fn();  // warm caches and lazy initialisation
  std::vector<double> samples;
  const absl::Time start = absl::Now();
  while (samples.size() < 5 || absl::Now() - start < absl::Seconds(absl::GetFlag(FLAGS_min_seconds))) {
    const absl::Time t0 = absl::Now();
    fn();
    samples.push_back(absl::ToDoubleSeconds(absl::Now() - t0));
  }
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

int Run() {
  torch::jit::CompilationUnit unfused_cu;
  unfused_cu.define(c10::nullopt,
                    "def dyt(x, alpha, w, b):\n  return torch.tanh(alpha * x) * w + b\n",
                    torch::jit::nativeResolver(), nullptr);
  torch::jit::Function& unfused = unfused_cu.get_function("dyt");
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
        const double copy = Time([&] { out.copy_(x); });
        const double fused = Time([&] { ops::Dyt(x, alpha, w, b, true); });
        const double ln = Time([&] { at::layer_norm(x, {c}, w, b, 1e-6); });
        const double unf = Time([&] { unfused({x, alpha, w, b}); });
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
