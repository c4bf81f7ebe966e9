// Scalar ops vs straightforward double-precision formulas. Tolerances: the ops accumulate in f32
// (unit roundoff u = 6e-8); a length-K dot product has error <= K u sum|a_i b_i| (Higham), so with
// K <= 200 and O(1) inputs 1e-4 absolute is a safe bound; elementwise ops are within a few ulp.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "ops/ops.h"
#include "random_inputs.h"

using namespace stepaudio::ops;

TEST(Ops, MatmulMatchesNaiveForAllDtypesAndThreads) {
  const size_t M = 5, N = 37, K = 67;
  auto x = randn(M * K, 1), w = randn(N * K, 2), b = randn(N, 3);
  std::vector<uint16_t> wb(N * K);
  for (size_t i = 0; i < wb.size(); ++i) wb[i] = f32_to_bf16(w[i]);
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (DType dt : {DType::f32, DType::bf16}) {
      WeightView W{dt, dt == DType::f32 ? static_cast<const void*>(w.data()) : wb.data(), N, K};
      std::vector<float> y(M * N);
      matmul(pool, x.data(), M, W, b.data(), y.data());
      for (size_t m = 0; m < M; ++m)
        for (size_t n = 0; n < N; ++n) {
          double ref = b[n];
          for (size_t k = 0; k < K; ++k)
            ref += static_cast<double>(x[m * K + k]) *
                   (dt == DType::f32 ? w[n * K + k] : bf16_to_f32(wb[n * K + k]));
          EXPECT_NEAR(y[m * N + n], ref, 1e-4) << m << "," << n;
        }
    }
  }
}

TEST(Ops, MatmulBitIdenticalAcrossThreadCounts) {
  const size_t M = 7, N = 101, K = 33;
  auto x = randn(M * K, 4), w = randn(N * K, 5);
  WeightView W{DType::f32, w.data(), N, K};
  std::vector<float> y1(M * N), y4(M * N);
  ThreadPool p1(1), p4(4);
  matmul(p1, x.data(), M, W, nullptr, y1.data());
  matmul(p4, x.data(), M, W, nullptr, y4.data());
  EXPECT_EQ(0, std::memcmp(y1.data(), y4.data(), y1.size() * 4));
}

TEST(Ops, Bf16AndF16Conversions) {
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f)), 1.0f);
  EXPECT_EQ(f32_to_bf16(1.00390625f), f32_to_bf16(1.0f));  // exact tie (1 + 2^-8) rounds to even
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.01171875f)), 1.015625f);  // 1 + 3*2^-8 ties up to even
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0xc000), -2.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_TRUE(std::isinf(f16_to_f32(0x7c00)));
}

TEST(Ops, LayerNormAndRmsNorm) {
  const size_t M = 3, D = 50;
  auto x = randn(M * D, 6), w = randn(D, 7), b = randn(D, 8);
  ThreadPool pool(2);
  for (bool twin : {true, false}) {
    std::vector<float> y(M * D), r(M * D);
    if (twin) {
      ref::layer_norm(x.data(), M, D, w.data(), b.data(), 1e-5f, y.data());
      ref::rms_norm(x.data(), M, D, w.data(), 1e-6f, r.data());
    } else {
      layer_norm(pool, x.data(), M, D, w.data(), b.data(), 1e-5f, y.data());
      rms_norm(pool, x.data(), M, D, w.data(), 1e-6f, r.data());
    }
    for (size_t m = 0; m < M; ++m) {
      double mean = 0, var = 0, ss = 0;
      for (size_t i = 0; i < D; ++i) mean += x[m * D + i];
      mean /= D;
      for (size_t i = 0; i < D; ++i)
        var += std::pow(x[m * D + i] - mean, 2), ss += std::pow(x[m * D + i], 2);
      var /= D;
      for (size_t i = 0; i < D; ++i) {
        EXPECT_NEAR(y[m * D + i], (x[m * D + i] - mean) / std::sqrt(var + 1e-5) * w[i] + b[i],
                    1e-5);
        EXPECT_NEAR(r[m * D + i], x[m * D + i] / std::sqrt(ss / D + 1e-6) * w[i], 1e-5);
      }
    }
  }
}

