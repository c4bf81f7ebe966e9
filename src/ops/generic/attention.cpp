// Scalar attention and conv1d. Attention is split over (query, head) pairs; each output row is one
// softmax over keys in a fixed order, so the thread count does not change results.
#include <cmath>
#include <limits>
#include <vector>

#include "ops/ops.h"

namespace stepaudio::ops {

void ref::attention(ThreadPool& pool, const AttentionShape& s, const float* q, const float* k,
                    const float* v, float scale, const float* key_bias, bool causal, size_t q_pos0,
                    float* out) {
  const size_t group = s.n_heads / s.n_kv_heads, hd = s.head_dim;
  pool.parallel_for(s.n_q * s.n_heads, [&](size_t b, size_t e) {
    std::vector<float> p(s.n_kv);  // [n_kv] scores -> probabilities
    std::vector<double> acc(hd);
    for (size_t t = b; t < e; ++t) {
      const size_t i = t / s.n_heads, h = t % s.n_heads, g = h / group;
      const float* qi = q + i * s.q_stride + h * hd;
      const size_t n_keys = causal ? std::min(s.n_kv, q_pos0 + i + 1) : s.n_kv;
      for (size_t j = 0; j < n_keys; ++j) {
        const float* kj = k + j * s.kv_stride + g * hd;
        float d = 0;
        for (size_t c = 0; c < hd; ++c) d += qi[c] * kj[c];
        p[j] = d * scale + (key_bias ? key_bias[j] : 0.0f);
      }
      softmax(p.data(), n_keys);
      std::fill(acc.begin(), acc.end(), 0.0);
      for (size_t j = 0; j < n_keys; ++j) {
        const float* vj = v + j * s.kv_stride + g * hd;
        for (size_t c = 0; c < hd; ++c) acc[c] += static_cast<double>(p[j]) * vj[c];
      }
      float* o = out + i * (s.n_heads * hd) + h * hd;
      for (size_t c = 0; c < hd; ++c) o[c] = static_cast<float>(acc[c]);
    }
  });
}

size_t conv1d_out_len(size_t t_in, size_t ksize, size_t stride, size_t pad) {
  if (t_in + 2 * pad < ksize) return 0;
  return (t_in + 2 * pad - ksize) / stride + 1;
}

// im2col (row t = the ksize x C_in window around t, laid out [c][k] like torch's weight) + matmul.
void conv1d(ThreadPool& pool, const float* x, size_t t_in, size_t c_in, const WeightView& W,
            const float* bias, size_t ksize, size_t stride, size_t pad, float* y) {
  const size_t t_out = conv1d_out_len(t_in, ksize, stride, pad);
  std::vector<float> cols(t_out * c_in * ksize);  // [T_out][C_in * ksize]
  pool.parallel_for(t_out, [&](size_t b, size_t e) {
    for (size_t t = b; t < e; ++t) {
      float* r = cols.data() + t * c_in * ksize;
      for (size_t kk = 0; kk < ksize; ++kk) {
        const long src = static_cast<long>(t * stride + kk) - static_cast<long>(pad);
        const bool in = src >= 0 && src < static_cast<long>(t_in);
        for (size_t c = 0; c < c_in; ++c) r[c * ksize + kk] = in ? x[src * c_in + c] : 0.0f;
      }
    }
  });
  matmul(pool, cols.data(), t_out, W, bias, y);
}

}  // namespace stepaudio::ops
