// Vectorised transcendental functions for the AVX-512 kernels (header-only: inlined where used).
#pragma once

#if defined(__x86_64__)
#include <immintrin.h>

#include "ops/x86/avx512_target.h"
#include "ops/x86/math_coeffs.h"

namespace stepaudio::ops::x86 {

// exp(x): n = round(x log2 e), r = x - n ln 2 in two parts (Cody-Waite, so r is exact to ~1 ulp
// even for |x| ~ 80), e^r by its degree-7 Taylor polynomial (|r| <= 0.35: truncation < 6e-9
// relative), times 2^n by scalef (underflow to 0 below -104, overflow to inf above ~88.7).
SA_AVX512 inline __m512 exp512(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(coeff::kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(coeff::kLn2Hi), x);  // ln 2, high bits
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(coeff::kLn2Lo), r);         // ln 2, the rest
  __m512 p = _mm512_set1_ps(coeff::kExp[7]);
  for (int i = 6; i >= 0; --i) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(coeff::kExp[i]));
  return _mm512_scalef_ps(p, n);
}

// erfc(z) for z >= 0: Numerical Recipes' erfcc, t exp(-z^2 + P(t)) with t = 1 / (1 + z / 2),
// fractional error < 1.2e-7 over the whole range (relative, so the tail stays accurate).
SA_AVX512 inline __m512 erfc512(__m512 z) {
  const __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f),
                                 _mm512_fmadd_ps(z, _mm512_set1_ps(0.5f), _mm512_set1_ps(1.0f)));
  __m512 p = _mm512_set1_ps(coeff::kErfc[9]);
  for (int i = 8; i >= 0; --i) p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(coeff::kErfc[i]));
  return _mm512_mul_ps(t, exp512(_mm512_fnmadd_ps(z, z, p)));
}

}  // namespace stepaudio::ops::x86
#endif
