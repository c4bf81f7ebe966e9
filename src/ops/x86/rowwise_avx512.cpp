// AVX-512 norms, residual adds and RoPE over row ranges (ops/rowwise.cpp threads them). Why: the
// scalar twins accumulate in double one element at a time, and the encoder normalizes 2 x T x 1280
// values per layer; with the matmuls near peak, these passes were a visible share of a layer.
// Accuracy: sums still accumulate in double (8 lanes per half vector, fixed order), so mean and
// variance match the twins' to ~1e-16 relative; the output is then one float expression per
// element, within an ulp or two of the twin's.
#if defined(__x86_64__)
#include <immintrin.h>

#include <cmath>

#include "ops/x86/avx512_target.h"
#include "ops/x86/kernels.h"

namespace stepaudio::ops::x86 {

namespace {
SA_AVX512 inline __mmask16 tail_mask(size_t left) {
  return left >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << left) - 1);
}

// Sum and sum of squares (about `mu`) of x[D] in double: two 8-lane accumulators per quantity.
struct Moments {
  double sum = 0, sq = 0;
};
template <bool kSum>
SA_AVX512 Moments moments(const float* x, size_t D, double mu) {
  __m512d s0 = _mm512_setzero_pd(), s1 = s0, q0 = s0, q1 = s0;
  const __m512d m = _mm512_set1_pd(mu);
  for (size_t i = 0; i < D; i += 16) {
    const __mmask16 k = tail_mask(D - i);
    const __m512 v = _mm512_maskz_loadu_ps(k, x + i);
    const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    const __m512d hi =
        _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    if constexpr (kSum) {
      s0 = _mm512_add_pd(s0, lo);
      s1 = _mm512_add_pd(s1, hi);
    }
    // Lanes past D are 0 in the sums and masked out of the squares.
    const __m512d dl = _mm512_maskz_sub_pd(static_cast<__mmask8>(k), lo, m);
    const __m512d dh = _mm512_maskz_sub_pd(static_cast<__mmask8>(k >> 8), hi, m);
    q0 = _mm512_fmadd_pd(dl, dl, q0);
    q1 = _mm512_fmadd_pd(dh, dh, q1);
  }
  Moments r;
  r.sum = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
  r.sq = _mm512_reduce_add_pd(_mm512_add_pd(q0, q1));
  return r;
}

// x += r over D floats (r may be null).
SA_AVX512 inline void add_row(float* x, const float* r, size_t D) {
  if (!r) return;
  for (size_t i = 0; i < D; i += 16) {
    const __mmask16 k = tail_mask(D - i);
    _mm512_mask_storeu_ps(
        x + i, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, x + i), _mm512_maskz_loadu_ps(k, r + i)));
  }
}
}  // namespace

SA_AVX512 void add_layer_norm_avx512(float* x, const float* r, size_t M, size_t D, const float* w,
                                     const float* b, float eps, float* y) {
  for (size_t m = 0; m < M; ++m) {
    float* row = x + m * D;
    add_row(row, r ? r + m * D : nullptr, D);
    // Two passes as the twin: the mean, then the squares about it (no cancellation).
    const double mean = moments<true>(row, D, 0.0).sum / static_cast<double>(D);
    const double var = moments<false>(row, D, mean).sq / static_cast<double>(D);
    const __m512 inv = _mm512_set1_ps(static_cast<float>(1.0 / std::sqrt(var + eps)));
    const __m512 mu = _mm512_set1_ps(static_cast<float>(mean));
    float* o = y + m * D;
    for (size_t i = 0; i < D; i += 16) {
      const __mmask16 k = tail_mask(D - i);
      const __m512 t = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, row + i), mu), inv);
      const __m512 bv = b ? _mm512_maskz_loadu_ps(k, b + i) : _mm512_setzero_ps();
      _mm512_mask_storeu_ps(o + i, k, _mm512_fmadd_ps(t, _mm512_maskz_loadu_ps(k, w + i), bv));
    }
  }
}

SA_AVX512 void add_rms_norm_avx512(float* x, const float* r, size_t M, size_t D, const float* w,
                                   float eps, float* y) {
  for (size_t m = 0; m < M; ++m) {
    float* row = x + m * D;
    add_row(row, r ? r + m * D : nullptr, D);
    const double ss = moments<false>(row, D, 0.0).sq;
    const __m512 inv =
        _mm512_set1_ps(static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(D) + eps)));
    float* o = y + m * D;
    for (size_t i = 0; i < D; i += 16) {
      const __mmask16 k = tail_mask(D - i);
      const __m512 t = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, row + i), inv);
      _mm512_mask_storeu_ps(o + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, w + i), t));
    }
  }
}

SA_AVX512 void add_avx512(float* x, const float* y, size_t n) {
  add_row(x, y, n);
}

SA_AVX512 void rope_rows_avx512(float* x, size_t n, size_t stride, size_t n_heads, size_t head_dim,
                                const float* cs) {
  const size_t half = head_dim / 2;
  for (size_t r = 0; r < n; ++r) {
    const float* c = cs + r * 2 * half;
    const float* s = c + half;
    for (size_t h = 0; h < n_heads; ++h) {
      float* v = x + r * stride + h * head_dim;
      for (size_t i = 0; i < half; i += 16) {
        const __mmask16 k = tail_mask(half - i);
        const __m512 a = _mm512_maskz_loadu_ps(k, v + i),
                     bb = _mm512_maskz_loadu_ps(k, v + half + i);
        const __m512 cv = _mm512_maskz_loadu_ps(k, c + i), sv = _mm512_maskz_loadu_ps(k, s + i);
        _mm512_mask_storeu_ps(v + i, k, _mm512_sub_ps(_mm512_mul_ps(a, cv), _mm512_mul_ps(bb, sv)));
        _mm512_mask_storeu_ps(v + half + i, k,
                              _mm512_add_ps(_mm512_mul_ps(bb, cv), _mm512_mul_ps(a, sv)));
      }
    }
  }
}

}  // namespace stepaudio::ops::x86
#endif
