// AVX2 + FMA activations (Isa::avx2: Zen 2/3, Haswell..Alder Lake): the same formulas as the
// AVX-512 ones (elementwise_avx512.cpp, math_avx512.h) on 8 lanes. Why: the scalar twins call libm
// per element, and on these CPUs the encoder's GELU over 5120 x T values per layer then costs more
// than a layer's GEMMs. AVX2 has no scalef, so 2^n is built in the exponent bits, split in two
// factors so that n down to -126 - 24 stays exact (subnormal results) without an integer overflow.
// Accuracy: as the AVX-512 versions (Kernels.ActivationsMatchDoubleFormulas runs on both).
#if defined(__x86_64__)
#include <immintrin.h>

#include "ops/x86/kernels.h"
#include "ops/x86/math_coeffs.h"

#define SA_AVX2 __attribute__((target("avx2,fma")))

namespace stepaudio::ops::x86 {

namespace {
// 2^e for integral e in [-126, 127], from its exponent bits.
SA_AVX2 inline __m256 pow2_bits(__m256i e) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23));
}

// p * 2^n for integral n in [-150, 128] (n as float): p * 2^(n/2 rounded down) * 2^(the rest),
// each factor a normal number.
SA_AVX2 inline __m256 scale_pow2(__m256 p, __m256 n) {
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i a = _mm256_srai_epi32(ni, 1), b = _mm256_sub_epi32(ni, a);
  return _mm256_mul_ps(_mm256_mul_ps(p, pow2_bits(a)), pow2_bits(b));
}

// exp(x): Cody-Waite reduction and the degree-7 Taylor polynomial of exp512.
SA_AVX2 inline __m256 exp256(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-104.0f));
  x = _mm256_min_ps(x, _mm256_set1_ps(89.0f));  // exp(89) overflows to inf as exp512's scalef
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(coeff::kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(coeff::kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(coeff::kLn2Lo), r);
  __m256 p = _mm256_set1_ps(coeff::kExp[7]);
  for (int i = 6; i >= 0; --i) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(coeff::kExp[i]));
  return scale_pow2(p, n);
}

// erfc(z) for z >= 0 (Numerical Recipes' erfcc, as erfc512).
SA_AVX2 inline __m256 erfc256(__m256 z) {
  const __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f),
                                 _mm256_fmadd_ps(z, _mm256_set1_ps(0.5f), _mm256_set1_ps(1.0f)));
  __m256 p = _mm256_set1_ps(coeff::kErfc[9]);
  for (int i = 8; i >= 0; --i) p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(coeff::kErfc[i]));
  return _mm256_mul_ps(t, exp256(_mm256_fnmadd_ps(z, z, p)));
}

SA_AVX2 inline __m256 gelu8(__m256 x) {
  const __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
  const __m256 e = erfc256(_mm256_mul_ps(ax, _mm256_set1_ps(0.70710678118654752f)));
  // 1 + erf(x / sqrt 2): 2 - erfc for x >= 0, erfc(|x| / sqrt 2) below.
  const __m256 pos = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ);
  const __m256 c = _mm256_blendv_ps(e, _mm256_sub_ps(_mm256_set1_ps(2.0f), e), pos);
  return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), c);
}

SA_AVX2 inline __m256 silu8(__m256 x) {
  const __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), x));
  return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

// Loads/stores n - i < 8 tail lanes through a mask.
SA_AVX2 inline __m256i tail_mask(size_t left) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(left)), idx);
}

template <__m256 (*F)(__m256)>
SA_AVX2 void apply(float* x, const float* u, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = F(_mm256_loadu_ps(x + i));
    if (u) v = _mm256_mul_ps(v, _mm256_loadu_ps(u + i));
    _mm256_storeu_ps(x + i, v);
  }
  if (i < n) {
    const __m256i m = tail_mask(n - i);
    __m256 v = F(_mm256_maskload_ps(x + i, m));
    if (u) v = _mm256_mul_ps(v, _mm256_maskload_ps(u + i, m));
    _mm256_maskstore_ps(x + i, m, v);
  }
}
}  // namespace

void gelu_avx2(float* x, size_t n) {
  apply<gelu8>(x, nullptr, n);
}
void silu_avx2(float* x, size_t n) {
  apply<silu8>(x, nullptr, n);
}
void silu_mul_avx2(float* g, const float* u, size_t n) {
  apply<silu8>(g, u, n);
}

}  // namespace stepaudio::ops::x86
#endif
