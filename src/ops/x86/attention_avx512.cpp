// AVX-512 attention, exact by row: a query's output is computed by the same instructions in the
// same order whether it arrives alone (decode, a forked branch) or inside a block of a long
// prefill, so forked-prefix logits equal from-scratch logits bit for bit, and results do not depend
// on the thread count. Scores: per (query, key) a 16-lane FMA chain over head_dim, then the lanes
// of 16 keys summed at once by one fixed tree (reduce16: the same pattern for every key, so a score
// does not depend on its neighbours); P V: per output element an FMA chain over the keys in order.
// Blocking is only loop order: a tile of 16 keys (K) or 32 keys (V) stays in L1 while every query
// of the block and every head of its KV group (GQA) passes over it, instead of K and V streaming
// from L2/L3 once per (query, head): 3.3x the per-pair loop on decoder prefill, 2.5x on decode at
// 4k positions (bench/bench_attention.cpp). (Two f32 GEMMs through oneDNN were only 20% faster on
// the encoder and not exact by row.) Where AttentionShape::fast allows bf16 rounding (the encoder
// under q8/q4), the fused kernel of flash_attention_avx512.cpp runs instead; it replaced two
// oneDNN bf16 GEMMs per (head, 64 queries), which it beats at every length (PERF.md, session 4).
// Float32 accumulation where the twin (ops/generic/attention.cpp) uses double: the difference is
// ~n_kv u relative, far below the f32 output rounding of the stages that follow.
#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

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
constexpr size_t kBlockQ = 16;  // queries per task (S: [group heads x 16][n_kv] f32)
// Keys per P V tile. The decoder's V rows are 2 KB apart (4 KV heads x 128 floats): a row's 8
// lines sit in 8 of L1's 64 sets and the rows alternate between two such groups, so a tile of 32
// keys puts 16 lines in each set, more than L1's 12 ways (Zen 4/5, recent Intel), and the tile
// came from L2 again for every head x query row. 16 keys fit: bench_attention Decoder* 1.1-1.4x
// (PERF.md, session 18). Only loop order: each element's FMA chain runs over the keys in order.
constexpr size_t kKeyTileV = 16;

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

// s[0..16) = scale * (q . k_j) + bias_j for the 16 key rows at k (ks floats apart), head_dim hd.
// Full 16-float chunks first, unmasked, with the 16 accumulators in registers; the tail masked.
SA_AVX512 void scores16(const float* q, const float* k, size_t ks, size_t hd, float scale,
                        const float* bias16, float* s) {
  __m512 acc[16];
#pragma GCC unroll 16
  for (int j = 0; j < 16; ++j) acc[j] = _mm512_setzero_ps();
  size_t d = 0;
  for (; d + 16 <= hd; d += 16) {
    const __m512 qv = _mm512_loadu_ps(q + d);
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j)
      acc[j] = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k + j * ks + d), acc[j]);
  }
  if (d < hd) {
    const __mmask16 m = static_cast<__mmask16>((1u << (hd - d)) - 1);
    const __m512 qv = _mm512_maskz_loadu_ps(m, q + d);
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j)
      acc[j] = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, k + j * ks + d), acc[j]);
  }
  __m512 r = _mm512_mul_ps(reduce16(acc), _mm512_set1_ps(scale));
  if (bias16) r = _mm512_add_ps(r, _mm512_loadu_ps(bias16));
  _mm512_storeu_ps(s, r);
}

// o[hd] (+)= sum_{j in [j0, j1)} p[j] v_j, one FMA chain per element in key order; o starts at 0
// when j0 == 0 (then it is not read).
SA_AVX512 void pv_range(const float* p, const float* v, size_t vs, size_t j0, size_t j1, size_t hd,
                        float* o) {
  size_t d = 0;
  for (; d + 64 <= hd; d += 64) {  // 4 accumulators of 16 lanes per pass, unmasked
    __m512 acc[4];
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c)
      acc[c] = j0 == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(o + d + 16 * c);
    for (size_t j = j0; j < j1; ++j) {
      const __m512 pj = _mm512_set1_ps(p[j]);
      const float* vj = v + j * vs + d;
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c)
        acc[c] = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vj + 16 * c), acc[c]);
    }
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) _mm512_storeu_ps(o + d + 16 * c, acc[c]);
  }
  for (; d < hd; d += 16) {  // the rest, 16 at a time (masked tail)
    const __mmask16 m = hd - d >= 16 ? 0xffff : static_cast<__mmask16>((1u << (hd - d)) - 1);
    __m512 acc = j0 == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, o + d);
    for (size_t j = j0; j < j1; ++j)
      acc = _mm512_fmadd_ps(_mm512_set1_ps(p[j]), _mm512_maskz_loadu_ps(m, v + j * vs + d), acc);
    _mm512_mask_storeu_ps(o + d, m, acc);
  }
}

