// ops::attention on aarch64 NEON: the algorithm of the scalar twin (ref::attention), one (query,
// head) pair at a time, with its two inner loops vectorised:
// - scores q.k: f32 FMA over head_dim in 2 x 4 lanes (+ a scalar tail), reduced in a fixed order;
// - P V: per output element one f32 FMA chain over the keys in order (the twin sums in double);
//   head_dim is walked in chunks of 32 floats so the 8 accumulators stay in registers.
// The softmax between them is the scalar ops::softmax. Every output row depends only on its own
// query, head and keys, so a query gets the same bits alone (decode, a forked branch) as inside a
// prefill block, and results do not depend on the thread count (work split over (query, head)).
// Error vs the twin: the scores' f32 dots (head_dim u sum|q k|) and the f32 P V sums (n_kv u
// max|v|), the bound the unit tests use for the AVX-512 kernel too.
#if defined(__aarch64__)
#include <arm_neon.h>

#include <algorithm>
#include <vector>

#include "ops/arm/kernels.h"

namespace stepaudio::ops::arm {

namespace {
float dot(const float* a, const float* b, size_t n) {
  float32x4_t s0 = vdupq_n_f32(0.0f), s1 = vdupq_n_f32(0.0f);
  size_t c = 0;
  for (; c + 8 <= n; c += 8) {
    s0 = vfmaq_f32(s0, vld1q_f32(a + c), vld1q_f32(b + c));
    s1 = vfmaq_f32(s1, vld1q_f32(a + c + 4), vld1q_f32(b + c + 4));
  }
  if (c + 4 <= n) {
    s0 = vfmaq_f32(s0, vld1q_f32(a + c), vld1q_f32(b + c));
    c += 4;
  }
  float s = vaddvq_f32(vaddq_f32(s0, s1));
  for (; c < n; ++c) s += a[c] * b[c];
  return s;
}

// o[c] = sum_j p[j] v_j[c] for c < hd, v_j = v + j * ldv; chunks of 32, then 4, then scalar.
void weighted_sum(const float* p, size_t n_keys, const float* v, size_t ldv, size_t hd, float* o) {
  size_t c = 0;
  for (; c + 32 <= hd; c += 32) {
    float32x4_t acc[8];
    for (int i = 0; i < 8; ++i) acc[i] = vdupq_n_f32(0.0f);
    for (size_t j = 0; j < n_keys; ++j) {
      const float32x4_t pj = vdupq_n_f32(p[j]);
      const float* vj = v + j * ldv + c;
      for (int i = 0; i < 8; ++i) acc[i] = vfmaq_f32(acc[i], pj, vld1q_f32(vj + 4 * i));
    }
    for (int i = 0; i < 8; ++i) vst1q_f32(o + c + 4 * i, acc[i]);
  }
  for (; c + 4 <= hd; c += 4) {
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (size_t j = 0; j < n_keys; ++j)
      acc = vfmaq_f32(acc, vdupq_n_f32(p[j]), vld1q_f32(v + j * ldv + c));
    vst1q_f32(o + c, acc);
  }
  for (; c < hd; ++c) {
    float acc = 0.0f;
    for (size_t j = 0; j < n_keys; ++j) acc += p[j] * v[j * ldv + c];
    o[c] = acc;
  }
}
}  // namespace

void attention_neon(ThreadPool& pool, const AttentionShape& s, const float* q, const float* k,
                    const float* v, float scale, const float* key_bias, bool causal, size_t q_pos0,
                    float* out) {
  const size_t group = s.n_heads / s.n_kv_heads, hd = s.head_dim;
  pool.parallel_for(s.n_q * s.n_heads, [&](size_t b, size_t e) {
    std::vector<float> p(s.n_kv);  // [n_kv] scores -> probabilities
    for (size_t t = b; t < e; ++t) {
      const size_t i = t / s.n_heads, h = t % s.n_heads, g = h / group;
      const float* qi = q + i * s.q_stride + h * hd;
      const size_t n_keys = causal ? std::min(s.n_kv, q_pos0 + i + 1) : s.n_kv;
      for (size_t j = 0; j < n_keys; ++j)
        p[j] = dot(qi, k + j * s.kv_stride + g * hd, hd) * scale + (key_bias ? key_bias[j] : 0.0f);
      softmax(p.data(), n_keys);
      weighted_sum(p.data(), n_keys, v + g * hd, s.kv_stride, hd,
                   out + i * (s.n_heads * hd) + h * hd);
    }
  });
}

}  // namespace stepaudio::ops::arm
#endif
