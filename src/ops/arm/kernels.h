// Entry points of the aarch64 NEON kernels. NEON is baseline on aarch64, so they need no target
// attributes except the int8 dot-product GEMV (ARMv8.2 ASIMDDP), compiled with a per-function
// target and called only when ops::cpu_isa() == Isa::neon_dot. Semantics are those of the scalar
// twins in ops/generic (see ops.h), within the tolerances the unit tests derive.
// Thread-safety: reentrant.
#pragma once

#if defined(__aarch64__)
#include <cstddef>

#include "ops/ops.h"

namespace stepaudio::ops::arm {

// y = x W^T + b for W of dtype f32, bf16, q8_0 or q4_0 (not f16):
// - f32/bf16 (fast or not), and q8_0/q4_0 with M > kGemvMaxRows: the exact path of ref::matmul
//   (weights widened or dequantized exactly to f32, f32 FMA);
// - q8_0/q4_0 with M <= kGemvMaxRows: the int8 GEMV of ref::matmul_q, with `sdot` when dot is
//   true (Isa::neon_dot), else with widening int8 multiplies (exact as well).
void matmul_neon(ThreadPool& pool, const float* x, size_t M, const WeightView& W, const float* bias,
                 float* y, bool dot);

// ops::attention: the scalar twin's algorithm with NEON score dots and f32 P V sums (any
// Isa::neon*).
void attention_neon(ThreadPool& pool, const AttentionShape& s, const float* q, const float* k,
                    const float* v, float scale, const float* key_bias, bool causal, size_t q_pos0,
                    float* out);

}  // namespace stepaudio::ops::arm
#endif