// Queries [i0, i0 + nb) of every head of KV group g, exact by row (path 1). The group's heads share
// K and V (GQA), so a key tile loaded into L1 serves heads x queries score rows. sc: scratch for
// the scores [heads x nb][ld]; kpad: a zero-padded copy of a partial last key tile.
SA_AVX512 void block_exact(const AttentionShape& s, const float* q, const float* k, const float* v,
                           float scale, const float* key_bias, bool causal, size_t q_pos0, size_t g,
                           size_t i0, size_t nb, std::vector<float>& sc, std::vector<float>& kpad,
                           float* out) {
  const size_t hd = s.head_dim, group = s.n_heads / s.n_kv_heads, ldo = s.n_heads * hd;
  const auto n_keys = [&](size_t i) { return causal ? std::min(s.n_kv, q_pos0 + i + 1) : s.n_kv; };
  const size_t width = n_keys(i0 + nb - 1), ld = (width + 15) / 16 * 16;
  sc.resize(group * nb * ld);
  const float* kg = k + g * hd;
  const float* vg = v + g * hd;
  float bias_pad[16];
  for (size_t j0 = 0; j0 < width; j0 += 16) {  // K tile in L1 across heads x queries
    const float* kt = kg + j0 * s.kv_stride;
    size_t kts = s.kv_stride;
    const float* bt = key_bias ? key_bias + j0 : nullptr;
    if (j0 + 16 > s.n_kv) {  // partial last tile: zero rows past the end (scores unused)
      kpad.assign(16 * hd, 0.0f);
      for (size_t j = j0; j < s.n_kv; ++j)
        std::copy(kg + j * s.kv_stride, kg + j * s.kv_stride + hd, kpad.data() + (j - j0) * hd);
      kt = kpad.data();
      kts = hd;
      if (bt) {
        std::fill(bias_pad, bias_pad + 16, 0.0f);
        std::copy(bt, key_bias + s.n_kv, bias_pad);
        bt = bias_pad;
      }
    }
    for (size_t hh = 0; hh < group; ++hh)
      for (size_t i = 0; i < nb; ++i)
        if (j0 < n_keys(i0 + i))
          scores16(q + (i0 + i) * s.q_stride + (g * group + hh) * hd, kt, kts, hd, scale, bt,
                   sc.data() + (hh * nb + i) * ld + j0);
  }
  for (size_t hh = 0; hh < group; ++hh)
    for (size_t i = 0; i < nb; ++i) softmax16(sc.data() + (hh * nb + i) * ld, n_keys(i0 + i));
  for (size_t j0 = 0; j0 < width; j0 += kKeyTileV)  // V tile in L1 across heads x queries
    for (size_t hh = 0; hh < group; ++hh)
      for (size_t i = 0; i < nb; ++i) {
        const size_t j1 = std::min(j0 + kKeyTileV, n_keys(i0 + i));
        if (j0 < j1)
          pv_range(sc.data() + (hh * nb + i) * ld, vg, s.kv_stride, j0, j1, hd,
                   out + (i0 + i) * ldo + (g * group + hh) * hd);
      }
}

}  // namespace

void attention_avx512(ThreadPool& pool, const AttentionShape& s, const float* q, const float* k,
                      const float* v, float scale, const float* key_bias, bool causal,
                      size_t q_pos0, float* out) {
  // AttentionShape::fast without a causal mask (the encoder under q8/q4): the fused kernel
  // (flash_attention_avx512.cpp) in this CPU's faster format, unless the shape is one it does not
  // take.
  if (s.fast && !causal &&
      flash_attention_avx512(pool, s, q, k, v, scale, key_bias, preferred_flash_format(), out))
    return;
  const size_t blocks = (s.n_q + kBlockQ - 1) / kBlockQ;
  pool.parallel_for(blocks * s.n_kv_heads, [&](size_t b, size_t e) {
    std::vector<float> sc, kpad;  // scores -> probabilities; padded last key tile
    for (size_t t = b; t < e; ++t) {
      // Blocks alternate from the front and the back (0, B-1, 1, B-2, ...): causal blocks grow
      // with their position, so contiguous ranges of t get balanced work.
      const size_t u = t / s.n_kv_heads, blk = u % 2 == 0 ? u / 2 : blocks - 1 - u / 2;
      const size_t i0 = blk * kBlockQ;
      block_exact(s, q, k, v, scale, key_bias, causal, q_pos0, t % s.n_kv_heads, i0,
                  std::min(kBlockQ, s.n_q - i0), sc, kpad, out);
    }
  });
}

}  // namespace stepaudio::ops::x86
#endif
