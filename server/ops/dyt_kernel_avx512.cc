// AVX-512F build of the DyT kernel (compiled with -mavx512f).
#include <immintrin.h>

#include <cstdint>

namespace dytserve::ops::avx512 {
namespace {

using Vec = __m512;
constexpr int64_t kLanes = 16;

inline Vec Set1(float v) { return _mm512_set1_ps(v); }
inline Vec Mul(Vec a, Vec b) { return _mm512_mul_ps(a, b); }
inline Vec Add(Vec a, Vec b) { return _mm512_add_ps(a, b); }
inline Vec Sub(Vec a, Vec b) { return _mm512_sub_ps(a, b); }
// A true divide, as on AVX2 and in the scalar tails: an estimate refined by
// Newton steps would be a few ulps off it, and could pass 1 where tanh
// saturates.
inline Vec Div(Vec a, Vec b) { return _mm512_div_ps(a, b); }
// p * 2^k, k = the integer that t = y + 1.5 * 2^23 holds in its low bits:
// shifted up by 23 it lands on the exponent (the rest of t shifts out).
inline Vec ScaleByRoundedExponent(Vec p, Vec t) {
  return _mm512_castsi512_ps(
      _mm512_add_epi32(_mm512_castps_si512(p), _mm512_slli_epi32(_mm512_castps_si512(t), 23)));
}
inline Vec Min(Vec a, Vec b) { return _mm512_min_ps(a, b); }
inline Vec Max(Vec a, Vec b) { return _mm512_max_ps(a, b); }
inline Vec Fma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline Vec LoadFloat(const float* p) { return _mm512_loadu_ps(p); }
inline void StoreFloat(float* p, Vec v) { _mm512_storeu_ps(p, v); }
inline void StreamFloat(float* p, Vec v) { _mm512_stream_ps(p, v); }  // p 64-byte aligned
inline Vec LoadHalf(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline void StoreHalf(uint16_t* p, Vec v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}
inline Vec LoadBf16(const uint16_t* p) {
  const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}
inline void StoreBf16(uint16_t* p, Vec v) {
  // Round to nearest even: add 0x7fff plus the lowest kept bit, then keep the top half.
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(rounded));
}

}  // namespace
}  // namespace dytserve::ops::avx512

#define DYT_ISA avx512
#include "server/ops/dyt_kernel_impl.h"

namespace dytserve::ops {
void DytRowsAvx512(const DytArgs& args, int64_t begin, int64_t end) { avx512::Rows(args, begin, end); }
}  // namespace dytserve::ops
