// Portable DyT: the fallback on CPUs without AVX2, and the vector kernels'
// row tails. Same tanh approximation as the vector code, so that a row's
// last elements agree with its first.
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
  const float t = DytTanhScalar(a.alpha * LoadOne(a.dtype, a.x, index));
  const float w = a.weight ? a.weight[channel] : 1.0f;
  const float b = a.bias ? a.bias[channel] : 0.0f;
  return t * w + b;
}

}  // namespace

float DytTanhScalar(float x) {
  constexpr float kClamp = 7.90531110763549805f;
  x = x < -kClamp ? -kClamp : (x > kClamp ? kClamp : x);
  const float x2 = x * x;
  float p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  p = p * x;
  float q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return p / q;
}

void DytRowsTail(const DytArgs& a, int64_t row, int64_t from) {
  const int64_t length = a.inner == 1 ? a.channels : a.inner;
  const int64_t base = row * length;
  for (int64_t j = from; j < length; ++j) StoreOne(a.dtype, a.y, base + j, Apply(a, row, j));
}

void DytRowsScalar(const DytArgs& a, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) DytRowsTail(a, r, 0);
}

}  // namespace dytserve::ops
