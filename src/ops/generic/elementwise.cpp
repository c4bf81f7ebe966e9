// Scalar norms, activations and softmax (float32, double only where torch also promotes: none).
#include <cmath>
#include <limits>

#include "ops/ops.h"

namespace stepaudio::ops {

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

namespace ref {
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

void rope(float* x, size_t n_heads, size_t head_dim, size_t pos, const float* inv_freq) {
  const size_t half = head_dim / 2;
  for (size_t i = 0; i < half; ++i) {
    const float ang = static_cast<float>(pos) * inv_freq[i];
    const float c = std::cos(ang), s = std::sin(ang);
    for (size_t h = 0; h < n_heads; ++h) {
      float* v = x + h * head_dim;
      const float a = v[i], b = v[i + half];
      v[i] = a * c - b * s;
      v[i + half] = b * c + a * s;
    }
  }
}

}  // namespace stepaudio::ops
