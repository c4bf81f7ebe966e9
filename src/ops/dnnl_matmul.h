// Matrix products through oneDNN (Debian's libdnnl, optional at build time: STEPAUDIO_DNNL): the
// prefill / encoder GEMM with fast (bf16-rounded or quantized) weights. Why: its JIT GEMMs reach
// ~80% of this CPU's peaks at our shapes (docs/PERF.md), 3-4x our own register-tiled GEMM, which
// re-reads activations from L2/L3. Weights stay ours (bf16 in place, or Q8_0/Q4_0 dequantized to a
// bf16 panel by the caller), so oneDNN only ever sees plain strided matrices.
//
// Threading: oneDNN's CPU runtime here is OpenMP. We do not hand it the machine: each call runs on
// the calling thread alone (OpenMP team of one), and the caller's ThreadPool splits the work into
// fixed pieces. One pool, no oversubscription, and since every piece has the same shape whatever
// the thread count, results do not depend on it.
// Thread-safety: reentrant (per-thread primitives, compiled per shape and kept in a small LRU).
#pragma once

#include <cstddef>
#include <cstdint>

namespace stepaudio::ops::dnnl_gemm {

// True when built with oneDNN, STEPAUDIO_DNNL is not "0" in the environment (the switch lets
// benchmarks compare with the built-in kernels in one binary) and no call has failed.
bool enabled();

// A strided matrix operand: element (r, c) at data + r * rs + c * cs (elements, not bytes). a must
// be row-major (cs == 1); b row-major (cs == 1) or column-major (rs == 1).
struct Operand {
  const void* data;
  size_t rs, cs;
};

// c[m][n] (row stride ldc floats) = sum_k a(m, k) * b(k, n) for m < M, n < N, f32 accumulation;
// a and b both bf16 (bf16 true) or both f32. Runs on the calling thread. Returns false when
// oneDNN cannot run it on this CPU (the caller then computes it itself).
bool matmul(bool bf16, size_t M, size_t N, size_t K, Operand a, Operand b, float* c, size_t ldc);

}  // namespace stepaudio::ops::dnnl_gemm
