#include "server/ops/dyt_op.h"

#include <cpuid.h>
#include <unistd.h>

#include <atomic>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "server/ops/dyt_kernel.h"

namespace dytserve::ops {
namespace {

std::atomic<DytIsa> g_forced{DytIsa::kAuto};
std::atomic<int64_t> g_stream_threshold{-1};

bool HasAvx512() { return __builtin_cpu_supports("avx512f"); }
// Clang 14's __builtin_cpu_supports does not know "f16c", so it is read from
// CPUID leaf 1 directly.
bool HasF16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
}
bool HasAvx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && HasF16c(); }

// Elements one parallel task should cover: large enough that scheduling is
// noise, small enough that both cores of a small box get work.
constexpr int64_t kGrainElements = 1 << 15;

at::Tensor FloatContiguous(const at::Tensor& t) {
  if (t.scalar_type() == at::kFloat && t.is_contiguous() && t.device().is_cpu()) return t;
  return t.reshape({-1}).to(at::kFloat).contiguous();
}

int64_t LastLevelCacheBytes() {
  static const int64_t bytes = [] {
    const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return static_cast<int64_t>(l3 > 0 ? l3 : l2 > 0 ? l2 : 32L << 20);
  }();
  return bytes;
}

int64_t StreamThreshold() {
  const int64_t forced = g_stream_threshold.load();
  return forced >= 0 ? forced : LastLevelCacheBytes();
}

at::Tensor Unfused(const at::Tensor& x, const at::Tensor& alpha, const c10::optional<at::Tensor>& weight,
                   const c10::optional<at::Tensor>& bias, bool channels_last, int64_t channels) {
  std::vector<int64_t> shape(x.dim(), 1);
  shape[channels_last ? x.dim() - 1 : 1] = channels;
  at::Tensor y = at::tanh(alpha.reshape({}).to(x.scalar_type()) * x);
  if (weight.has_value()) y = y * weight->reshape(shape).to(x.scalar_type());
  if (bias.has_value()) y = y + bias->reshape(shape).to(x.scalar_type());
  return y.contiguous();
}

}  // namespace

void SetDytIsa(DytIsa isa) { g_forced.store(isa); }
void SetDytStreamThreshold(int64_t bytes) { g_stream_threshold.store(bytes); }

DytIsa ActiveDytIsa() {
  const DytIsa forced = g_forced.load();
  if (forced == DytIsa::kScalar) return DytIsa::kScalar;
  if ((forced == DytIsa::kAuto || forced == DytIsa::kAvx512) && HasAvx512()) return DytIsa::kAvx512;
  if (HasAvx2()) return DytIsa::kAvx2;
  return DytIsa::kScalar;
}

const char* DytIsaName(DytIsa isa) {
  switch (isa) {
    case DytIsa::kAuto: return "auto";
    case DytIsa::kScalar: return "scalar";
    case DytIsa::kAvx2: return "avx2";
    case DytIsa::kAvx512: return "avx512";
  }
  return "?";
}

int64_t CheckDytArgs(const at::Tensor& x, const at::Tensor& alpha, const c10::optional<at::Tensor>& weight,
                     const c10::optional<at::Tensor>& bias, bool channels_last) {
  TORCH_CHECK(x.is_floating_point(), "dytserve::dyt: x must be floating point, got ", x.scalar_type());
  TORCH_CHECK(x.dim() >= (channels_last ? 1 : 2), "dytserve::dyt: x of rank ", x.dim(), " has no channel dim");
  TORCH_CHECK(alpha.numel() == 1, "dytserve::dyt: alpha must have one element, got ", alpha.numel());
  const int64_t channels = channels_last ? x.size(-1) : x.size(1);
  for (const auto* p : {&weight, &bias}) {
    TORCH_CHECK(!p->has_value() || (*p)->numel() == channels, "dytserve::dyt: weight/bias must have ", channels,
                " elements (the channel dim), got ", (*p)->numel());
  }
  return channels;
}

