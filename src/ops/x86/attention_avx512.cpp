// AVX-512 attention. Causal (the decoder) or few queries: one (query, head) pair per task as the
// scalar twin (ops/generic/attention.cpp), with 16-wide dot products for the scores, a vectorised
// exp for the softmax and 16-wide multiply-adds for P V. Many queries without the causal mask (the
// encoder's up to 1500 frames) with oneDNN built in: blocked, one (head, block of kBlockQ queries)
// per task, as two f32 GEMMs S = Q K^T and O = P V around the same softmax; the per-pair path
// streamed K and V once per query (47% of a 30 s encoder pass), the GEMMs reuse them from cache
// across the block. Both accumulate in float32 where the twin uses double: the difference is ~n_kv
// u relative, far below the f32 output rounding of the stages that follow.
#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "ops/dnnl_matmul.h"
#include "ops/x86/avx512_target.h"
#include "ops/x86/kernels.h"

namespace stepaudio::ops::x86 {

namespace {
// exp(x) for x <= 0 (max-subtracted scores): 2^n * 2^f, n = round(x log2 e), |f| <= 1/2, 2^f by a
// degree-6 polynomial (relative error < 2e-7, i.e. ~2 ulp); scalef handles underflow to 0.
SA_AVX512 inline __m512 exp512(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
  const __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
  const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(t, n);  // [-0.5, 0.5]
  __m512 p = _mm512_set1_ps(1.5353362e-4f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3398874e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6180243e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5503406e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022652e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

SA_AVX512 void softmax16(float* x, size_t n) {
  __m512 mx = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  size_t i = 0;
  for (; i + 16 <= n; i += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(x + i));
  float m = _mm512_reduce_max_ps(mx);
  for (size_t j = i; j < n; ++j) m = std::max(m, x[j]);
  if (!std::isfinite(m)) {
    for (size_t j = 0; j < n; ++j) x[j] = 1.0f / static_cast<float>(n);
    return;
  }
  const __m512 mv = _mm512_set1_ps(m);
  __m512 sum = _mm512_setzero_ps();
  for (i = 0; i + 16 <= n; i += 16) {
    const __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), mv));
    _mm512_storeu_ps(x + i, e);
    sum = _mm512_add_ps(sum, e);
  }
  if (i < n) {
    const __mmask16 k = static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), mv));
    _mm512_mask_storeu_ps(x + i, k, e);
    sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(k, e));
  }
  const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
  for (i = 0; i + 16 <= n; i += 16)
    _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), inv));
  for (; i < n; ++i) x[i] *= _mm512_cvtss_f32(inv);
}
}  // namespace

