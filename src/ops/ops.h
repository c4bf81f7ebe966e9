// The tensor operations the model graphs call. Graph code (src/model/) uses only these functions;
// the scalar versions live in ops/generic/ and are the test oracle for later SIMD kernels.
//
// Conventions: activations are float32, row-major, one token/frame per row. Weights are WeightViews
// in the Hugging Face nn.Linear layout W[out][in] (y = x W^T + b), possibly bf16/f16 in place in an
// mmap; every product accumulates in float32. Kernels that take a ThreadPool partition over output
// rows/columns only, so results do not depend on the thread count.
// Thread-safety: functions are reentrant; a ThreadPool is used by one caller at a time.
#pragma once

#include <cstddef>

#include "ops/dtype.h"
#include "ops/thread_pool.h"

namespace stepaudio::ops {

// A 2-D weight matrix [rows][cols], row-major, of element type dtype. Not owning.
// fast: the kernels may round activations (to bf16 for the GEMM, to int8 blocks for quantized
// GEMV) instead of computing in float32 from exactly widened weights. Always true in effect for
// q8_0/q4_0; the loader sets it for the bf16 matrices of the --quant q8/q4 modes, never for
// --quant f32/bf16 (those stay reference-exact: f32 activations, f32 accumulation).
struct WeightView {
  DType dtype = DType::f32;
  const void* data = nullptr;
  size_t rows = 0, cols = 0;
  bool fast = false;
  // q8_0/q4_0 only: rows in the decode GEMV's 16-row interleaved groups (ops/repack.h); then
  // row_ptr() is valid only for the plain tail rows (use row_f32 or ops::copy_plain_row).
  bool packed = false;
  // q8_0/q4_0 only: every M takes the int8 semantics of ref::matmul_q (activations quantized per
  // 32-block, exact int32 block sums: the VNNI GEMM for prefill); false: M > kGemvMaxRows rounds
  // activations to bf16 for the bf16 GEMM instead. Set on the decoder's matrices by the loader
  // (LoadOptions::int8_prefill). With it, a row's result never depends on M (batched decode and
  // chunked prefill give the same numbers as one row at a time).
  bool int8_act = false;
  const char* row_ptr(size_t r) const {
    return static_cast<const char*>(data) + r * row_bytes(dtype, cols);
  }
  // Row r widened (or dequantized) to float32 into dst[cols] (ops/repack.cpp).
  void row_f32(size_t r, float* dst) const;
};

// y[M][N] = x[M][K] * W[N][K]^T (+ bias[N] when not null). W.cols == K, W.rows == N.
// Dispatches once per process to the best kernel for the CPU (ops/x86/, else the scalar twins in
// ops/generic). Per output the accumulation order is fixed, so results do not depend on the
// thread count; they may depend on M for fast/quantized weights (M <= kGemvMaxRows, or any M with
// W.int8_act: int8-quantized activations for q8_0/q4_0; else the bf16 GEMM).
void matmul(ThreadPool& pool, const float* x, size_t M, const WeightView& W, const float* bias,
            float* y);
// Activation rows that share one pass over the weights in the int8 kernels (a batched decode step
// of up to this many sessions reads each weight once; more rows go in tiles of this many).
inline constexpr size_t kGemvMaxRows = 8;
// Whether matmul(x[M], W) takes the int8 semantics of ref::matmul_q.
inline bool int8_path(const WeightView& W, size_t M) {
  return is_block_type(W.dtype) && (M <= kGemvMaxRows || W.int8_act);
}

// The portable scalar kernels (ops/generic/matmul.cpp): the fallback and the test oracle.
namespace ref {
// Exact: every weight widened to float32, float32 accumulation (any dtype; for q8_0/q4_0 the
// dequantized values q * d).
void matmul(ThreadPool& pool, const float* x, size_t M, const WeightView& W, const float* bias,
            float* y);
// The quantized-GEMV semantics for q8_0/q4_0 W: each row of x is quantized to int8 blocks of 32
// (scale max|x|/127, float32), block dot products are exact int32, and the row result is
// acc = fma(d_w[b] * d_x[b], isum[b], acc) over the blocks b in order, in float32 (ops/quant.h).
void matmul_q(ThreadPool& pool, const float* x, size_t M, const WeightView& W, const float* bias,
              float* y);
}  // namespace ref

// ---- Norms and element-wise ops. The pool versions split rows (norms) or 4096-float pieces over
// the threads and use AVX-512 where available; every row/element is computed by the same code
// whatever thread runs it and whatever M is, so results depend neither on the thread count nor on
// the batch (the decoder's fork-equals-scratch guarantee needs the latter). Inputs of under ~32 K
// floats run on the caller (a hand-off costs more). Rows of x and y are D floats, contiguous.

// y[M][D] = (x - mean) / sqrt(var + eps) * w + b per row (biased variance, as torch.nn.LayerNorm;
// b may be null).
void layer_norm(ThreadPool& pool, const float* x, size_t M, size_t D, const float* w,
                const float* b, float eps, float* y);
// x += r (r may be null), then y = layer_norm(x): a pre-norm block's residual add fused with the
// next norm, one pass over x instead of three. y may alias x or r (also in layer_norm).
void add_layer_norm(ThreadPool& pool, float* x, const float* r, size_t M, size_t D, const float* w,
                    const float* b, float eps, float* y);
// y[M][D] = x / sqrt(mean(x^2) + eps) * w per row (HF Qwen2RMSNorm, float32 math).
void rms_norm(ThreadPool& pool, const float* x, size_t M, size_t D, const float* w, float eps,
              float* y);
// x += r (r may be null), then y = rms_norm(x). y may alias x or r.
void add_rms_norm(ThreadPool& pool, float* x, const float* r, size_t M, size_t D, const float* w,
                  float eps, float* y);
namespace ref {  // the scalar twins: mean and variance accumulated in double
void layer_norm(const float* x, size_t M, size_t D, const float* w, const float* b, float eps,
                float* y);
void rms_norm(const float* x, size_t M, size_t D, const float* w, float eps, float* y);
}  // namespace ref

// Activations (SIMD where available, within a few float ulp of the scalar twins in ref::).
void gelu(float* x, size_t n);  // exact: 0.5 x (1 + erf(x / sqrt 2)), torch's default
void silu(float* x, size_t n);  // x * sigmoid(x)
namespace ref {
void gelu(float* x, size_t n);  // libm erff per element
void silu(float* x, size_t n);  // libm expf per element
}  // namespace ref
void relu(float* x, size_t n);
void mul(float* x, const float* y, size_t n);  // x *= y
void add(float* x, const float* y, size_t n);  // x += y
// Threaded versions, bit-identical to the one-thread functions above.
void gelu(ThreadPool& pool, float* x, size_t n);
void add(ThreadPool& pool, float* x, const float* y, size_t n);
void silu_mul(ThreadPool& pool, float* g, const float* u, size_t n);  // g = silu(g) * u

// In-place softmax of x[n] (max-subtracted; entries of -inf give 0).
void softmax(float* x, size_t n);

// HF rotate-half RoPE on x[n_heads][head_dim] for one position: pairs (i, i + head_dim/2) rotated
// by pos * inv_freq[i]; the angle is computed in float32 as transformers' Qwen2RotaryEmbedding
// does. The scalar twin of rope_rows.
void rope(float* x, size_t n_heads, size_t head_dim, size_t pos, const float* inv_freq);
// The rotation table of n positions: cs[i][0][j] = cos(pos[i] * inv_freq[j]), cs[i][1][j] = sin
// (same float32 angle as rope), j < head_dim / 2. Made once per forward, shared by every layer,
// q and k.
void rope_table(const size_t* pos, size_t n, size_t head_dim, const float* inv_freq, float* cs);
// rope() on n rows of x (row i at x + i * stride: n_heads heads of head_dim) with row i's angles
// from cs[i] (rope_table). Within a float ulp of rope() (which a compiler may contract to FMAs).
void rope_rows(ThreadPool& pool, float* x, size_t n, size_t stride, size_t n_heads, size_t head_dim,
               const float* cs);
namespace ref {  // one row of rope_rows, scalar
void rope_row(float* x, size_t n_heads, size_t head_dim, const float* cs);
}  // namespace ref

// Multi-head (grouped-query) attention.
//   q:   [n_q][q_stride], head h at columns h*head_dim     (n_heads heads)
//   k,v: [n_kv][kv_stride], KV head g at columns g*head_dim (n_kv_heads heads; query head h uses
//        KV head h / (n_heads / n_kv_heads), as HF repeat_kv)
//   out: [n_q][n_heads*head_dim]
// Score = scale * q.k + key_bias[j] (key_bias may be null). causal: query i sees keys
// j <= q_pos0 + i (q_pos0 = position of the first query inside the key sequence).
// fast: a fused kernel may run (AVX-512: flash attention with a polynomial exponential, and where
// the CPU's bf16 dot is faster than f32 FMA, q, k, v and the probabilities rounded to bf16; the
// encoder under --quant q8/q4, whose linears already round activations); never row-exact, so
// only for callers without a prefix to fork (not the decoder). Ignored where no such kernel exists.
struct AttentionShape {
  size_t n_q, n_kv, n_heads, n_kv_heads, head_dim, q_stride, kv_stride;
  bool fast = false;
};
void attention(ThreadPool& pool, const AttentionShape& s, const float* q, const float* k,
               const float* v, float scale, const float* key_bias, bool causal, size_t q_pos0,
               float* out);
namespace ref {  // the scalar twin (double accumulation of P V)
void attention(ThreadPool& pool, const AttentionShape& s, const float* q, const float* k,
               const float* v, float scale, const float* key_bias, bool causal, size_t q_pos0,
               float* out);
}  // namespace ref

// 1-D convolution (torch.nn.Conv1d, padding p on both sides, no dilation) on time-major data:
//   x [T_in][C_in], W viewed as [C_out][C_in * ksize] (torch's [C_out][C_in][k] memory),
//   bias[C_out] y [T_out][C_out], T_out = (T_in + 2p - ksize) / stride + 1.
size_t conv1d_out_len(size_t t_in, size_t ksize, size_t stride, size_t pad);
void conv1d(ThreadPool& pool, const float* x, size_t t_in, size_t c_in, const WeightView& W,
            const float* bias, size_t ksize, size_t stride, size_t pad, float* y);

}  // namespace stepaudio::ops
