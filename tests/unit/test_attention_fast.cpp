// The encoder's fast attention (AttentionShape::fast, no causal mask: on AVX-512 the fused kernel
// of ops/x86/flash_attention_avx512.cpp, in both its element formats, bf16 and f32) against the
// scalar twin ref::attention, on odd lengths (1..1500, not multiples of its 16-key groups, 64-key
// blocks or 16-query tiles), every head size it takes (16..128) and GQA, padding biases (-1e10),
// misaligned rows, 1-3 threads (bit-identical); ops::attention with fast runs the format
// preferred_flash_format() picks, bit for bit.
//
// For bf16 the twin runs on q, k, v rounded to bf16 as the kernel rounds them (round to nearest
// even; the f32 format and CPUs without the kernel get the inputs as they are), so
// the bound covers only what remains (a worst-case bound through the rounding of q and k is ~20x
// the actual error with random inputs). Without the bf16 term (f32) it is tight enough to catch a
// dropped key (a weight of ~1/n_kv, against a bound of ~2.5e-4 A at 1500 keys; the f32 kernel's
// worst error is ~7% of it). Per output (i, d), with w_j the twin's softmax weights, A = sum_j w_j
// |v_jd|, u = 2^-24 (f32's unit roundoff), b = 2^-8 (bf16's: 8 significant bits; 2^-9 until session
// 12, too tight by half, and a fresh seed found a row at 1.01 of it):
// - logits: the f32 sums of vdpbf16ps over exact bf16 products (<= hd u S_ij, S_ij = scale
//   sum_d |q_id k_jd|) and scaling to log2 units plus the bias in f32 (<= 4 u |logit_ij|): so
//   |e_ij| <= E_i over the keys that carry weight (bias > -1e9; a row of only masked keys is
//   uniform in both). Weights move by a factor within e^(+-2 E_i): <= (e^(2 E_i) - 1) A.
// - P rounded to bf16 (numerator only; l sums the unrounded p): <= b A (b = 0 for f32).
// - the exponential's polynomial (relative 2.7e-6, in p and in l): <= 6e-6 A.
// - f32 sums over n_kv keys of p v and of l: <= 2 n_kv u A.
// |o - o_twin| <= (e^(2 E_i) - 1 + b + 6e-6 + 2 n_kv u) A + 1e-7 max|v| (the twin's own double
// accumulation, rounded to f32).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "ops/cpu.h"
#include "ops/dtype.h"
#include "ops/ops.h"
#include "random_inputs.h"
#if defined(__x86_64__)
#include "ops/x86/kernels.h"
#endif

using namespace stepaudio::ops;

