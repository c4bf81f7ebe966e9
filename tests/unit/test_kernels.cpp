// SIMD kernels (ops/x86, ops/arm) against their scalar twins (ops/generic, ops/quant) on random
// shapes, odd sizes and misaligned pointers, plus the quantized formats' round trips.
//
// Tolerances (u = 2^-24, the f32 unit roundoff; S = sum_k |x_k| |w_k| per output):
// - exact path (f32/bf16 weights widened exactly, f32 FMA) vs ref::matmul: both are f32 sums of the
//   same K exact products in different orders; each has error <= K u S (Higham's gamma_K), so the
//   difference is <= 2 K u S.
// - quantized GEMV vs ref::matmul_q: the int32 block sums are exact in both; only the float
//   combination of nb = K/32 block terms differs (lanes and 4 accumulators vs one running sum):
//   <= 2 (nb + 16) u T with T = sum_b |d_w d_x isum_b| <= 2 S (codes x scales are within half a
//   step of |x|, |w|), so 4 (nb + 16) u S.
// - bf16 GEMM vs ref::matmul (exact f32 with dequantized weights): x rounded to bf16 (relative
//   2^-9), quantized weights' q*d rounded to bf16 (2^-9; bf16 weights exact), f32 accumulation
//   (K u): <= (2^-8 + 2^-18 + 2 K u) S.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "ops/cpu.h"
#include "ops/ops.h"
#include "ops/quant.h"
#include "random_inputs.h"

using namespace stepaudio::ops;

namespace {

// A weight matrix of dtype t built from f32 values w[N][K], stored at a misaligned address.
struct TestWeights {
  std::vector<char> storage;
  WeightView view;
  std::vector<float> deq;  // [N][K] the exact values the weights represent
};
TestWeights make_weights(DType t, const std::vector<float>& w, size_t N, size_t K, bool fast,
                         size_t misalign) {
  TestWeights r;
  const size_t rb = row_bytes(t, K);
  r.storage.resize(N * rb + 64);
  char* base = r.storage.data() + misalign;
  r.deq.resize(N * K);
  for (size_t n = 0; n < N; ++n) {
    char* row = base + n * rb;
    const float* src = w.data() + n * K;
    switch (t) {
      case DType::f32:
        std::memcpy(row, src, K * 4);
        break;
      case DType::bf16:
        for (size_t k = 0; k < K; ++k) {
          uint16_t h = f32_to_bf16(src[k]);
          std::memcpy(row + 2 * k, &h, 2);
        }
        break;
      case DType::q8_0:
        quantize_row_q8_0(src, reinterpret_cast<BlockQ8_0*>(row), K);
        break;
      case DType::q4_0:
        quantize_row_q4_0(src, reinterpret_cast<BlockQ4_0*>(row), K);
        break;
      default:
        break;
    }
  }
  r.view = WeightView{t, base, N, K, fast};
  for (size_t n = 0; n < N; ++n) r.view.row_f32(n, r.deq.data() + n * K);
  return r;
}

double abs_dot(const float* x, const float* w, size_t K) {
  double s = 0;
  for (size_t k = 0; k < K; ++k) s += std::fabs(static_cast<double>(x[k]) * w[k]);
  return s;
}

void check_case(DType t, bool fast, size_t M, size_t N, size_t K, uint64_t seed) {
  auto w = randn(N * K, seed, 0.05f);
  auto xs = randn(M * K + 1, seed + 1);
  auto bias = randn(N, seed + 2);
  const float* x = xs.data() + 1;  // misaligned by one float
  TestWeights tw = make_weights(t, w, N, K, fast, t == DType::f32 ? 4 : 2);
  ThreadPool pool(2);
  std::vector<float> ys(M * N + 1), yr(M * N);
  float* y = ys.data() + 1;
  matmul(pool, x, M, tw.view, bias.data(), y);
  const bool q = is_block_type(t);
  const bool gemv_q = q && M <= kGemvMaxRows;
  const bool bf16_gemm =
      (q || (t == DType::bf16 && fast)) && M > kGemvMaxRows && cpu_isa() == Isa::avx512;
  if (gemv_q)
    ref::matmul_q(pool, x, M, tw.view, bias.data(), yr.data());
  else
    ref::matmul(pool, x, M, tw.view, bias.data(), yr.data());
  const double u = std::ldexp(1.0, -24);
  for (size_t m = 0; m < M; ++m)
    for (size_t n = 0; n < N; ++n) {
      const double S = abs_dot(x + m * K, tw.deq.data() + n * K, K) + std::fabs(bias[n]);
      double tol;
      if (gemv_q)
        tol = 4.0 * (K / 32.0 + 16) * u * S;
      else if (bf16_gemm)
        tol = (std::ldexp(1.0, -8) + std::ldexp(1.0, -18) + 2.0 * K * u) * S;
      else
        tol = 2.0 * K * u * S;
      ASSERT_NEAR(y[m * N + n], yr[m * N + n], tol + 1e-30)
          << dtype_name(t) << " fast=" << fast << " M=" << M << " N=" << N << " K=" << K << " at "
          << m << "," << n;
    }
}
}  // namespace