namespace {
constexpr size_t kBlockQ = 64;  // queries per blocked task: S is [64][n_kv] f32 (1500 keys: 384 KB)

// Scores -> probabilities for one query row of S: scale, key bias, causal cut at n_keys, softmax;
// entries past n_keys become 0 so the P V GEMM can run over the block's widest row.
SA_AVX512 void probabilities(float* row, size_t n_keys, size_t width, float scale,
                             const float* key_bias) {
  for (size_t j = 0; j < n_keys; ++j) row[j] = row[j] * scale + (key_bias ? key_bias[j] : 0.0f);
  softmax16(row, n_keys);
  std::fill(row + n_keys, row + width, 0.0f);
}

// One (head, query block) with two oneDNN GEMMs; false if oneDNN refused (nothing written).
bool block_gemm(const AttentionShape& s, const float* q, const float* k, const float* v,
                float scale, const float* key_bias, bool causal, size_t q_pos0, size_t h, size_t i0,
                size_t nb, std::vector<float>& sc, float* out) {
  const size_t hd = s.head_dim, g = h / (s.n_heads / s.n_kv_heads);
  const size_t width = causal ? std::min(s.n_kv, q_pos0 + i0 + nb) : s.n_kv;  // widest row
  sc.resize(nb * width);
  // S[nb][width] = Q_h[i0..][hd] K_g[..width][hd]^T (K read transposed through its strides).
  if (!dnnl_gemm::matmul(false, nb, width, hd, {q + i0 * s.q_stride + h * hd, s.q_stride, 1},
                         {k + g * hd, 1, s.kv_stride}, sc.data(), width))
    return false;
  for (size_t r = 0; r < nb; ++r) {
    const size_t n_keys = causal ? std::min(s.n_kv, q_pos0 + i0 + r + 1) : s.n_kv;
    probabilities(sc.data() + r * width, n_keys, width, scale, key_bias);
  }
  // O[nb][hd] = P[nb][width] V_g[width][hd], written into out's head-h columns.
  const size_t ldo = s.n_heads * hd;
  return dnnl_gemm::matmul(false, nb, hd, width, {sc.data(), width, 1},
                           {v + g * hd, s.kv_stride, 1}, out + i0 * ldo + h * hd, ldo);
}

// The per-(query, head) path for queries [i, i + 1) of head h.
SA_AVX512 void one_query(const AttentionShape& s, const float* q, const float* k, const float* v,
                         float scale, const float* key_bias, bool causal, size_t q_pos0, size_t i,
                         size_t h, std::vector<float>& p, float* out) {
  const size_t hd = s.head_dim, g = h / (s.n_heads / s.n_kv_heads);
  p.resize(s.n_kv);
  const float* qi = q + i * s.q_stride + h * hd;
  const size_t n_keys = causal ? std::min(s.n_kv, q_pos0 + i + 1) : s.n_kv;
  for (size_t j = 0; j < n_keys; ++j)
    p[j] = dot_f32_avx512(qi, k + j * s.kv_stride + g * hd, hd) * scale +
           (key_bias ? key_bias[j] : 0.0f);
  softmax16(p.data(), n_keys);
  float* o = out + i * (s.n_heads * hd) + h * hd;
  std::fill(o, o + hd, 0.0f);
  for (size_t j = 0; j < n_keys; ++j) axpy_f32_avx512(p[j], v + j * s.kv_stride + g * hd, o, hd);
}
}  // namespace

void attention_avx512(ThreadPool& pool, const AttentionShape& s, const float* q, const float* k,
                      const float* v, float scale, const float* key_bias, bool causal,
                      size_t q_pos0, float* out) {
  // Blocked only without the causal mask (the encoder): a decoder query must get the same bits
  // whether it is prefilled alone, in a fork or in one long prompt (forked-prefix logits equal
  // from-scratch logits), and the per-pair path's result does not depend on n_q.
  if (!causal && s.n_q >= kBlockQ / 4 && dnnl_gemm::enabled()) {
    const size_t blocks = (s.n_q + kBlockQ - 1) / kBlockQ;
    pool.parallel_for(blocks * s.n_heads, [&](size_t b, size_t e) {
      std::vector<float> sc;  // [nb][width] scores -> probabilities
      for (size_t t = b; t < e; ++t) {
        const size_t h = t % s.n_heads, i0 = t / s.n_heads * kBlockQ;
        const size_t nb = std::min(kBlockQ, s.n_q - i0);
        if (!block_gemm(s, q, k, v, scale, key_bias, causal, q_pos0, h, i0, nb, sc, out))
          for (size_t i = i0; i < i0 + nb; ++i)
            one_query(s, q, k, v, scale, key_bias, causal, q_pos0, i, h, sc, out);
      }
    });
    return;
  }
  pool.parallel_for(s.n_q * s.n_heads, [&](size_t b, size_t e) {
    std::vector<float> p;  // [n_kv] scores -> probabilities
    for (size_t t = b; t < e; ++t)
      one_query(s, q, k, v, scale, key_bias, causal, q_pos0, t / s.n_heads, t % s.n_heads, p, out);
  });
}

}  // namespace stepaudio::ops::x86
#endif
