// Element types of weights and their conversions to float32.
// bf16 = the upper 16 bits of an IEEE float32 (widening is exact); f16 = IEEE half.
// q8_0 / q4_0 = blocks of 32 consecutive elements of a row with one f16 scale each (ggml's Q8_0 and
// Q4_0 layouts, see ops/quant.h); a row of such a matrix is cols/32 blocks (cols % 32 == 0).
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace stepaudio::ops {

enum class DType { f32, bf16, f16, q8_0, q4_0 };

// Bytes of one element (plain types only; block types have no per-element size).
inline size_t dtype_size(DType t) {
  return t == DType::f32 ? 4 : 2;
}
inline bool is_block_type(DType t) {
  return t == DType::q8_0 || t == DType::q4_0;
}
// Bytes of one row of n elements (n % 32 == 0 for block types).
size_t row_bytes(DType t, size_t n);
const char* dtype_name(DType t);

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even, as torch's .to(torch.bfloat16); NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float f16_to_f32(uint16_t h);
// Round to nearest even; overflow -> +-inf (scales never overflow: |x| <= 65504 by construction).
uint16_t f32_to_f16(float f);

// dst[i] = widen(src[i]) for n elements of type t (block types: dequantize, n % 32 == 0).
void to_f32(DType t, const void* src, float* dst, size_t n);

}  // namespace stepaudio::ops