// STEPAUDIO_EXPECT_ISA (set by the cross tests, cross/CMakeLists.txt) guards against a silent
// fallback: each run must exercise the kernel set it is named after.
TEST(Kernels, DispatchReportsIsa) {
  std::printf("kernel ISA: %s\n", isa_name(cpu_isa()));
  if (const char* want = std::getenv("STEPAUDIO_EXPECT_ISA")) {
    EXPECT_STREQ(isa_name(cpu_isa()), want);
  }
}

TEST(Kernels, MatmulMatchesScalarTwinOnOddShapes) {
  uint64_t seed = 100;
  for (DType t : {DType::f32, DType::bf16, DType::q8_0, DType::q4_0})
    for (bool fast : {false, true})
      for (size_t M : {1, 2, 3, 4, 5, 7, 9})
        for (size_t N : {1, 3, 4, 5, 17, 38}) {
          const bool q = is_block_type(t);
          for (size_t K :
               q ? std::vector<size_t>{32, 96, 288} : std::vector<size_t>{1, 15, 16, 33, 67, 130})
            check_case(t, fast, M, N, K, ++seed);
        }
}

// Long rows: block counts with and without a remainder of 4-block groups (the NEON GEMV takes 4
// blocks per step) and K far from the small shapes above, for every weight type.
TEST(Kernels, MatmulMatchesScalarTwinOnLongRows) {
  uint64_t seed = 5000;
  for (DType t : {DType::f32, DType::bf16, DType::q8_0, DType::q4_0})
    for (size_t M : {1, 4, 6})
      for (size_t K : {128, 4096 + 96})
        check_case(t, true, M, 9, K + (is_block_type(t) ? 0 : 3), ++seed);
}

// The same with products large enough to leave the kernels' single-thread shortcut for small
// products (M N K >= 2^16), so the pool's partition really changes with the thread count.
TEST(Kernels, MatmulBitIdenticalAcrossThreadCountsLarge) {
  for (DType t : {DType::f32, DType::bf16, DType::q8_0, DType::q4_0})
    for (size_t M : {1, 3, 6}) {
      const size_t N = 45, K = 1600;
      auto w = randn(N * K, 9, 0.1f);
      auto x = randn(M * K, 10);
      TestWeights tw = make_weights(t, w, N, K, false, 0);
      std::vector<float> y1(M * N), y2(M * N), y3(M * N);
      ThreadPool p1(1), p2(2), p3(3);
      matmul(p1, x.data(), M, tw.view, nullptr, y1.data());
      matmul(p2, x.data(), M, tw.view, nullptr, y2.data());
      matmul(p3, x.data(), M, tw.view, nullptr, y3.data());
      EXPECT_EQ(0, std::memcmp(y1.data(), y2.data(), y1.size() * 4)) << dtype_name(t) << " M=" << M;
      EXPECT_EQ(0, std::memcmp(y1.data(), y3.data(), y1.size() * 4)) << dtype_name(t) << " M=" << M;
    }
}

// Worst-case int8 magnitudes: every weight and activation code at the extremes (Q8_0: +-127, Q4_0:
// -8), so a block sum is +-32 * 127 * 127 (or 8 * 127). A kernel that accumulated block products in
// int16 (or saturated) would be off by far more than the float tolerance of check_case.
TEST(Kernels, QuantGemvExtremeCodes) {
  const size_t N = 6, K = 32 * 11;
  std::vector<float> w(N * K), x(4 * K);
  for (size_t n = 0; n < N; ++n)
    for (size_t k = 0; k < K; ++k) w[n * K + k] = (n % 2 ? 1.0f : -1.0f) * (n < 3 ? 1.0f : 3.0f);
  for (size_t k = 0; k < x.size(); ++k) x[k] = (k / 32) % 3 == 0 ? -2.0f : 2.0f;
  for (DType t : {DType::q8_0, DType::q4_0})
    for (size_t M : {1, 4}) {
      TestWeights tw = make_weights(t, w, N, K, true, 0);
      ThreadPool pool(1);
      std::vector<float> y(M * N), yr(M * N);
      matmul(pool, x.data(), M, tw.view, nullptr, y.data());
      ref::matmul_q(pool, x.data(), M, tw.view, nullptr, yr.data());
      for (size_t i = 0; i < M * N; ++i)
        ASSERT_NEAR(y[i], yr[i], 1e-5 * std::fabs(yr[i]))
            << dtype_name(t) << " M=" << M << " " << i;
    }
}

