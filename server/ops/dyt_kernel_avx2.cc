// AVX2 + FMA + F16C build of the DyT kernel (compiled with those -m flags).
#include <immintrin.h>

#include <cstdint>

namespace dytserve::ops::avx2 {
namespace {

using Vec = __m256;
constexpr int64_t kLanes = 8;

inline Vec Set1(float v) { return _mm256_set1_ps(v); }
inline Vec Mul(Vec a, Vec b) { return _mm256_mul_ps(a, b); }
inline Vec Add(Vec a, Vec b) { return _mm256_add_ps(a, b); }
inline Vec Sub(Vec a, Vec b) { return _mm256_sub_ps(a, b); }
// A true divide: on Zen 3 it beat a reciprocal estimate plus a Newton step
// (which AVX2's 12-bit estimate needs for float accuracy) by 10-15%.
inline Vec Div(Vec a, Vec b) { return _mm256_div_ps(a, b); }
// p * 2^k, k = the integer that t = y + 1.5 * 2^23 holds in its low bits:
// shifted up by 23 it lands on the exponent (the rest of t shifts out).
inline Vec ScaleByRoundedExponent(Vec p, Vec t) {
  return _mm256_castsi256_ps(
      _mm256_add_epi32(_mm256_castps_si256(p), _mm256_slli_epi32(_mm256_castps_si256(t), 23)));
}
inline Vec Min(Vec a, Vec b) { return _mm256_min_ps(a, b); }
inline Vec Max(Vec a, Vec b) { return _mm256_max_ps(a, b); }
inline Vec Fma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline Vec LoadFloat(const float* p) { return _mm256_loadu_ps(p); }
inline void StoreFloat(float* p, Vec v) { _mm256_storeu_ps(p, v); }
inline void StreamFloat(float* p, Vec v) { _mm256_stream_ps(p, v); }  // p 32-byte aligned
inline Vec LoadHalf(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline void StoreHalf(uint16_t* p, Vec v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}
inline Vec LoadBf16(const uint16_t* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}
inline void StoreBf16(uint16_t* p, Vec v) {
  // Round to nearest even: add 0x7fff plus the lowest kept bit, then keep the top half.
  const __m256i bits = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
  // packus works within 128-bit lanes; gather the two useful quarters.
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(rounded, rounded), 0x08);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(packed));
}

}  // namespace
}  // namespace dytserve::ops::avx2

#define DYT_ISA avx2
#include "server/ops/dyt_kernel_impl.h"

namespace dytserve::ops {
void DytRowsAvx2(const DytArgs& args, int64_t begin, int64_t end) { avx2::Rows(args, begin, end); }
}  // namespace dytserve::ops
