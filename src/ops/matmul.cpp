// ops::matmul dispatch: the AVX-512 kernels when the CPU has them (decided once, ops/cpu.h), else
// the portable scalar twins. f16 weights (rare: only f16 checkpoints, widened at load by the
// loader for every quant) always take the scalar path.
#include "ops/cpu.h"
#include "ops/ops.h"
#include "ops/x86/kernels.h"

namespace stepaudio::ops {

void matmul(ThreadPool& pool, const float* x, size_t M, const WeightView& W, const float* bias,
            float* y) {
#if defined(__x86_64__)
  if (cpu_isa() == Isa::avx512 && W.dtype != DType::f16)
    return x86::matmul_avx512(pool, x, M, W, bias, y);
#endif
  if (is_block_type(W.dtype) && M <= kGemvMaxRows) return ref::matmul_q(pool, x, M, W, bias, y);
  ref::matmul(pool, x, M, W, bias, y);
}

}  // namespace stepaudio::ops
