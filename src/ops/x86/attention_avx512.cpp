// AVX-512 attention, two paths.
// 1. Exact-by-row (always for causal attention, i.e. the decoder): a query's output is computed by
//    the same instructions in the same order whether it arrives alone (decode, a forked branch) or
//    inside a block of a long prefill, so forked-prefix logits equal from-scratch logits bit for
//    bit. Scores: per (query, key) a 16-lane FMA chain over head_dim, then the lanes of 16 keys
//    summed at once by one fixed tree (reduce16: the same pattern for every key, so a score does
//    not depend on its neighbours); P V: per output element an FMA chain over the keys in order.
//    Blocking is only loop order: a tile of 16 keys (K) or 32 keys (V) stays in L1 while every
//    query of the block passes over it, instead of K and V streaming from L2/L3 once per query.
// 2. Without the causal mask and with many queries (the encoder's up to 1500 frames) when oneDNN is
//    built in: one (head, block of queries) per task as two f32 GEMMs S = Q K^T and O = P V around
//    the same softmax (the encoder has no prefix to fork, so row-exactness is not needed).
// Both accumulate in float32 where the twin (ops/generic/attention.cpp) uses double: the difference
// is ~n_kv u relative, far below the f32 output rounding of the stages that follow.
#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "ops/dnnl_matmul.h"
#include "ops/x86/avx512_target.h"
#include "ops/x86/kernels.h"
#include "ops/x86/math_avx512.h"

namespace stepaudio::ops::x86 {

namespace {
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
constexpr size_t kBlockQ = 32;    // queries per task (S is [32][n_kv] f32: 1 MB at 8k keys)
constexpr size_t kKeyTileV = 32;  // keys per P V tile (32 x 128 floats = 16 KB of V in L1)

// Lane j of the result = the sum of the 16 lanes of a[j], by a tree that is the same for every j
// ((l + l+8), then +4, +2, +1 in effect): a score never depends on the other keys of its group.
SA_AVX512 inline __m512 reduce16(const __m512* a) {
  __m512 b[8], c[4], d[2];
  for (int p = 0; p < 8; ++p)  // quarters {0,1} + {2,3} of a pair: 8 lanes per vector each
    b[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], 0x44),
                         _mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], 0xEE));
  for (int p = 0; p < 4; ++p)  // -> quarter q of c[p] holds vector 4p + q, 4 lanes
    c[p] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * p], b[2 * p + 1], 0x88),
                         _mm512_shuffle_f32x4(b[2 * p], b[2 * p + 1], 0xDD));
  for (int p = 0; p < 2; ++p)
    d[p] = _mm512_add_ps(_mm512_shuffle_ps(c[2 * p], c[2 * p + 1], 0x44),
                         _mm512_shuffle_ps(c[2 * p], c[2 * p + 1], 0xEE));
  const __m512 e =
      _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], 0x88), _mm512_shuffle_ps(d[0], d[1], 0xDD));
  // e lane 4q + r holds vector 4r + q: transpose the 4 x 4 index.
  const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(idx, e);
}

// s[0..16) = scale * (q . k_j) + bias_j for keys j0..j0+15 (rows past n_kv repeat the last key:
// valid memory, results unused). q, k rows of head_dim hd.
SA_AVX512 void scores16(const float* q, const float* k, size_t kv_stride, size_t j0, size_t n_kv,
                        size_t hd, float scale, const float* key_bias, float* s) {
  __m512 acc[16];
  const float* rows[16];
  for (int j = 0; j < 16; ++j) {
    acc[j] = _mm512_setzero_ps();
    rows[j] = k + std::min(j0 + j, n_kv - 1) * kv_stride;
  }
  for (size_t d = 0; d < hd; d += 16) {
    const __mmask16 m = hd - d >= 16 ? 0xffff : static_cast<__mmask16>((1u << (hd - d)) - 1);
    const __m512 qv = _mm512_maskz_loadu_ps(m, q + d);
    for (int j = 0; j < 16; ++j)
      acc[j] = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, rows[j] + d), acc[j]);
  }
  __m512 r = _mm512_mul_ps(reduce16(acc), _mm512_set1_ps(scale));
  if (key_bias) {
    const size_t n = std::min<size_t>(16, n_kv - j0);
    r = _mm512_add_ps(r,
                      _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), key_bias + j0));
  }
  _mm512_storeu_ps(s, r);
}

// o[hd] (+)= sum_{j in [j0, j1)} p[j] v_j, one FMA chain per element in key order; o starts at 0
// when j0 == 0 (then it is not read).
SA_AVX512 void pv_range(const float* p, const float* v, size_t kv_stride, size_t j0, size_t j1,
                        size_t hd, float* o) {
  for (size_t d = 0; d < hd; d += 64) {  // 4 accumulators of 16 lanes per pass
    __m512 acc[4];
    __mmask16 m[4];
    for (int c = 0; c < 4; ++c) {
      const size_t dd = d + 16 * c;
      m[c] = dd >= hd ? 0 : hd - dd >= 16 ? 0xffff : static_cast<__mmask16>((1u << (hd - dd)) - 1);
      acc[c] = j0 == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m[c], o + dd);
    }
    for (size_t j = j0; j < j1; ++j) {
      const __m512 pj = _mm512_set1_ps(p[j]);
      const float* vj = v + j * kv_stride + d;
      for (int c = 0; c < 4; ++c)
        acc[c] = _mm512_fmadd_ps(pj, _mm512_maskz_loadu_ps(m[c], vj + 16 * c), acc[c]);
    }
    for (int c = 0; c < 4; ++c) _mm512_mask_storeu_ps(o + d + 16 * c, m[c], acc[c]);
  }
}

