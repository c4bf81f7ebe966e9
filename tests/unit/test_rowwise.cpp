// The threaded (and, on AVX-512 CPUs, SIMD) norms, element-wise ops and RoPE of ops.h against their
// scalar twins, on odd sizes, in place, and across thread counts (bit-identical: every row or
// element is computed by the same code whatever thread runs it).
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops/ops.h"
#include "random_inputs.h"

using namespace stepaudio::ops;

namespace {
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
}  // namespace

// Tolerance: both sides accumulate mean and variance in double (orders differ, ~1e-15 relative),
// so the float scale and mean agree to within one rounding; the output expression t * w + b
// (t = (x - mu) * inv) is then rounded 2-3 times on each side, possibly with one FMA on one side:
// |y - y_ref| <= 4 u (|t w| + |b|) with u = FLT_EPSILON / 2, doubled for the scale's rounding.
TEST(Rowwise, NormsMatchScalarTwinsWithResidual) {
  uint64_t seed = 100;
  for (size_t M : {1, 3, 17, 40})
    for (size_t D : {7, 16, 50, 1280, 3584}) {
      auto x0 = randn(M * D, ++seed, 3.0f), r = randn(M * D, ++seed), w = randn(D, ++seed),
           b = randn(D, ++seed);
      for (int rms = 0; rms < 2; ++rms) {
        // Reference: the residual add, then the twin.
        std::vector<float> xr = x0, yr(M * D);
        add(xr.data(), r.data(), M * D);
        if (rms)
          ref::rms_norm(xr.data(), M, D, w.data(), 1e-6f, yr.data());
        else
          ref::layer_norm(xr.data(), M, D, w.data(), b.data(), 1e-5f, yr.data());
        std::vector<float> first;
        for (int threads : {1, 2, 3}) {
          ThreadPool pool(threads);
          std::vector<float> x = x0, y(M * D);
          if (rms)
            add_rms_norm(pool, x.data(), r.data(), M, D, w.data(), 1e-6f, y.data());
          else
            add_layer_norm(pool, x.data(), r.data(), M, D, w.data(), b.data(), 1e-5f, y.data());
          ASSERT_TRUE(same_bits(x, xr)) << "residual add M=" << M << " D=" << D;
          for (size_t m = 0; m < M; ++m) {
            double mean = 0, var = 0;
            for (size_t i = 0; i < D; ++i) mean += xr[m * D + i];
            mean = rms ? 0.0 : mean / D;
            for (size_t i = 0; i < D; ++i) var += std::pow(xr[m * D + i] - mean, 2);
            const double inv = 1.0 / std::sqrt(var / D + (rms ? 1e-6 : 1e-5));
            for (size_t i = 0; i < D; ++i) {
              const double tw = std::fabs((xr[m * D + i] - mean) * inv * w[i]);
              const double tol = 8 * (FLT_EPSILON / 2) * (tw + (rms ? 0.0 : std::fabs(b[i])));
              ASSERT_NEAR(y[m * D + i], yr[m * D + i], tol)
                  << (rms ? "rms" : "layer") << " M=" << M << " D=" << D << " at " << m << "," << i;
            }
          }
          if (first.empty())
            first = y;
          else
            ASSERT_TRUE(same_bits(y, first)) << "thread count changed the result, M=" << M;
          // In place (y aliasing r, as the graphs call it) gives the same numbers.
          std::vector<float> xi = x0, ri = r;
          if (rms)
            add_rms_norm(pool, xi.data(), ri.data(), M, D, w.data(), 1e-6f, ri.data());
          else
            add_layer_norm(pool, xi.data(), ri.data(), M, D, w.data(), b.data(), 1e-5f, ri.data());
          ASSERT_TRUE(same_bits(ri, y));
        }
      }
    }
}

TEST(Rowwise, LayerNormInPlaceAndWithoutBias) {
  const size_t M = 9, D = 1283;
  auto x = randn(M * D, 5, 2.0f), w = randn(D, 6);
  std::vector<float> ref_y(M * D);
  ref::layer_norm(x.data(), M, D, w.data(), nullptr, 1e-5f, ref_y.data());
  ThreadPool pool(2);
  std::vector<float> y = x;
  layer_norm(pool, y.data(), M, D, w.data(), nullptr, 1e-5f, y.data());
  for (size_t i = 0; i < y.size(); ++i)
    ASSERT_NEAR(y[i], ref_y[i], 8 * (FLT_EPSILON / 2) * (std::fabs(ref_y[i]) + 1e-30)) << i;
}

// RoPE: rope_rows with a shared table against rope() per row. Both compute a * c - b * s from the
// same table values; a compiler may contract one side to an FMA, so allow one rounding of each
// product: |d| <= u (|a c| + |b s|) * 2.
TEST(Rowwise, RopeRowsMatchRope) {
  const size_t n = 37;
  for (auto [heads, hd] : {std::pair<size_t, size_t>{28, 128}, {4, 128}, {3, 16}, {2, 40}}) {
    const size_t stride = heads * hd + 3;
    auto inv_freq = randn(hd / 2, 7);
    for (auto& f : inv_freq) f = std::fabs(f);
    std::vector<size_t> pos(n);
    for (size_t i = 0; i < n; ++i) pos[i] = (i * 7919) % 32768;
    std::vector<float> cs(n * hd);
    rope_table(pos.data(), n, hd, inv_freq.data(), cs.data());
    auto x0 = randn(n * stride, heads + hd);
    std::vector<float> first;
    for (int threads : {1, 2, 3}) {
      ThreadPool pool(threads);
      std::vector<float> x = x0, xr = x0;
      rope_rows(pool, x.data(), n, stride, heads, hd, cs.data());
      for (size_t i = 0; i < n; ++i)
        rope(xr.data() + i * stride, heads, hd, pos[i], inv_freq.data());
      for (size_t i = 0; i < x.size(); ++i) {
        const size_t col = i % stride;
        if (col >= heads * hd) {
          ASSERT_EQ(x[i], x0[i]) << "padding column written";
          continue;
        }
        // |a c| + |b s| <= |a| + |b| with |c|, |s| <= 1; the partner of column j is j +- hd/2.
        const size_t j = col % hd, partner = j < hd / 2 ? i + hd / 2 : i - hd / 2;
        const double tol = FLT_EPSILON * (std::fabs(x0[i]) + std::fabs(x0[partner]));
        ASSERT_NEAR(x[i], xr[i], tol) << "heads=" << heads << " hd=" << hd << " at " << i;
      }
      if (first.empty())
        first = x;
      else
        ASSERT_TRUE(same_bits(x, first));
    }
  }
}

// The threaded element-wise ops are the one-thread functions applied to pieces: bit-identical.
TEST(Rowwise, ThreadedElementwiseBitIdentical) {
  const size_t n = 100003;  // above the serial threshold, odd tail
  auto a = randn(n, 11, 4.0f), u = randn(n, 12);
  std::vector<float> g1 = a, s1 = a, p1 = a;
  gelu(g1.data(), n);
  silu(s1.data(), n);
  mul(s1.data(), u.data(), n);
  add(p1.data(), u.data(), n);
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    std::vector<float> g = a, s = a, p = a;
    gelu(pool, g.data(), n);
    silu_mul(pool, s.data(), u.data(), n);
    add(pool, p.data(), u.data(), n);
    ASSERT_TRUE(same_bits(g, g1)) << threads;
    ASSERT_TRUE(same_bits(s, s1)) << threads;
    ASSERT_TRUE(same_bits(p, p1)) << threads;
  }
}
