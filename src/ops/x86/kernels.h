// Entry points of the x86 SIMD kernels (compiled with per-function target attributes, so the rest
// of the library stays portable; callers check ops::cpu_isa() first). Semantics are those of the
// scalar twins in ops/generic (see ops.h), within the tolerances the unit tests derive.
// Thread-safety: reentrant.
#pragma once

#if defined(__x86_64__)
#include <cstddef>
#include <cstdint>

#include "ops/ops.h"

namespace stepaudio::ops::x86 {

// y = x W^T + b for W of dtype f32, bf16, q8_0 or q4_0 (needs Isa::avx512).
void matmul_avx512(ThreadPool& pool, const float* x, size_t M, const WeightView& W,
                   const float* bias, float* y);

// The decode GEMV (M <= kGemvMaxRows) for packed q8_0/q4_0 W (ops/repack.h; gemv_avx512.cpp):
// bit-identical to ref::matmul_q.
void gemv_packed_avx512(ThreadPool& pool, const float* x, size_t M, const WeightView& W,
                        const float* bias, float* y);

// The same for CPUs with AVX2 + FMA + F16C (Isa::avx2; matmul_avx2.cpp): exact f32 path for
// f32/bf16 (and block types with M > kGemvMaxRows), int8 GEMV for q8_0/q4_0.
void matmul_avx2(ThreadPool& pool, const float* x, size_t M, const WeightView& W, const float* bias,
                 float* y);

// Rows [n0, n0 + count) of a q8_0/q4_0 W (plain or packed) -> bf16 dst[count][ld]: the prefill
// GEMM's panels (panel_avx512.cpp). Each weight is bf16(float(q) * d) (the scalar dequantization
// rounded to nearest even). Whole packed 16-row groups go in one pass over the group's bytes;
// other rows one at a time through dequant_row_bf16_avx512 (needs Isa::avx512).
void dequant_rows_bf16_avx512(const WeightView& W, size_t n0, size_t count, uint16_t* dst,
                              size_t ld);
void dequant_row_bf16_avx512(const WeightView& W, size_t n, uint16_t* dst);

// Machine-limit probes (ops/probes.h): operations executed by `iters` iterations on this thread.
double fma_f32_loop_avx512(size_t iters);               // returns flops
double dot_bf16_loop_avx512(size_t iters);              // returns flops (2 per multiply-add)
double dot_int8_loop_avx512(size_t iters);              // returns ops (2 per multiply-add)
uint64_t read_sum_avx512(const void* p, size_t bytes);  // streams bytes, returns a checksum
double fma_f32_loop_avx2(size_t iters);                 // Isa::avx2 (probes_avx2.cpp)
double dot_int8_loop_avx2(size_t iters);                // the AVX2 GEMV's u8 x s8 block step

// ops::attention (needs Isa::avx512).
void attention_avx512(ThreadPool& pool, const AttentionShape& s, const float* q, const float* k,
                      const float* v, float scale, const float* key_bias, bool causal,
                      size_t q_pos0, float* out);
// Its fused path for AttentionShape::fast without a causal mask (flash_attention_avx512.cpp), in
// either element format: returns false, writing nothing, for shapes it does not take (head_dim
// not a multiple of 16 or over 128, a non-finite key bias).
enum class FlashFormat { bf16, f32 };
bool flash_attention_avx512(ThreadPool& pool, const AttentionShape& s, const float* q,
                            const float* k, const float* v, float scale, const float* key_bias,
                            FlashFormat format, float* out);
// The faster format on this CPU, measured once per process (thread-safe): f32 unless the bf16 dot
// probe runs > 1.3x the f32 FMA probe's flops; STEPAUDIO_FLASH_FORMAT=f32|bf16 forces one.
FlashFormat preferred_flash_format();

// y[m][n0 + j] += bias[n0 + j] for m < M, j < nc (y rows N apart): the bias of one column chunk
// of the chunked GEMMs, added after the product.
inline void add_bias_chunk(float* y, size_t M, size_t N, size_t n0, size_t nc, const float* bias) {
  for (size_t m = 0; m < M; ++m)
    for (size_t j = 0; j < nc; ++j) y[m * N + n0 + j] += bias[n0 + j];
}

// ops::gelu and ops::silu (needs Isa::avx512).
void gelu_avx512(float* x, size_t n);
void silu_avx512(float* x, size_t n);
void silu_mul_avx512(float* g, const float* u, size_t n);  // g = silu(g) * u

// The same activations for Isa::avx2 (elementwise_avx2.cpp).
void gelu_avx2(float* x, size_t n);
void silu_avx2(float* x, size_t n);
void silu_mul_avx2(float* g, const float* u, size_t n);

// Norms, residual adds and RoPE over a range of rows (rowwise_avx512.cpp; ops/rowwise.cpp threads
// them): ops::add_layer_norm / add_rms_norm (r may be null), ops::add, ops::rope_rows.
void add_layer_norm_avx512(float* x, const float* r, size_t M, size_t D, const float* w,
                           const float* b, float eps, float* y);
void add_rms_norm_avx512(float* x, const float* r, size_t M, size_t D, const float* w, float eps,
                         float* y);
void add_avx512(float* x, const float* y, size_t n);
void rope_rows_avx512(float* x, size_t n, size_t stride, size_t n_heads, size_t head_dim,
                      const float* cs);

}  // namespace stepaudio::ops::x86
#endif