TEST(Ops, Activations) {
  std::vector<float> x = {-3.0f, -0.5f, 0.0f, 0.7f, 4.0f}, g = x, s = x, r = x;
  gelu(g.data(), g.size());
  silu(s.data(), s.size());
  relu(r.data(), r.size());
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_NEAR(g[i], 0.5 * x[i] * (1 + std::erf(x[i] / std::sqrt(2.0))), 1e-6);
    EXPECT_NEAR(s[i], x[i] / (1 + std::exp(-x[i])), 1e-6);
    EXPECT_EQ(r[i], std::max(0.0f, x[i]));
  }
}

TEST(Ops, SoftmaxSumsToOneAndHandlesMinusInf) {
  std::vector<float> x = {1.0f, 2.0f, -INFINITY, 3.0f};
  softmax(x.data(), x.size());
  EXPECT_EQ(x[2], 0.0f);
  EXPECT_NEAR(x[0] + x[1] + x[3], 1.0, 1e-6);
  EXPECT_NEAR(x[3] / x[1], std::exp(1.0), 1e-5);
}

TEST(Ops, RopeRotateHalf) {
  // One head, head_dim 4: pairs (0,2) and (1,3) rotate by pos * inv_freq[i] (HF rotate_half).
  std::vector<float> x = {1, 2, 3, 4};
  float inv_freq[2] = {1.0f, 0.01f};
  rope(x.data(), 1, 4, 3, inv_freq);
  EXPECT_NEAR(x[0], 1 * std::cos(3.0) - 3 * std::sin(3.0), 1e-6);
  EXPECT_NEAR(x[2], 3 * std::cos(3.0) + 1 * std::sin(3.0), 1e-6);
  EXPECT_NEAR(x[1], 2 * std::cos(0.03) - 4 * std::sin(0.03), 1e-6);
  EXPECT_NEAR(x[3], 4 * std::cos(0.03) + 2 * std::sin(0.03), 1e-6);
}

TEST(Ops, GroupedQueryCausalAttention) {
  // 4 query heads share 2 KV heads; query 0 at position 1 sees keys 0..1 only.
  const size_t hd = 3, nh = 4, nkv = 2, n_kv = 3;
  auto q = randn(1 * nh * hd, 9), k = randn(n_kv * nkv * hd, 10), v = randn(n_kv * nkv * hd, 11);
  std::vector<float> out(nh * hd);
  ThreadPool pool(2);
  attention(pool, {1, n_kv, nh, nkv, hd, nh * hd, nkv * hd}, q.data(), k.data(), v.data(), 0.5f,
            nullptr, true, 1, out.data());
  for (size_t h = 0; h < nh; ++h) {
    const size_t g = h / 2;
    double s[2], sum = 0;
    for (size_t j = 0; j < 2; ++j) {
      s[j] = 0;
      for (size_t c = 0; c < hd; ++c) s[j] += q[h * hd + c] * k[j * nkv * hd + g * hd + c];
      s[j] = std::exp(0.5 * s[j]);
      sum += s[j];
    }
    for (size_t c = 0; c < hd; ++c) {
      double ref = 0;
      for (size_t j = 0; j < 2; ++j) ref += s[j] / sum * v[j * nkv * hd + g * hd + c];
      EXPECT_NEAR(out[h * hd + c], ref, 1e-5);
    }
  }
}

TEST(Ops, Conv1dMatchesDirectFormula) {
  const size_t T = 9, C = 3, O = 4, Kk = 3, stride = 2, pad = 1;
  auto x = randn(T * C, 12), w = randn(O * C * Kk, 13), b = randn(O, 14);
  const size_t To = conv1d_out_len(T, Kk, stride, pad);
  ASSERT_EQ(To, 5u);
  std::vector<float> y(To * O);
  ThreadPool pool(2);
  conv1d(pool, x.data(), T, C, WeightView{DType::f32, w.data(), O, C * Kk}, b.data(), Kk, stride,
         pad, y.data());
  for (size_t t = 0; t < To; ++t)
    for (size_t o = 0; o < O; ++o) {
      double ref = b[o];
      for (size_t c = 0; c < C; ++c)
        for (size_t k = 0; k < Kk; ++k) {
          long src = static_cast<long>(t * stride + k) - static_cast<long>(pad);
          if (src >= 0 && src < static_cast<long>(T))
            ref += w[(o * C + c) * Kk + k] * x[src * C + c];
        }
      EXPECT_NEAR(y[t * O + o], ref, 1e-5);
    }
}
