// Portable DyT: the fallback on CPUs without AVX2, and the vector kernels'
// row tails. Same tanh steps as the vector code, so that a row's last
// elements agree with its first (to rounding: no FMA here).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "server/ops/dyt_kernel.h"

namespace dytserve::ops {
namespace {

float LoadOne(DytDtype dtype, const void* p, int64_t i) {
  if (dtype == DytDtype::kFloat) return static_cast<const float*>(p)[i];
  const uint16_t h = static_cast<const uint16_t*>(p)[i];
  uint32_t bits;
  if (dtype == DytDtype::kBFloat16) {
    bits = static_cast<uint32_t>(h) << 16;
  } else {
    // IEEE half -> float, subnormals and specials included.
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
    uint32_t exponent = (h >> 10) & 0x1f;
    uint32_t mantissa = h & 0x3ff;
    if (exponent == 0x1f) {
      bits = sign | 0x7f800000 | (mantissa << 13);
    } else if (exponent != 0) {
      bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
      bits = sign;
    } else {
      exponent = 113;
      while ((mantissa & 0x400) == 0) {
        mantissa <<= 1;
        --exponent;
      }
      bits = sign | (exponent << 23) | ((mantissa & 0x3ff) << 13);
    }
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

uint16_t FloatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof(x));
  const uint32_t sign = (x >> 16) & 0x8000;
  const int32_t exponent = static_cast<int32_t>((x >> 23) & 0xff) - 127 + 15;
  uint32_t mantissa = x & 0x7fffff;
  if (((x >> 23) & 0xff) == 0xff) return static_cast<uint16_t>(sign | 0x7c00 | (mantissa ? 0x200 : 0));
  if (exponent >= 0x1f) return static_cast<uint16_t>(sign | 0x7c00);
  if (exponent <= 0) {
    if (exponent < -10) return static_cast<uint16_t>(sign);
    mantissa |= 0x800000;
    const uint32_t shift = static_cast<uint32_t>(14 - exponent);
    uint32_t half = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (half & 1))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = sign | (static_cast<uint32_t>(exponent) << 10) | (mantissa >> 13);
  const uint32_t rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) ++half;  // may carry into the exponent: still right
  return static_cast<uint16_t>(half);
}

void StoreOne(DytDtype dtype, void* p, int64_t i, float v) {
  if (dtype == DytDtype::kFloat) {
    static_cast<float*>(p)[i] = v;
    return;
  }
  uint16_t out;
  if (dtype == DytDtype::kBFloat16) {
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof(bits));
    bits += 0x7fff + ((bits >> 16) & 1);
    out = static_cast<uint16_t>(bits >> 16);
  } else {
    out = FloatToHalf(v);
  }
  static_cast<uint16_t*>(p)[i] = out;
}

float Apply(const DytArgs& a, int64_t row, int64_t j) {
  const int64_t channel = a.inner == 1 ? j : row % a.channels;
  const int64_t index = row * (a.inner == 1 ? a.channels : a.inner) + j;
  const float t = DytTanhOfExp2(LoadOne(a.dtype, a.x, index) * a.exp2_scale);
  const float w = a.weight ? a.weight[channel] : 1.0f;
  const float b = a.bias ? a.bias[channel] : 0.0f;
  return t * w + b;
}

uint32_t Bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return bits;
}

}  // namespace

float DytExp2Scale(float alpha) { return static_cast<float>(2.0 * alpha * 1.4426950408889634); }

float DytTanhOfExp2(float y) {
  // The same steps, in the same order, as Tanh2y in dyt_kernel_impl.h.
  if (std::isnan(y)) return y;
  y = std::min(kDytExpClamp, std::max(-kDytExpClamp, y));
  const float t = y + kDytRoundMagic;
  const float f = y - (t - kDytRoundMagic);
  float p = kDytExpm1C5 * f + kDytExpm1C4;
  p = p * f + kDytExpm1C3;
  p = p * f + kDytExpm1C2;
  p = p * f + kDytExpm1C1;
  const float q = p * f;
  const uint32_t s_bits = Bits(1.0f) + (Bits(t) << 23);
  float s;
  std::memcpy(&s, &s_bits, sizeof(s));
  const float numerator = s * q + (s - 1.0f);
  return numerator / (numerator + 2.0f);
}

int64_t DytRows(const DytArgs& a) { return a.inner == 1 ? a.outer : a.outer * a.channels; }

float DytTanhScalar(float z) { return DytTanhOfExp2(z * DytExp2Scale(1.0f)); }

void DytRowsTail(const DytArgs& a, int64_t row, int64_t from) {
  const int64_t length = a.inner == 1 ? a.channels : a.inner;
  const int64_t base = row * length;
  for (int64_t j = from; j < length; ++j) StoreOne(a.dtype, a.y, base + j, Apply(a, row, j));
}

void DytRowsScalar(const DytArgs& a, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) DytRowsTail(a, r, 0);
}

}  // namespace dytserve::ops
