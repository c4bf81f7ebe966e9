// Scalar norms, activations and softmax (float32, double only where torch also promotes: none).
#include <cmath>
#include <limits>
#include <vector>

#include "ops/ops.h"

namespace stepaudio::ops {

namespace ref {
void layer_norm(const float* x, size_t M, size_t D, const float* w, const float* b, float eps,
                float* y) {
  for (size_t m = 0; m < M; ++m) {
    const float* r = x + m * D;
    float* o = y + m * D;
    // Two-pass mean/variance in double: the reference error stays far below the f32 output
    // rounding.
    double mean = 0;
    for (size_t i = 0; i < D; ++i) mean += r[i];
    mean /= static_cast<double>(D);
    double var = 0;
    for (size_t i = 0; i < D; ++i) var += (r[i] - mean) * (r[i] - mean);
    var /= static_cast<double>(D);
    const float inv = static_cast<float>(1.0 / std::sqrt(var + eps));
    const float mu = static_cast<float>(mean);
    for (size_t i = 0; i < D; ++i) o[i] = (r[i] - mu) * inv * w[i] + (b ? b[i] : 0.0f);
  }
}

void rms_norm(const float* x, size_t M, size_t D, const float* w, float eps, float* y) {
  for (size_t m = 0; m < M; ++m) {
    const float* r = x + m * D;
    float* o = y + m * D;
    double ss = 0;
    for (size_t i = 0; i < D; ++i) ss += static_cast<double>(r[i]) * r[i];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(D) + eps));
    for (size_t i = 0; i < D; ++i) o[i] = w[i] * (r[i] * inv);
  }
}

void gelu(float* x, size_t n) {
  for (size_t i = 0; i < n; ++i)
    x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.70710678118654752f));
}

void silu(float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] = x[i] / (1.0f + std::exp(-x[i]));
}
}  // namespace ref

void relu(float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void mul(float* x, const float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] *= y[i];
}

void add(float* x, const float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] += y[i];
}

void softmax(float* x, size_t n) {
  float mx = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  if (!std::isfinite(
          mx)) {  // all -inf (cannot happen with a causal or padded mask, but stay defined)
    for (size_t i = 0; i < n; ++i) x[i] = 1.0f / static_cast<float>(n);
    return;
  }
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (size_t i = 0; i < n; ++i) x[i] *= inv;
}

void rope_table(const size_t* pos, size_t n, size_t head_dim, const float* inv_freq, float* cs) {
  const size_t half = head_dim / 2;
  for (size_t r = 0; r < n; ++r, cs += 2 * half)
    for (size_t i = 0; i < half; ++i) {
      const float ang = static_cast<float>(pos[r]) * inv_freq[i];
      cs[i] = std::cos(ang);
      cs[half + i] = std::sin(ang);
    }
}

void ref::rope_row(float* x, size_t n_heads, size_t head_dim, const float* cs) {
  const size_t half = head_dim / 2;
  const float *c = cs, *s = cs + half;
  for (size_t h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    for (size_t i = 0; i < half; ++i) {
      const float a = v[i], b = v[i + half];
      v[i] = a * c[i] - b * s[i];
      v[i + half] = b * c[i] + a * s[i];
    }
  }
}

void rope(float* x, size_t n_heads, size_t head_dim, size_t pos, const float* inv_freq) {
  std::vector<float> cs(head_dim / 2 * 2);  // [2][head_dim / 2]: cos, sin
  rope_table(&pos, 1, head_dim, inv_freq, cs.data());
  ref::rope_row(x, n_heads, head_dim, cs.data());
}

}  // namespace stepaudio::ops