namespace {

// Which kernel a check runs: ops::attention (whatever it dispatches to) or one format of the
// fused AVX-512 kernel directly.
enum class Kernel { dispatch, bf16, f32 };

void run(Kernel kernel, ThreadPool& pool, const AttentionShape& s, const float* q, const float* k,
         const float* v, float scale, const float* bias, float* out) {
#if defined(__x86_64__)
  if (kernel != Kernel::dispatch) {
    const auto f = kernel == Kernel::f32 ? x86::FlashFormat::f32 : x86::FlashFormat::bf16;
    ASSERT_TRUE(x86::flash_attention_avx512(pool, s, q, k, v, scale, bias, f, out));
    return;
  }
#endif
  attention(pool, s, q, k, v, scale, bias, false, 0, out);
}

struct Case {
  size_t n_q, n_kv, heads, kv_heads, hd;
  int bias;  // 0: none, 1: random with every 7th key -1e10, 2: all keys -1e10 (uniform weights)
};

std::vector<float> round_bf16(std::vector<float> x) {
  for (float& e : x) e = bf16_to_f32(f32_to_bf16(e));
  return x;
}

// Runs one case at 1, 2 and 3 threads (bit-identical) and checks the bound; returns the worst
// error relative to the bound. rounds: the kernel rounds q, k, v and P to bf16.
double check(Kernel kernel, bool rounds, const Case& c, uint64_t seed) {
  const size_t qs = c.heads * c.hd + 3, kvs = c.kv_heads * c.hd + 1;  // odd strides: misaligned
  auto q = randn(c.n_q * qs + 1, seed), k = randn(c.n_kv * kvs + 1, seed + 1),
       v = randn(c.n_kv * kvs + 1, seed + 2), bias = randn(c.n_kv, seed + 3);
  for (size_t j = 0; j < c.n_kv; ++j)
    if (c.bias == 2 || j % 7 == 3) bias[j] = -1e10f;
  const auto qr = rounds ? round_bf16(q) : q, kr = rounds ? round_bf16(k) : k,
             vr = rounds ? round_bf16(v) : v;
  const float* bp = c.bias ? bias.data() : nullptr;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.hd));
  AttentionShape s{c.n_q, c.n_kv, c.heads, c.kv_heads, c.hd, qs, kvs, true};
  const size_t n_out = c.n_q * c.heads * c.hd;
  std::vector<float> o1(n_out), o(n_out), ref(n_out);
  {  // +1 float: rows start at any 4-byte offset
    ThreadPool pool(1);
    run(kernel, pool, s, q.data() + 1, k.data() + 1, v.data() + 1, scale, bp, o1.data());
    s.fast = false;
    ref::attention(pool, s, qr.data() + 1, kr.data() + 1, vr.data() + 1, scale, bp, false, 0,
                   ref.data());
    s.fast = true;
  }
  for (int threads : {2, 3}) {
    ThreadPool pool(threads);
    run(kernel, pool, s, q.data() + 1, k.data() + 1, v.data() + 1, scale, bp, o.data());
    EXPECT_EQ(0, std::memcmp(o.data(), o1.data(), n_out * sizeof(float)))
        << threads << " threads, n_q " << c.n_q << " n_kv " << c.n_kv;
  }
  const double b = rounds ? std::ldexp(1.0, -8) : 0.0, u = std::ldexp(1.0, -24);
  const float *qp = qr.data() + 1, *kp = kr.data() + 1, *vp = vr.data() + 1;
  double max_v = 0;
  for (size_t j = 0; j < c.n_kv; ++j)
    for (size_t d = 0; d < c.kv_heads * c.hd; ++d)
      max_v = std::max(max_v, static_cast<double>(std::fabs(vp[j * kvs + d])));
  const size_t group = c.heads / c.kv_heads;
  std::vector<double> logit(c.n_kv), w(c.n_kv);
  double worst = 0;
  for (size_t h = 0; h < c.heads; ++h) {
    const size_t g = h / group;
    for (size_t i = 0; i < c.n_q; ++i) {
      const float* qi = qp + i * qs + h * c.hd;
      double e = 0, mx = -1e300;
      for (size_t j = 0; j < c.n_kv; ++j) {
        const float* kj = kp + j * kvs + g * c.hd;
        double dot = 0, abs = 0;
        for (size_t d = 0; d < c.hd; ++d) {
          dot += static_cast<double>(qi[d]) * kj[d];
          abs += std::fabs(static_cast<double>(qi[d]) * kj[d]);
        }
        logit[j] = scale * dot + (bp ? bp[j] : 0.0);
        mx = std::max(mx, logit[j]);
        if (!bp || bp[j] > -1e9f)
          e = std::max(e, c.hd * u * scale * abs + 4 * u * std::fabs(logit[j]));
      }
      double sum = 0;
      for (size_t j = 0; j < c.n_kv; ++j) sum += w[j] = std::exp(logit[j] - mx);
      for (size_t d = 0; d < c.hd; ++d) {
        double a = 0;
        for (size_t j = 0; j < c.n_kv; ++j) a += w[j] / sum * std::fabs(vp[j * kvs + g * c.hd + d]);
        const double bound = (std::expm1(2 * e) + b + 6e-6 + 2 * c.n_kv * u) * a + 1e-7 * max_v;
        const size_t x = i * c.heads * c.hd + h * c.hd + d;
        const double err = std::fabs(static_cast<double>(o1[x]) - ref[x]);
        EXPECT_LE(err, bound) << "n_q " << c.n_q << " n_kv " << c.n_kv << " hd " << c.hd << " row "
                              << i << " head " << h << " dim " << d;
        worst = std::max(worst, err / bound);
        if (err > bound) return worst;  // one report per case
      }
    }
  }
  return worst;
}

}  // namespace

