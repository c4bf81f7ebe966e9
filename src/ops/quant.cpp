// Scalar block quantization (ops/quant.h). Quantization runs at load time (or in `stepaudio
// quantize`), so it favours clarity; the dot products are the oracle of the SIMD GEMV.
#include "ops/quant.h"

#include <algorithm>
#include <cmath>

#include "ops/dtype.h"

namespace stepaudio::ops {

void quantize_row_q8_0(const float* x, BlockQ8_0* y, size_t n) {
  for (size_t b = 0; b < n / kQBlock; ++b, x += kQBlock) {
    float amax = 0;
    for (size_t i = 0; i < kQBlock; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
    y[b].d = f32_to_f16(d);
    for (size_t i = 0; i < kQBlock; ++i)
      y[b].qs[i] = static_cast<int8_t>(std::clamp(std::nearbyint(x[i] * id), -127.0f, 127.0f));
  }
}

void quantize_row_q4_0(const float* x, BlockQ4_0* y, size_t n) {
  for (size_t b = 0; b < n / kQBlock; ++b, x += kQBlock) {
    float amax = 0, vmax = 0;  // vmax: the signed value of largest magnitude
    for (size_t i = 0; i < kQBlock; ++i)
      if (std::fabs(x[i]) > amax) {
        amax = std::fabs(x[i]);
        vmax = x[i];
      }
    const float d = vmax / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
    y[b].d = f32_to_f16(d);
    for (size_t j = 0; j < kQBlock / 2; ++j) {
      auto code = [&](float v) {
        return static_cast<uint8_t>(std::clamp(std::nearbyint(v * id) + 8.0f, 0.0f, 15.0f));
      };
      y[b].qs[j] = static_cast<uint8_t>(code(x[j]) | code(x[j + kQBlock / 2]) << 4);
    }
  }
}

void dequantize_row_q8_0(const BlockQ8_0* x, float* y, size_t n) {
  for (size_t b = 0; b < n / kQBlock; ++b) {
    const float d = f16_to_f32(x[b].d);
    for (size_t i = 0; i < kQBlock; ++i) y[b * kQBlock + i] = d * static_cast<float>(x[b].qs[i]);
  }
}

void dequantize_row_q4_0(const BlockQ4_0* x, float* y, size_t n) {
  for (size_t b = 0; b < n / kQBlock; ++b) {
    const float d = f16_to_f32(x[b].d);
    for (size_t j = 0; j < kQBlock / 2; ++j) {
      y[b * kQBlock + j] = d * static_cast<float>((x[b].qs[j] & 15) - 8);
      y[b * kQBlock + j + kQBlock / 2] = d * static_cast<float>((x[b].qs[j] >> 4) - 8);
    }
  }
}

void quantize_act_q8(const float* x, size_t n, int8_t* qs, float* d, int32_t* sum) {
  for (size_t b = 0; b < n / kQBlock; ++b) {
    const float* xb = x + b * kQBlock;
    float amax = 0;
    for (size_t i = 0; i < kQBlock; ++i) amax = std::max(amax, std::fabs(xb[i]));
    d[b] = amax / 127.0f;
    const float id = amax > 0 ? 127.0f / amax : 0.0f;
    int32_t s = 0;
    for (size_t i = 0; i < kQBlock; ++i) {
      const int v = static_cast<int>(std::nearbyint(xb[i] * id));
      qs[b * kQBlock + i] = static_cast<int8_t>(std::clamp(v, -127, 127));
      s += qs[b * kQBlock + i];
    }
    if (sum) sum[b] = s;
  }
}

float vec_dot_q8_0(const BlockQ8_0* w, const int8_t* xq, const float* xd, size_t n) {
  float acc = 0;
  for (size_t b = 0; b < n / kQBlock; ++b) {
    int32_t s = 0;
    for (size_t i = 0; i < kQBlock; ++i) s += w[b].qs[i] * xq[b * kQBlock + i];
    acc = std::fma(f16_to_f32(w[b].d) * xd[b], static_cast<float>(s), acc);
  }
  return acc;
}

float vec_dot_q4_0(const BlockQ4_0* w, const int8_t* xq, const float* xd, size_t n) {
  float acc = 0;
  for (size_t b = 0; b < n / kQBlock; ++b) {
    int32_t s = 0;
    for (size_t j = 0; j < kQBlock / 2; ++j) {
      s += ((w[b].qs[j] & 15) - 8) * xq[b * kQBlock + j];
      s += ((w[b].qs[j] >> 4) - 8) * xq[b * kQBlock + j + kQBlock / 2];
    }
    acc = std::fma(f16_to_f32(w[b].d) * xd[b], static_cast<float>(s), acc);
  }
  return acc;
}

}  // namespace stepaudio::ops