// Queries [i0, i0 + nb) of head h, exact by row (path 1). sc: scratch for the [nb][width] scores.
SA_AVX512 void block_exact(const AttentionShape& s, const float* q, const float* k, const float* v,
                           float scale, const float* key_bias, bool causal, size_t q_pos0, size_t h,
                           size_t i0, size_t nb, std::vector<float>& sc, float* out) {
  const size_t hd = s.head_dim, g = h / (s.n_heads / s.n_kv_heads), ldo = s.n_heads * hd;
  const auto n_keys = [&](size_t i) { return causal ? std::min(s.n_kv, q_pos0 + i + 1) : s.n_kv; };
  const size_t width = n_keys(i0 + nb - 1), ld = (width + 15) / 16 * 16;
  sc.resize(nb * ld);
  const float* kg = k + g * hd;
  const float* vg = v + g * hd;
  for (size_t j0 = 0; j0 < width; j0 += 16)  // K tile in L1 across the block's queries
    for (size_t i = 0; i < nb; ++i)
      if (j0 < n_keys(i0 + i))
        scores16(q + (i0 + i) * s.q_stride + h * hd, kg, s.kv_stride, j0, s.n_kv, hd, scale,
                 key_bias, sc.data() + i * ld + j0);
  for (size_t i = 0; i < nb; ++i) softmax16(sc.data() + i * ld, n_keys(i0 + i));
  for (size_t j0 = 0; j0 < width; j0 += kKeyTileV)  // V tile in L1 across the block's queries
    for (size_t i = 0; i < nb; ++i) {
      const size_t j1 = std::min(j0 + kKeyTileV, n_keys(i0 + i));
      if (j0 < j1)
        pv_range(sc.data() + i * ld, vg, s.kv_stride, j0, j1, hd, out + (i0 + i) * ldo + h * hd);
    }
}

// One (head, query block) with two oneDNN GEMMs (path 2); false if oneDNN refused.
bool block_gemm(const AttentionShape& s, const float* q, const float* k, const float* v,
                float scale, const float* key_bias, size_t h, size_t i0, size_t nb,
                std::vector<float>& sc, float* out) {
  const size_t hd = s.head_dim, g = h / (s.n_heads / s.n_kv_heads), n = s.n_kv;
  sc.resize(nb * n);
  // S[nb][n] = Q_h[i0..][hd] K_g[n][hd]^T (K read transposed through its strides).
  if (!dnnl_gemm::matmul(false, nb, n, hd, {q + i0 * s.q_stride + h * hd, s.q_stride, 1},
                         {k + g * hd, 1, s.kv_stride}, sc.data(), n))
    return false;
  for (size_t r = 0; r < nb; ++r) {
    float* row = sc.data() + r * n;
    for (size_t j = 0; j < n; ++j) row[j] = row[j] * scale + (key_bias ? key_bias[j] : 0.0f);
    softmax16(row, n);
  }
  // O[nb][hd] = P[nb][n] V_g[n][hd], written into out's head-h columns.
  const size_t ldo = s.n_heads * hd;
  return dnnl_gemm::matmul(false, nb, hd, n, {sc.data(), n, 1}, {v + g * hd, s.kv_stride, 1},
                           out + i0 * ldo + h * hd, ldo);
}
}  // namespace

void attention_avx512(ThreadPool& pool, const AttentionShape& s, const float* q, const float* k,
                      const float* v, float scale, const float* key_bias, bool causal,
                      size_t q_pos0, float* out) {
  const bool gemm = !causal && s.n_q >= kBlockQ / 2 && dnnl_gemm::enabled();
  const size_t blocks = (s.n_q + kBlockQ - 1) / kBlockQ;
  pool.parallel_for(blocks * s.n_heads, [&](size_t b, size_t e) {
    std::vector<float> sc;  // [nb][width] scores -> probabilities
    for (size_t t = b; t < e; ++t) {
      // Blocks alternate from the front and the back (0, B-1, 1, B-2, ...): causal blocks grow
      // with their position, so contiguous ranges of t get balanced work.
      const size_t u = t / s.n_heads, blk = u % 2 == 0 ? u / 2 : blocks - 1 - u / 2;
      const size_t h = t % s.n_heads, i0 = blk * kBlockQ;
      const size_t nb = std::min(kBlockQ, s.n_q - i0);
      if (!(gemm && block_gemm(s, q, k, v, scale, key_bias, h, i0, nb, sc, out)))
        block_exact(s, q, k, v, scale, key_bias, causal, q_pos0, h, i0, nb, sc, out);
    }
  });
}

}  // namespace stepaudio::ops::x86
#endif