// Lengths around every boundary of the kernel (16-key groups, 64-key blocks, 16-query tiles, row
// groups of 4), the encoder's 500 and 1500 frames, n_q != n_kv, head sizes 16..128, GQA.
TEST(Kernels, FastAttentionMatchesScalarTwin) {
  const Case cases[] = {
      {1, 1, 2, 2, 64, 1},     {1, 37, 3, 3, 64, 1},    {5, 17, 2, 1, 32, 0},
      {17, 63, 2, 2, 64, 1},   {64, 64, 2, 2, 64, 1},   {65, 65, 2, 2, 48, 1},
      {127, 129, 4, 2, 16, 1}, {33, 200, 2, 2, 96, 1},  {100, 77, 2, 1, 128, 1},
      {300, 300, 2, 2, 64, 2}, {500, 500, 2, 2, 64, 1}, {1500, 1500, 1, 1, 64, 1},
  };
  if (cpu_isa() != Isa::avx512) {  // fast is ignored: the exact kernels, within the same bound
    uint64_t seed = 100;
    for (const Case& c : cases) check(Kernel::dispatch, false, c, seed += 10);
    GTEST_SKIP() << "no AVX-512: the fused kernel is not built for this CPU";
  }
  for (const Kernel kernel : {Kernel::bf16, Kernel::f32}) {
    const bool rounds = kernel == Kernel::bf16;
    uint64_t seed = 100;
    double worst = 0;
    for (const Case& c : cases) worst = std::max(worst, check(kernel, rounds, c, seed += 10));
    // Both formats leave some error (bf16 rounding; the polynomial exponential): a zero would mean
    // the twin ran, not the kernel.
    EXPECT_GT(worst, 0.0);
    std::printf("fast attention (%s) vs twin: worst error %.3g of the bound\n",
                rounds ? "bf16" : "f32", worst);
  }
}

#if defined(__x86_64__)
// ops::attention with fast runs the fused kernel in the format this CPU prefers, bit for bit.
TEST(Kernels, FastAttentionRunsThePreferredFormat) {
  if (cpu_isa() != Isa::avx512) GTEST_SKIP() << "no AVX-512";
  const size_t n = 97, heads = 3, hd = 64, st = heads * hd;
  auto q = randn(n * st, 61), k = randn(n * st, 62), v = randn(n * st, 63), bias = randn(n, 64);
  const AttentionShape s{n, n, heads, heads, hd, st, st, true};
  std::vector<float> via_attention(n * st), direct(n * st);
  ThreadPool pool(2);
  attention(pool, s, q.data(), k.data(), v.data(), 0.125f, bias.data(), false, 0,
            via_attention.data());
  const auto format = x86::preferred_flash_format();
  ASSERT_TRUE(x86::flash_attention_avx512(pool, s, q.data(), k.data(), v.data(), 0.125f,
                                          bias.data(), format, direct.data()));
  EXPECT_EQ(0, std::memcmp(via_attention.data(), direct.data(), direct.size() * sizeof(float)));
  EXPECT_EQ(format, x86::preferred_flash_format());  // measured once: the same for the process
  if (const char* forced = std::getenv("STEPAUDIO_FLASH_FORMAT")) {  // tests/CMakeLists.txt
    EXPECT_STREQ(forced, format == x86::FlashFormat::f32 ? "f32" : "bf16");
  }
  std::printf("preferred fused attention format: %s\n",
              format == x86::FlashFormat::f32 ? "f32" : "bf16");
}
#endif

// Shapes the fused kernel does not take (head size not a multiple of 16 or over 128, a -inf key
// bias) run the exact path: results within the exact path's tolerance of the twin.
TEST(Kernels, FastAttentionFallsBackToExact) {
  struct FallbackCase {
    size_t n, hd;
    bool inf_bias;
  };
  for (const FallbackCase& c :
       {FallbackCase{70, 40, false}, FallbackCase{70, 144, false}, FallbackCase{70, 64, true}}) {
    const size_t heads = 2, st = heads * c.hd;
    auto q = randn(c.n * st, 51), k = randn(c.n * st, 52), v = randn(c.n * st, 53),
         bias = randn(c.n, 54);
    if (c.inf_bias)
      for (size_t j = 0; j < c.n; j += 4) bias[j] = -std::numeric_limits<float>::infinity();
    AttentionShape s{c.n, c.n, heads, heads, c.hd, st, st, true};
    std::vector<float> o1(c.n * st), o2(o1.size());
    ThreadPool pool(2);
    attention(pool, s, q.data(), k.data(), v.data(), 0.1f, bias.data(), false, 0, o1.data());
    ref::attention(pool, s, q.data(), k.data(), v.data(), 0.1f, bias.data(), false, 0, o2.data());
    for (size_t i = 0; i < o1.size(); ++i) ASSERT_NEAR(o1[i], o2[i], 1e-4) << i;
  }
}
