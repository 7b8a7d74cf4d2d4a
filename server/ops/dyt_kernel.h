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

// tanh(z) = (2^y - 1) / (2^y + 1), y = 2 z log2(e): the kernels' tanh
// (dyt_kernel_impl.h explains the error budget).
constexpr float kDytExpClamp = 40.0f;           // |y| beyond this: tanh is +-1 in float
constexpr float kDytRoundMagic = 12582912.0f;   // 1.5 * 2^23: adding it rounds to an integer
// 2^f - 1 = f * (C1 + C2 f + C3 f^2 + C4 f^3 + C5 f^4) on [-1/2, 1/2], minimax
// in relative terms (4.2e-7), so that it is exactly 0 at f = 0 and accurate
// relative to itself near 0.
constexpr float kDytExpm1C1 = 6.9314712538e-01f, kDytExpm1C2 = 2.4022353139e-01f, kDytExpm1C3 = 5.5505499160e-02f,
                kDytExpm1C4 = 9.6662661025e-03f, kDytExpm1C5 = 1.3316874743e-03f;

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

  // Non-temporal stores: only for fp32 whose every row starts 64-byte aligned.
  bool stream = false;

  // DytExp2Scale(alpha): x times this is the y whose 2^y the tanh needs.
  float exp2_scale = 0;
};

// Rows of `args` (positions, or channel planes); defined out of line, like
// everything here, so that no copy compiled with -mavx512f can be linked in
// for other code.
int64_t DytRows(const DytArgs& args);

// 2 alpha log2(e), rounded once.
float DytExp2Scale(float alpha);

// Each processes rows [begin, end).
void DytRowsScalar(const DytArgs& args, int64_t begin, int64_t end);
void DytRowsAvx2(const DytArgs& args, int64_t begin, int64_t end);    // needs AVX2, FMA, F16C
void DytRowsAvx512(const DytArgs& args, int64_t begin, int64_t end);  // needs AVX-512F

// Row r from element `from` to its end, in scalar code: the vector kernels
// tails.
void DytRowsTail(const DytArgs& args, int64_t row, int64_t from);

// tanh(y / (2 log2 e)) in float, computed the way the vector kernels do:
// the scalar kernel and the vector kernels' row tails.
float DytTanhOfExp2(float y);
// tanh(z) the same way, for tests.
float DytTanhScalar(float z);

}  // namespace dytserve::ops

#endif  // DYTSERVE_SERVER_OPS_DYT_KERNEL_H_