TEST(Kernels, MatmulBitIdenticalAcrossThreadCounts) {
  for (DType t : {DType::f32, DType::bf16, DType::q8_0, DType::q4_0})
    for (size_t M : {1, 3, 6}) {
      const size_t N = 45, K = 160;
      auto w = randn(N * K, 7, 0.1f);
      auto x = randn(M * K, 8);
      TestWeights tw = make_weights(t, w, N, K, true, 0);
      std::vector<float> y1(M * N), y3(M * N);
      ThreadPool p1(1), p3(3);
      matmul(p1, x.data(), M, tw.view, nullptr, y1.data());
      matmul(p3, x.data(), M, tw.view, nullptr, y3.data());
      EXPECT_EQ(0, std::memcmp(y1.data(), y3.data(), y1.size() * 4)) << dtype_name(t) << " M=" << M;
    }
}

// The fast GEMM at encoder-like sizes, above the single-thread shortcut (fixed 128-row chunks, each
// one oneDNN call on one thread): bit-identical for 1, 2 and 3 threads, and within the bf16 bound
// of the exact product (check_case).
TEST(Kernels, FastGemmBitIdenticalAcrossThreadCounts) {
  for (DType t : {DType::bf16, DType::q8_0})
    for (size_t M : {37, 300}) {
      const size_t N = 640 + 16, K = 1280;
      auto w = randn(N * K, 21, 0.05f), x = randn(M * K, 22), bias = randn(N, 23);
      TestWeights tw = make_weights(t, w, N, K, true, 0);
      std::vector<float> y[3];
      for (int threads : {1, 2, 3}) {
        ThreadPool p(threads);
        y[threads - 1].resize(M * N);
        matmul(p, x.data(), M, tw.view, bias.data(), y[threads - 1].data());
      }
      EXPECT_EQ(0, std::memcmp(y[0].data(), y[1].data(), y[0].size() * 4)) << dtype_name(t) << M;
      EXPECT_EQ(0, std::memcmp(y[0].data(), y[2].data(), y[0].size() * 4)) << dtype_name(t) << M;
    }
  check_case(DType::bf16, true, 300, 656, 1280, 24);
}

TEST(Quant, F16RoundTripAndRounding) {
  for (float f : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 0.333333f})
    EXPECT_NEAR(f16_to_f32(f32_to_f16(f)), f, std::fabs(f) * std::ldexp(1.0, -11) + 3e-8) << f;
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), f32_to_f16(1.0f));  // tie -> even
  EXPECT_EQ(f32_to_f16(70000.0f), 0x7c00);
  // Every half value converts back to itself.
  for (uint32_t h = 0; h < 0x7c00; ++h)
    ASSERT_EQ(f32_to_f16(f16_to_f32(static_cast<uint16_t>(h))), h);
}

