// Quantization accuracy (stepaudio::quant_kl, `stepaudio bench --kl`) on the synthetic tiny model
// (hidden 64, FFN 96: every decoder matrix is quantized under q8/q4).
#include <gtest/gtest.h>

#include <cmath>

#include "ops/cpu.h"
#include "stepaudio/bench.h"

namespace stepaudio {
namespace {

TEST(QuantKl, ReferenceAgainstItselfIsExactlyZeroAndQuantsAreOrdered) {
  KlOptions o;
  o.synthetic = "tiny";
  o.reference = Quant::f32;
  o.quants = {Quant::f32, Quant::bf16, Quant::q8, Quant::q4};
  o.steps = 64;
  o.threads = 2;
  const auto all = quant_kl(o);
  // One decode result per quant, plus prefill-int8 (where the VNNI GEMM exists) and prefill-bf16
  // for q8 and q4.
  const bool int8 = ops::cpu_isa() == ops::Isa::avx512;
  ASSERT_EQ(all.size(), int8 ? 8u : 6u);
  auto get = [&](Quant q, const std::string& mode) {
    for (const KlResult& x : all)
      if (x.quant == q && x.mode == mode) return x;
    ADD_FAILURE() << quant_name(q) << " " << mode << " missing";
    return KlResult{};
  };
  const KlResult r[4] = {get(Quant::f32, "decode"), get(Quant::bf16, "decode"),
                         get(Quant::q8, "decode"), get(Quant::q4, "decode")};
  // Same weights, same kernels, same thread split: bit-identical logits, so KL is exactly 0.
  EXPECT_EQ(r[0].mean_kl, 0.0);
  EXPECT_EQ(r[0].top1_agreement, 1.0);
  // Bounds. For small logit errors e, KL(P||Q) ~ Var_P(e) / 2. The synthetic weights are bf16
  // numbers, so --quant bf16 holds them exactly (only f32 accumulation order differs): ~0. Q8_0's
  // relative weight error is ~1/(127 sqrt 3) ~ 0.5% rms and Q4_0's ~1/(8 sqrt 3) ~ 7% (16x), and
  // KL grows with the square (~250x): measured 3.1e-4 and 3.9e-2 nats mean over 256 steps. The
  // bounds leave ~10x room; a wrong scale, offset or nibble order gives KL of order 1.
  EXPECT_LT(r[1].mean_kl, 1e-6);
  EXPECT_LT(r[2].mean_kl, 3e-3);
  EXPECT_LT(r[3].mean_kl, 0.3);
  EXPECT_LT(r[2].mean_kl, r[3].mean_kl);
  EXPECT_GE(r[2].top1_agreement, 0.85);
  // The encoder's adapter output against the reference's: exact for the reference itself, bf16
  // rounding of bf16 numbers for --quant bf16 (~0), and for q8/q4 (whose encoder is Q8_0 weights
  // with int8 activations on AVX-512, else the bf16 GEMM) the rounding of weights and activations
  // to 8 bits per 32-block: relative errors ~0.5% per product, NMSE ~1e-4 over the few layers
  // of the tiny model. A wrong scale, offset or layout gives order 1.
  EXPECT_EQ(r[0].encoder_nmse, 0.0);
  EXPECT_LT(r[1].encoder_nmse, 1e-6);
  EXPECT_GE(r[2].encoder_nmse, 0.0);
  EXPECT_LT(r[2].encoder_nmse, 1e-2);
  EXPECT_LT(r[3].encoder_nmse, 1e-2);
  for (Quant q : {Quant::q8, Quant::q4}) {
    // The int8 prefill computes every row as decode does (row results do not depend on how many
    // rows a pass takes): the same KL to the last bit. The bf16-activation prefill differs from
    // both by activation rounding only, far below the weights' own error.
    const KlResult d = get(q, "decode"), b16 = get(q, "prefill-bf16");
    if (int8) {
      const KlResult i8 = get(q, "prefill-int8");
      EXPECT_EQ(i8.mean_kl, d.mean_kl) << quant_name(q);
      EXPECT_EQ(i8.top1_agreement, d.top1_agreement) << quant_name(q);
    }
    EXPECT_LT(b16.mean_kl, q == Quant::q8 ? 3e-3 : 0.3) << quant_name(q);
    EXPECT_LT(std::abs(b16.mean_kl - d.mean_kl), 0.5 * d.mean_kl + 1e-4) << quant_name(q);
  }
}

}  // namespace
}  // namespace stepaudio
