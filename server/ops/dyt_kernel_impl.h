// The vector DyT kernel, written once over an ISA-specific `Vec` (8 floats on
// AVX2, 16 on AVX-512). Included by dyt_kernel_avx2.cc and
// dyt_kernel_avx512.cc, each compiled with its own -m flags.
//
// tanh(alpha x) = (2^y - 1) / (2^y + 1), y = x * (2 alpha log2 e), so alpha
// costs nothing per element. With y = k + f (k an integer, |f| <= 1/2),
// 2^y - 1 = 2^k q + (2^k - 1), q = 2^f - 1 from a polynomial that is exactly
// 0 at f = 0 (relative error 4.2e-7), and 2^k is written straight into the
// exponent bits. The numerator is thus exact at 0 and accurate relative to
// itself near 0 (tanh(0) is 0, tiny inputs keep their relative accuracy);
// the denominator is the numerator plus 2. Away from 0 the error stays under
// 2e-7 absolute. y is clamped to [-40, 40], where tanh is +-1 in float; a NaN
// passes through (q is NaN, and so is everything computed from it).
//
// The loops are specialised on dtype and on whether there is a weight and a
// bias (a folded DyT has neither), and do two vectors per step so that the
// two dependency chains overlap. `stream` outputs (fp32, aligned rows; the
// caller decides: outputs larger than the cache) use non-temporal stores,
// which skip reading the destination into the cache before writing it.
#include <immintrin.h>

#include <cstdint>

#include "server/ops/dyt_kernel.h"