// Round trip: |w - deq| <= d/2 per element (half a quantization step) + the f16 rounding of d
// (relative 2^-11) times the largest code (127 or 8). Q4_0 is asymmetric (ggml's choice: the value
// of largest magnitude maps to code 0 = -8 d exactly, the opposite side stops at +7 d), so values
// of the other sign near amax clamp with an error up to one full step d.
TEST(Quant, BlockFormatsRoundTrip) {
  const size_t K = 32 * 37;
  auto w = randn(K, 11);
  w[5] = 40.0f;  // an outlier only affects its own block
  std::vector<BlockQ8_0> q8(K / 32);
  std::vector<BlockQ4_0> q4(K / 32);
  std::vector<float> d8(K), d4(K);
  quantize_row_q8_0(w.data(), q8.data(), K);
  quantize_row_q4_0(w.data(), q4.data(), K);
  dequantize_row_q8_0(q8.data(), d8.data(), K);
  dequantize_row_q4_0(q4.data(), d4.data(), K);
  for (size_t b = 0; b < K / 32; ++b) {
    float amax = 0;
    for (size_t i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(w[b * 32 + i]));
    const double s8 = amax / 127.0, s4 = amax / 8.0;
    for (size_t i = 0; i < 32; ++i) {
      const size_t k = b * 32 + i;
      EXPECT_LE(std::fabs(w[k] - d8[k]), s8 / 2 + 127 * s8 * std::ldexp(1.0, -11) + 1e-7) << k;
      EXPECT_LE(std::fabs(w[k] - d4[k]), s4 + 8 * s4 * std::ldexp(1.0, -11) + 1e-7) << k;
    }
  }
  // The extreme value is represented (nearly) exactly in both formats.
  EXPECT_NEAR(d8[5], 40.0f, 40.0f * 1e-3f);
  EXPECT_NEAR(d4[5], 40.0f, 40.0f * 1e-3f);
  // A zero block stays zero.
  std::vector<float> z(32, 0.0f), zd(32, 1.0f);
  quantize_row_q4_0(z.data(), q4.data(), 32);
  dequantize_row_q4_0(q4.data(), zd.data(), 32);
  for (float v : zd) EXPECT_EQ(v, 0.0f);
}

// SIMD attention vs the scalar twin. Scores: f32 dots of length hd (error <= hd u sum|q k|); the
// vectorised exp is within ~2e-7 relative; softmax normalisation and the P V sums in f32 vs double
// add <= n_kv u max|v|. With unit-normal q, k, v, hd <= 80 and n_kv <= 300 that is < 1e-4 absolute.
// The larger cases cover several query blocks plus tails, partial key tiles and GQA groups.
TEST(Kernels, AttentionMatchesScalarTwin) {
  struct Case {
    size_t n_q, n_kv, heads, kv_heads, hd;
    bool causal, bias;
  };
  for (const Case& c : {Case{1, 37, 4, 2, 16, true, false}, Case{5, 5, 3, 3, 24, true, false},
                        Case{17, 300, 2, 1, 80, false, true}, Case{9, 9, 4, 4, 7, false, false},
                        Case{150, 160, 4, 2, 16, false, false}, Case{70, 90, 3, 1, 24, false, true},
                        Case{130, 130, 2, 2, 64, true, true}}) {
    const size_t qs = c.heads * c.hd + 3, kvs = c.kv_heads * c.hd + 1;  // odd strides
    auto q = randn(c.n_q * qs + 1, 21), k = randn(c.n_kv * kvs + 1, 22),
         v = randn(c.n_kv * kvs + 1, 23);
    auto bias = randn(c.n_kv, 24);
    for (size_t j = 0; j < c.n_kv; j += 3) bias[j] = -1e10f;  // masked keys, as the encoder's
    AttentionShape s{c.n_q, c.n_kv, c.heads, c.kv_heads, c.hd, qs, kvs};
    std::vector<float> o1(c.n_q * c.heads * c.hd), o2(o1.size());
    ThreadPool pool(2);
    const size_t pos0 = c.causal ? c.n_kv - c.n_q : 0;
    attention(pool, s, q.data() + 1, k.data() + 1, v.data() + 1, 0.3f,
              c.bias ? bias.data() : nullptr, c.causal, pos0, o1.data());
    ref::attention(pool, s, q.data() + 1, k.data() + 1, v.data() + 1, 0.3f,
                   c.bias ? bias.data() : nullptr, c.causal, pos0, o2.data());
    for (size_t i = 0; i < o1.size(); ++i) ASSERT_NEAR(o1[i], o2[i], 1e-4) << i;
  }
}

// Causal attention is exact by row: a query gets the same bits alone (decode, a forked branch) as
// inside a long prefill block (what makes forked-prefix logits equal from-scratch logits).
TEST(Kernels, CausalAttentionRowIndependentOfBlock) {
  const size_t n = 75, heads = 4, kv_heads = 2, hd = 40, qs = heads * hd, kvs = kv_heads * hd;
  auto q = randn(n * qs, 31), k = randn(n * kvs, 32), v = randn(n * kvs, 33);
  ThreadPool pool(2);
  std::vector<float> all(n * heads * hd), one(heads * hd);
  attention(pool, {n, n, heads, kv_heads, hd, qs, kvs}, q.data(), k.data(), v.data(), 0.2f, nullptr,
            true, 0, all.data());
  for (size_t i : {size_t{0}, size_t{1}, size_t{31}, size_t{32}, size_t{74}}) {
    attention(pool, {1, i + 1, heads, kv_heads, hd, qs, kvs}, q.data() + i * qs, k.data(), v.data(),
              0.2f, nullptr, true, i, one.data());
    EXPECT_EQ(0, std::memcmp(one.data(), all.data() + i * heads * hd, one.size() * 4)) << i;
  }
}

