// Block quantization of weight rows (8-bit and 4-bit) and of activation rows for the int8 GEMV.
//
// Layout (ggml's Q8_0 / Q4_0, so the GGUF files we write carry standard type ids): a row of K
// weights is K/32 consecutive blocks; each block holds one IEEE-half scale d and 32 codes.
//   BlockQ8_0 (34 B, 8.5 bits/weight): w[i] = d * qs[i], qs in [-127, 127], d = max|w| / 127.
//   BlockQ4_0 (18 B, 4.5 bits/weight): w[i] = d * (q[i] - 8), q in [0, 15], d = max_abs_signed / -8
//     (the value of largest magnitude maps exactly to code 0, as ggml); byte j of qs holds element
//     j in its low nibble and element j + 16 in its high nibble, so one 16-byte load unpacks to the
//     32 codes in order with a shift and a mask.
// Why 32: a block is exactly one 256-bit VNNI operand (32 int8), the f16 scale costs 0.5
// bit/weight, and it bounds the error of outliers to their block; rows stay contiguous so a GEMV
// streams each weight row exactly once. Activations for the int8 GEMV: per block of 32, d = max|x|
// / 127 (float32), q = round(x / d). Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>

namespace stepaudio::ops {

inline constexpr size_t kQBlock = 32;

struct BlockQ8_0 {
  uint16_t d;  // f16 scale
  int8_t qs[kQBlock];
};
struct BlockQ4_0 {
  uint16_t d;  // f16 scale
  uint8_t qs[kQBlock / 2];
};
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18, "packed ggml block layouts");

// n % 32 == 0.
void quantize_row_q8_0(const float* x, BlockQ8_0* y, size_t n);
void quantize_row_q4_0(const float* x, BlockQ4_0* y, size_t n);
void dequantize_row_q8_0(const BlockQ8_0* x, float* y, size_t n);
void dequantize_row_q4_0(const BlockQ4_0* x, float* y, size_t n);

// An activation row quantized for the int8 dot products: nb = n/32 blocks.
//   qs[n] int8 codes, d[nb] float scales, sum[nb] = sum of the block's codes (for Q4_0's -8
//   offset).
void quantize_act_q8(const float* x, size_t n, int8_t* qs, float* d, int32_t* sum);

// Scalar reference dot products of one weight row with a quantized activation row (n elements):
// over blocks in order, acc = fma(d_w * d_x, exact_int32_dot, acc) in float32. Why fma: one
// rounding per block that compilers cannot contract differently (GCC fuses a * b + c in C++ when
// FMA is enabled), so the packed AVX-512 GEMV reproduces it bit for bit.
float vec_dot_q8_0(const BlockQ8_0* w, const int8_t* xq, const float* xd, size_t n);
float vec_dot_q4_0(const BlockQ4_0* w, const int8_t* xq, const float* xd, size_t n);

}  // namespace stepaudio::ops
