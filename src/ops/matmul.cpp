// ops::matmul, ops::attention and the activations' dispatch: the AVX-512 kernels when the CPU has
// them (decided once, ops/cpu.h), else the AVX2 matmul and activations (attention stays scalar
// there), else the portable scalar twins. On aarch64: the NEON matmul and attention of ops/arm (the
// activations stay scalar there). f16 weights (rare: only f16 checkpoints, widened at load by the
// loader for every quant) always take the scalar path.
#include "ops/arm/kernels.h"
#include "ops/cpu.h"
#include "ops/ops.h"
#include "ops/x86/kernels.h"

namespace stepaudio::ops {

void matmul(ThreadPool& pool, const float* x, size_t M, const WeightView& W, const float* bias,
            float* y) {
#if defined(__x86_64__)
  if (cpu_isa() == Isa::avx512 && W.dtype != DType::f16)
    return x86::matmul_avx512(pool, x, M, W, bias, y);
  // The AVX2 kernels read plain rows; packed weights (made only for AVX-512 CPUs, but a test may
  // force the ISA) take the scalar twins, which unpack row by row.
  if (cpu_isa() == Isa::avx2 && W.dtype != DType::f16 && !W.packed)
    return x86::matmul_avx2(pool, x, M, W, bias, y);
#elif defined(__aarch64__)
  if (cpu_isa() != Isa::generic && W.dtype != DType::f16)
    return arm::matmul_neon(pool, x, M, W, bias, y, cpu_isa() == Isa::neon_dot);
#endif
  if (int8_path(W, M)) return ref::matmul_q(pool, x, M, W, bias, y);
  ref::matmul(pool, x, M, W, bias, y);
}

void attention(ThreadPool& pool, const AttentionShape& s, const float* q, const float* k,
               const float* v, float scale, const float* key_bias, bool causal, size_t q_pos0,
               float* out) {
#if defined(__x86_64__)
  if (cpu_isa() == Isa::avx512)
    return x86::attention_avx512(pool, s, q, k, v, scale, key_bias, causal, q_pos0, out);
#elif defined(__aarch64__)
  if (cpu_isa() != Isa::generic)
    return arm::attention_neon(pool, s, q, k, v, scale, key_bias, causal, q_pos0, out);
#endif
  ref::attention(pool, s, q, k, v, scale, key_bias, causal, q_pos0, out);
}

void gelu(float* x, size_t n) {
#if defined(__x86_64__)
  if (cpu_isa() == Isa::avx512) return x86::gelu_avx512(x, n);
  if (cpu_isa() == Isa::avx2) return x86::gelu_avx2(x, n);
#endif
  ref::gelu(x, n);
}

void silu(float* x, size_t n) {
#if defined(__x86_64__)
  if (cpu_isa() == Isa::avx512) return x86::silu_avx512(x, n);
  if (cpu_isa() == Isa::avx2) return x86::silu_avx2(x, n);
#endif
  ref::silu(x, n);
}

}  // namespace stepaudio::ops