// GELU and SiLU (SIMD on AVX-512) against the double-precision formulas over [-30, 30] plus signed
// zeros and odd lengths. Bound: erfc512/exp512 are within ~3e-7 relative of the exact functions,
// the final products and quotient add a few float ulp: 2e-6 relative (the scalar libm versions sit
// within ~2 ulp = 2.4e-7). GELU's negative tail: the scalar twin (the formula torch uses in
// float32) computes 1 + erf(z), which cancels: absolute error up to 0.5 |x| ulp(1) = 6e-8 |x|,
// allowed on top (the SIMD erfc form stays relative there, to z^2 * 1.2e-7 from rounding z^2).
TEST(Kernels, ActivationsMatchDoubleFormulas) {
  std::vector<float> xs;
  for (int i = -30000; i <= 30000; ++i) xs.push_back(static_cast<float>(i) * 1e-3f);
  xs.push_back(-0.0f);
  xs.push_back(1e-30f);
  xs.push_back(-1e-30f);
  for (size_t len : {xs.size(), size_t{7}, size_t{33}}) {
    std::vector<float> g(xs.begin(), xs.begin() + len), s = g;
    gelu(g.data(), len);
    silu(s.data(), len);
    for (size_t i = 0; i < len; ++i) {
      const double x = xs[i];
      const double ge = 0.5 * x * std::erfc(-x / std::sqrt(2.0));
      const double se = x / (1.0 + std::exp(-x));
      ASSERT_NEAR(g[i], ge, 2e-6 * std::fabs(ge) + 6e-8 * std::fabs(x)) << "gelu " << x;
      ASSERT_NEAR(s[i], se, 2e-6 * std::fabs(se) + 1e-30) << "silu " << x;
    }
  }
}

// Fast (bf16) attention, the encoder's under q8/q4: q and k rounded to bf16 move each logit by at
// most 2 * 2^-9 * scale * sum_d |q_d k_d| (+ f32 terms); P and v rounded add 2^-9 relative each. So
// |o - o_ref| <= (2 * max logit error + 2 * 2^-9) * max|v| per output, with softmax's sensitivity
// to a logit shift e being <= e (probabilities move by <= p (e^e - 1)). More shapes, thread counts
// and the bound per row: test_attention_fast.cpp.
TEST(Kernels, FastAttentionWithinBf16Bound) {
  const size_t n = 150, heads = 4, kv_heads = 4, hd = 64, st = heads * hd + 5;
  auto q = randn(n * st, 41), k = randn(n * st, 42), v = randn(n * st, 43), bias = randn(n, 44);
  for (size_t j = 0; j < n; j += 5) bias[j] = -1e10f;
  const float scale = 0.125f;
  AttentionShape s{n, n, heads, kv_heads, hd, st, st, true};
  ThreadPool pool(2);
  std::vector<float> o1(n * heads * hd), o2(o1.size());
  attention(pool, s, q.data(), k.data(), v.data(), scale, bias.data(), false, 0, o1.data());
  s.fast = false;
  ref::attention(pool, s, q.data(), k.data(), v.data(), scale, bias.data(), false, 0, o2.data());
  double max_logit_err = 0, max_v = 0;
  for (size_t h = 0; h < heads; ++h)
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < n; ++j)
        max_logit_err = std::max(
            max_logit_err, 2 * std::ldexp(1.0, -9) * scale *
                               abs_dot(q.data() + i * st + h * hd, k.data() + j * st + h * hd, hd));
  for (float x : v) max_v = std::max(max_v, static_cast<double>(std::fabs(x)));
  const double bound = (2 * max_logit_err + 2 * std::ldexp(1.0, -9)) * max_v;
  double worst = 0;
  for (size_t i = 0; i < o1.size(); ++i)
    worst = std::max(worst, static_cast<double>(std::fabs(o1[i] - o2[i])));
  EXPECT_LE(worst, bound);
  // bf16 rounded on AVX-512 (elsewhere the scalar twin runs: no difference).
  if (cpu_isa() == Isa::avx512) {
    EXPECT_GT(worst, 0.0);
  }
  std::printf("fast attention: max error %.3g, bound %.3g\n", worst, bound);
}
