// The fused DyT kernel's interface: y = w[c] * tanh(alpha * x) + b[c] in one
// pass over memory. Plain pointers only, so that the ISA-specific kernel
// files include nothing but intrinsics (an inline function from a shared
// header compiled with -mavx512f could otherwise be picked by the linker for
// code that runs on CPUs without it).
#ifndef DYTSERVE_SERVER_OPS_DYT_KERNEL_H_
#define DYTSERVE_SERVER_OPS_DYT_KERNEL_H_

#include <cstdint>

namespace dytserve::ops {

enum class DytDtype { kFloat, kHalf, kBFloat16 };

struct DytArgs {
  const void* x = nullptr;
  void* y = nullptr;
  DytDtype dtype = DytDtype::kFloat;
  float alpha = 0.5f;
  const float* weight = nullptr;  // [channels] or null (1)
  const float* bias = nullptr;    // [channels] or null (0)
  // x viewed as [outer, channels, inner], contiguous. inner == 1 is
  // channels-last: a row is one position's `channels` values. inner > 1 is
  // channels-first: a row is one channel's `inner` values, row r has channel
  // r % channels.
  int64_t outer = 0;
  int64_t channels = 0;
  int64_t inner = 1;

  int64_t rows() const { return inner == 1 ? outer : outer * channels; }
};

// Each processes rows [begin, end).
void DytRowsScalar(const DytArgs& args, int64_t begin, int64_t end);
void DytRowsAvx2(const DytArgs& args, int64_t begin, int64_t end);    // needs AVX2, FMA, F16C
void DytRowsAvx512(const DytArgs& args, int64_t begin, int64_t end);  // needs AVX-512F

// Row r from element `from` to its end, in scalar code: the vector kernels
// tails.
void DytRowsTail(const DytArgs& args, int64_t row, int64_t from);

// tanh in float as the vector kernels compute it (a clamped rational
// approximation), exposed for tests.
float DytTanhScalar(float x);

}  // namespace dytserve::ops

#endif  // DYTSERVE_SERVER_OPS_DYT_KERNEL_H_