void DescribeDytLayout(const at::Tensor& xc, int64_t channels, bool channels_last, DytArgs* args) {
  const at::ScalarType type = xc.scalar_type();
  args->dtype = type == at::kFloat ? DytDtype::kFloat : type == at::kHalf ? DytDtype::kHalf : DytDtype::kBFloat16;
  args->channels = channels;
  if (channels_last) {
    args->outer = channels == 0 ? 0 : xc.numel() / channels;
    args->inner = 1;
  } else {
    args->outer = xc.size(0);
    args->inner = channels == 0 || args->outer == 0 ? 0 : xc.numel() / (args->outer * channels);
  }
}

at::Tensor Dyt(const at::Tensor& x, const at::Tensor& alpha, const c10::optional<at::Tensor>& weight,
               const c10::optional<at::Tensor>& bias, bool channels_last) {
  const int64_t channels = CheckDytArgs(x, alpha, weight, bias, channels_last);
  const at::ScalarType type = x.scalar_type();
  if ((type != at::kFloat && type != at::kHalf && type != at::kBFloat16) || !x.device().is_cpu()) {
    return Unfused(x, alpha, weight, bias, channels_last, channels);
  }

  const at::Tensor xc = x.contiguous();
  at::Tensor y = at::empty(xc.sizes(), xc.options());
  // The per-channel affine stays in float whatever x is: it is C numbers.
  // Served models call this dozens of times per forward on small tensors,
  // so what is already float and contiguous is used in place.
  const at::Tensor w = weight.has_value() ? FloatContiguous(*weight) : at::Tensor();
  const at::Tensor b = bias.has_value() ? FloatContiguous(*bias) : at::Tensor();

  DytArgs args;
  args.x = xc.data_ptr();
  args.y = y.data_ptr();
  args.alpha = alpha.device().is_cpu() && alpha.scalar_type() == at::kFloat ? *alpha.data_ptr<float>()
                                                                            : alpha.item<float>();
  args.exp2_scale = DytExp2Scale(args.alpha);
  args.weight = w.defined() ? w.data_ptr<float>() : nullptr;
  args.bias = b.defined() ? b.data_ptr<float>() : nullptr;
  DescribeDytLayout(xc, channels, channels_last, &args);
  if (xc.numel() == 0) return y;
  // An output larger than the last-level cache will not be found there by
  // whoever reads it next, so it is streamed past the cache: that saves
  // reading each destination line in before overwriting it.
  const int64_t row_bytes = (args.inner == 1 ? args.channels : args.inner) * static_cast<int64_t>(sizeof(float));
  args.stream = args.dtype == DytDtype::kFloat && static_cast<int64_t>(y.nbytes()) > StreamThreshold() &&
                reinterpret_cast<uintptr_t>(args.y) % 64 == 0 && row_bytes % 64 == 0;

  void (*kernel)(const DytArgs&, int64_t, int64_t) = DytRowsScalar;
  switch (ActiveDytIsa()) {
    case DytIsa::kAvx512: kernel = DytRowsAvx512; break;
    case DytIsa::kAvx2: kernel = DytRowsAvx2; break;
    default: break;
  }
  const int64_t row_length = args.inner == 1 ? args.channels : args.inner;
  const int64_t grain = std::max<int64_t>(1, kGrainElements / std::max<int64_t>(row_length, 1));
  at::parallel_for(0, DytRows(args), grain, [&](int64_t begin, int64_t end) { kernel(args, begin, end); });
  return y;
}

#ifdef DYTSERVE_WITH_CUDA
void EnsureDytCudaRegistered();  // dyt_op_cuda.cc
void EnsureDytRegistered() { EnsureDytCudaRegistered(); }
#else
void EnsureDytRegistered() {}
#endif

TORCH_LIBRARY(dytserve, m) {
  m.def("dyt(Tensor x, Tensor alpha, Tensor? weight=None, Tensor? bias=None, bool channels_last=True) -> Tensor");
}

TORCH_LIBRARY_IMPL(dytserve, CPU, m) { m.impl("dyt", &Dyt); }

}  // namespace dytserve::ops