namespace dytserve::ops {
namespace DYT_ISA {
namespace {

inline Vec Tanh2y(Vec y) {
  // Max and min return their second operand when either is NaN, so the
  // bounds go first and a NaN y comes out of the clamp as it went in.
  y = Min(Set1(kDytExpClamp), Max(Set1(-kDytExpClamp), y));
  const Vec magic = Set1(kDytRoundMagic);
  const Vec t = Add(y, magic);  // round(y) = k sits in t's low mantissa bits
  const Vec f = Sub(y, Sub(t, magic));
  Vec p = Fma(Set1(kDytExpm1C5), f, Set1(kDytExpm1C4));
  p = Fma(p, f, Set1(kDytExpm1C3));
  p = Fma(p, f, Set1(kDytExpm1C2));
  p = Fma(p, f, Set1(kDytExpm1C1));
  const Vec q = Mul(p, f);                                        // 2^f - 1
  const Vec s = ScaleByRoundedExponent(Set1(1.0f), t);            // 2^k
  const Vec numerator = Fma(s, q, Sub(s, Set1(1.0f)));            // 2^y - 1
  return Div(numerator, Add(numerator, Set1(2.0f)));
}

// t * w + b, leaving out what the DyT does not have.
template <bool kWeight, bool kBias>
inline Vec Affine(Vec t, Vec w, Vec b) {
  if constexpr (kWeight && kBias) return Fma(t, w, b);
  if constexpr (kWeight && !kBias) return Mul(t, w);
  if constexpr (!kWeight && kBias) return Add(t, b);
  return t;
}

template <DytDtype kType>
inline Vec Load(const void* p, int64_t i) {
  if constexpr (kType == DytDtype::kFloat) return LoadFloat(static_cast<const float*>(p) + i);
  if constexpr (kType == DytDtype::kHalf) return LoadHalf(static_cast<const uint16_t*>(p) + i);
  if constexpr (kType == DytDtype::kBFloat16) return LoadBf16(static_cast<const uint16_t*>(p) + i);
}

template <DytDtype kType, bool kStream>
inline void Store(void* p, int64_t i, Vec v) {
  if constexpr (kType == DytDtype::kFloat) {
    if constexpr (kStream) {
      StreamFloat(static_cast<float*>(p) + i, v);
    } else {
      StoreFloat(static_cast<float*>(p) + i, v);
    }
  }
  if constexpr (kType == DytDtype::kHalf) StoreHalf(static_cast<uint16_t*>(p) + i, v);
  if constexpr (kType == DytDtype::kBFloat16) StoreBf16(static_cast<uint16_t*>(p) + i, v);
}

// Channels last: vectors run along the channels of one position, w and b
// vary per lane.
template <DytDtype kType, bool kWeight, bool kBias, bool kStream>
void RowsLast(const DytArgs& a, int64_t begin, int64_t end) {
  // Locals, not a's fields: a vector store may alias anything, and would
  // otherwise make the compiler reload every field after each one.
  const void* const x = a.x;
  void* const y = a.y;
  const float* const weight = a.weight;
  const float* const bias = a.bias;
  const Vec scale = Set1(a.exp2_scale);
  const int64_t c = a.channels;
  const int64_t pairs = c - c % (2 * kLanes);
  const int64_t full = c - c % kLanes;
  auto one = [&](int64_t base, int64_t j) {
    return Affine<kWeight, kBias>(Tanh2y(Mul(Load<kType>(x, base + j), scale)),
                                  kWeight ? LoadFloat(weight + j) : Vec(), kBias ? LoadFloat(bias + j) : Vec());
  };
  for (int64_t r = begin; r < end; ++r) {
    const int64_t base = r * c;
    int64_t j = 0;
    for (; j < pairs; j += 2 * kLanes) {
      const Vec v0 = one(base, j), v1 = one(base, j + kLanes);
      Store<kType, kStream>(y, base + j, v0);
      Store<kType, kStream>(y, base + j + kLanes, v1);
    }
    for (; j < full; j += kLanes) Store<kType, kStream>(y, base + j, one(base, j));
    if (full < c) DytRowsTail(a, r, full);
  }
}

// Channels first: vectors run along one channel's plane, w and b broadcast.
template <DytDtype kType, bool kWeight, bool kBias, bool kStream>
void RowsFirst(const DytArgs& a, int64_t begin, int64_t end) {
  const void* const x = a.x;
  void* const y = a.y;
  const Vec scale = Set1(a.exp2_scale);
  const int64_t n = a.inner;
  const int64_t pairs = n - n % (2 * kLanes);
  const int64_t full = n - n % kLanes;
  for (int64_t r = begin; r < end; ++r) {
    const int64_t channel = r % a.channels;
    const Vec w = Set1(kWeight ? a.weight[channel] : 1.0f);
    const Vec b = Set1(kBias ? a.bias[channel] : 0.0f);
    auto one = [&](int64_t i) { return Affine<kWeight, kBias>(Tanh2y(Mul(Load<kType>(x, i), scale)), w, b); };
    const int64_t base = r * n;
    int64_t j = 0;
    for (; j < pairs; j += 2 * kLanes) {
      const Vec v0 = one(base + j), v1 = one(base + j + kLanes);
      Store<kType, kStream>(y, base + j, v0);
      Store<kType, kStream>(y, base + j + kLanes, v1);
    }
    for (; j < full; j += kLanes) Store<kType, kStream>(y, base + j, one(base + j));
    if (full < n) DytRowsTail(a, r, full);
  }
}

template <DytDtype kType, bool kWeight, bool kBias, bool kStream>
void RowsOf(const DytArgs& a, int64_t begin, int64_t end) {
  if (a.inner == 1) {
    RowsLast<kType, kWeight, kBias, kStream>(a, begin, end);
  } else {
    RowsFirst<kType, kWeight, kBias, kStream>(a, begin, end);
  }
  if constexpr (kStream) _mm_sfence();  // the stores are visible before the caller hears we are done
}

template <DytDtype kType, bool kWeight, bool kBias>
void RowsAffine(const DytArgs& a, int64_t begin, int64_t end) {
  if constexpr (kType == DytDtype::kFloat) {
    if (a.stream) return RowsOf<kType, kWeight, kBias, true>(a, begin, end);
  }
  RowsOf<kType, kWeight, kBias, false>(a, begin, end);
}

template <DytDtype kType>
void RowsTyped(const DytArgs& a, int64_t begin, int64_t end) {
  if (a.weight != nullptr) {
    if (a.bias != nullptr) return RowsAffine<kType, true, true>(a, begin, end);
    return RowsAffine<kType, true, false>(a, begin, end);
  }
  if (a.bias != nullptr) return RowsAffine<kType, false, true>(a, begin, end);
  RowsAffine<kType, false, false>(a, begin, end);
}

}  // namespace

void Rows(const DytArgs& a, int64_t begin, int64_t end) {
  switch (a.dtype) {
    case DytDtype::kFloat: return RowsTyped<DytDtype::kFloat>(a, begin, end);
    case DytDtype::kHalf: return RowsTyped<DytDtype::kHalf>(a, begin, end);
    case DytDtype::kBFloat16: return RowsTyped<DytDtype::kBFloat16>(a, begin, end);
  }
}

}  // namespace DYT_ISA
}  // namespace dytserve::ops
