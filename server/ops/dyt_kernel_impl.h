// The vector DyT kernel, written once over an ISA-specific `Vec` (8 floats on
// AVX2, 16 on AVX-512). Included by dyt_kernel_avx2.cc and
// dyt_kernel_avx512.cc, each compiled with its own -m flags.
//
// tanh is a rational approximation x * P(x^2) / Q(x^2) of degrees 13/6 on
// [-7.9053, 7.9053] (beyond which tanh is +-1 in float). Its error is a few
// float ulps. The division is a hardware reciprocal estimate refined by one
// Newton step (about 23 correct bits, a few ulps more), because a true
// vector divide costs more than everything else in the loop together; the
// sum stays far inside the 2e-6 the operator promises.
#include <immintrin.h>

#include <cstdint>

#include "server/ops/dyt_kernel.h"

namespace dytserve::ops {
namespace DYT_ISA {
namespace {

constexpr float kClamp = 7.90531110763549805f;
constexpr float kA1 = 4.89352455891786e-03f, kA3 = 6.37261928875436e-04f, kA5 = 1.48572235717979e-05f,
                kA7 = 5.12229709037114e-08f, kA9 = -8.60467152213735e-11f, kA11 = 2.00018790482477e-13f,
                kA13 = -2.76076847742355e-16f;
constexpr float kB0 = 4.89352518554385e-03f, kB2 = 2.26843463243900e-03f, kB4 = 1.18534705686654e-04f,
                kB6 = 1.19825839466702e-06f;

inline Vec Tanh(Vec x) {
  x = Min(Max(x, Set1(-kClamp)), Set1(kClamp));
  const Vec x2 = Mul(x, x);
  Vec p = Fma(x2, Set1(kA13), Set1(kA11));
  p = Fma(p, x2, Set1(kA9));
  p = Fma(p, x2, Set1(kA7));
  p = Fma(p, x2, Set1(kA5));
  p = Fma(p, x2, Set1(kA3));
  p = Fma(p, x2, Set1(kA1));
  p = Mul(p, x);
  Vec q = Fma(x2, Set1(kB6), Set1(kB4));
  q = Fma(q, x2, Set1(kB2));
  q = Fma(q, x2, Set1(kB0));
  Vec r = Rcp(q);
  r = Mul(r, Fnma(q, r, Set1(2.0f)));  // r * (2 - q r): one Newton step
  return Mul(p, r);
}

// A full vector of `dtype` elements at `p` + i, widened to float.
inline Vec Load(DytDtype dtype, const void* p, int64_t i) {
  switch (dtype) {
    case DytDtype::kFloat: return LoadFloat(static_cast<const float*>(p) + i);
    case DytDtype::kHalf: return LoadHalf(static_cast<const uint16_t*>(p) + i);
    case DytDtype::kBFloat16: return LoadBf16(static_cast<const uint16_t*>(p) + i);
  }
  return Set1(0);
}

inline void Store(DytDtype dtype, void* p, int64_t i, Vec v) {
  switch (dtype) {
    case DytDtype::kFloat: StoreFloat(static_cast<float*>(p) + i, v); break;
    case DytDtype::kHalf: StoreHalf(static_cast<uint16_t*>(p) + i, v); break;
    case DytDtype::kBFloat16: StoreBf16(static_cast<uint16_t*>(p) + i, v); break;
  }
}

}  // namespace

void Rows(const DytArgs& a, int64_t begin, int64_t end) {
  const Vec alpha = Set1(a.alpha);
  if (a.inner == 1) {
    // Channels last: vectors run along the channels of one position.
    const int64_t c = a.channels;
    const int64_t full = c - c % kLanes;
    for (int64_t r = begin; r < end; ++r) {
      const int64_t base = r * c;
      for (int64_t j = 0; j < full; j += kLanes) {
        const Vec t = Tanh(Mul(alpha, Load(a.dtype, a.x, base + j)));
        const Vec w = a.weight ? LoadFloat(a.weight + j) : Set1(1.0f);
        const Vec b = a.bias ? LoadFloat(a.bias + j) : Set1(0.0f);
        Store(a.dtype, a.y, base + j, Fma(t, w, b));
      }
      if (full < c) DytRowsTail(a, r, full);
    }
    return;
  }
  // Channels first: vectors run along one channel's plane, w and b broadcast.
  const int64_t n = a.inner;
  const int64_t full = n - n % kLanes;
  for (int64_t r = begin; r < end; ++r) {
    const int64_t channel = r % a.channels;
    const Vec w = Set1(a.weight ? a.weight[channel] : 1.0f);
    const Vec b = Set1(a.bias ? a.bias[channel] : 0.0f);
    const int64_t base = r * n;
    for (int64_t j = 0; j < full; j += kLanes) {
      Store(a.dtype, a.y, base + j, Fma(Tanh(Mul(alpha, Load(a.dtype, a.x, base + j))), w, b));
    }
    if (full < n) DytRowsTail(a, r, full);
  }
}

}  // namespace DYT_ISA
}  // namespace dytserve::ops
