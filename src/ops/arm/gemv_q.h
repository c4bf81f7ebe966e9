// The int8 GEMV of ref::matmul_q for q8_0/q4_0 weights (M <= kGemvMaxRows), NEON, as a template
// over the 32-element int8 dot product: `sdot` (ARMv8.2 ASIMDDP) or widening multiplies. Included
// by matmul_neon.cpp (widening, baseline NEON) and matmul_neon_dot.cpp (sdot, compiled for
// +dotprod); everything here has internal linkage so the two compilations never merge (the
// baseline one must not pick up code the compiler vectorised with sdot).
//
// Semantics: x rows quantized by the twin's own quantize_act_q8 (identical codes and scales); per
// block the int32 dot product is exact in both dot flavours (|w|, |x| <= 127: a product fits
// int16, sums are int32); blocks are taken 4 at a time, their exact sums converted to f32 (exact:
// |sum| <= 32 * 127^2 < 2^24), scaled by d_w * d_x and accumulated in one f32x4 per x row (lane =
// block mod 4), reduced at the end, plus a scalar sum of the last nb mod 4 blocks. Only the float
// combination of the nb block terms differs from the twin (its one running sum), which the unit
// tests bound. Each W row is streamed once for all M x rows.
// Determinism: work is split over W rows; each output's order is fixed.
#pragma once

#if defined(__aarch64__)
#include <arm_neon.h>

#include <algorithm>
#include <vector>

#include "ops/dtype.h"
#include "ops/ops.h"
#include "ops/quant.h"

namespace stepaudio::ops::arm {

namespace detail {
// The sdot instantiation (matmul_neon_dot.cpp; needs Isa::neon_dot).
void gemv_q_sdot(ThreadPool& pool, const float* x, size_t M, const WeightView& W, const float* bias,
                 float* y);
}  // namespace detail

namespace {

// One block's 32 weight codes as signed int8 (Q4_0: nibble - 8, low nibbles are elements 0..15).
template <bool kQ8>
inline void load_block(const char* row, size_t b, int8x16_t& lo, int8x16_t& hi) {
  if constexpr (kQ8) {
    const BlockQ8_0& blk = reinterpret_cast<const BlockQ8_0*>(row)[b];
    lo = vld1q_s8(blk.qs);
    hi = vld1q_s8(blk.qs + 16);
  } else {
    const BlockQ4_0& blk = reinterpret_cast<const BlockQ4_0*>(row)[b];
    const uint8x16_t raw = vld1q_u8(blk.qs);
    const int8x16_t eight = vdupq_n_s8(8);
    lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(raw, vdupq_n_u8(15))), eight);
    hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(raw, 4)), eight);
  }
}

template <bool kQ8>
inline uint16_t block_scale(const char* row, size_t b) {
  if constexpr (kQ8)
    return reinterpret_cast<const BlockQ8_0*>(row)[b].d;
  else
    return reinterpret_cast<const BlockQ4_0*>(row)[b].d;
}

// y[m][n] for the W rows [n0, n1); Dot::run(w_lo, w_hi, x) = int32x4 partial sums of one block.
// M is a template argument so the m loops unroll and the accumulators stay in registers.
template <class Dot, bool kQ8, size_t M>
void gemv_rows(const WeightView& W, const int8_t* xq, const float* xd, const float* bias, float* y,
               size_t n0, size_t n1) {
  const size_t N = W.rows, K = W.cols, nb = K / kQBlock;
  for (size_t n = n0; n < n1; ++n) {
    const char* row = W.row_ptr(n);
    float32x4_t acc[M];
    float tail[M];
    for (size_t m = 0; m < M; ++m) acc[m] = vdupq_n_f32(0.0f), tail[m] = 0.0f;
    size_t b = 0;
    for (; b + 4 <= nb; b += 4) {
      int8x16_t wl[4], wh[4];
      uint16_t h[4];
      for (int i = 0; i < 4; ++i) {
        load_block<kQ8>(row, b + i, wl[i], wh[i]);
        h[i] = block_scale<kQ8>(row, b + i);
      }
      const float32x4_t dw = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h)));  // exact widening
      for (size_t m = 0; m < M; ++m) {
        const int8_t* xb = xq + m * K + b * kQBlock;
        int32x4_t s[4];
        for (int i = 0; i < 4; ++i) s[i] = Dot::run(wl[i], wh[i], xb + i * kQBlock);
        // Lane i of isum = the exact sum of block b + i.
        const int32x4_t isum = vpaddq_s32(vpaddq_s32(s[0], s[1]), vpaddq_s32(s[2], s[3]));
        const float32x4_t sc = vmulq_f32(dw, vld1q_f32(xd + m * nb + b));
        acc[m] = vfmaq_f32(acc[m], vcvtq_f32_s32(isum), sc);
      }
    }
    for (; b < nb; ++b) {
      int8x16_t wl, wh;
      load_block<kQ8>(row, b, wl, wh);
      const float dw = f16_to_f32(block_scale<kQ8>(row, b));
      for (size_t m = 0; m < M; ++m) {
        const int32_t is = vaddvq_s32(Dot::run(wl, wh, xq + m * K + b * kQBlock));
        tail[m] += dw * xd[m * nb + b] * static_cast<float>(is);
      }
    }
    const float bn = bias ? bias[n] : 0.0f;
    for (size_t m = 0; m < M; ++m) y[m * N + n] = (vaddvq_f32(acc[m]) + tail[m]) + bn;
  }
}

template <class Dot>
void gemv_q(ThreadPool& pool, const float* x, size_t M, const WeightView& W, const float* bias,
            float* y) {
  if (M == 0) return;
  const size_t K = W.cols, nb = K / kQBlock;
  std::vector<int8_t> xq(M * K);  // [M][K] codes
  std::vector<float> xd(M * nb);  // [M][nb] scales
  for (size_t m = 0; m < M; ++m)
    quantize_act_q8(x + m * K, K, xq.data() + m * K, xd.data() + m * nb, nullptr);
  using Rows = void (*)(const WeightView&, const int8_t*, const float*, const float*, float*,
                        size_t, size_t);
  // Tiles of up to 4 rows (the NEON register file holds 4 accumulators and a block's weights);
  // a batched decode step of more sessions re-reads each weight row from L1 per tile.
  constexpr size_t kTile = 4;
  static constexpr Rows kRows[2][kTile] = {
      {gemv_rows<Dot, false, 1>, gemv_rows<Dot, false, 2>, gemv_rows<Dot, false, 3>,
       gemv_rows<Dot, false, 4>},
      {gemv_rows<Dot, true, 1>, gemv_rows<Dot, true, 2>, gemv_rows<Dot, true, 3>,
       gemv_rows<Dot, true, 4>}};
  pool.parallel_for(W.rows, [&](size_t n0, size_t n1) {
    for (size_t m0 = 0; m0 < M; m0 += kTile) {
      const size_t mt = std::min(kTile, M - m0);
      kRows[W.dtype == DType::q8_0][mt - 1](W, xq.data() + m0 * K, xd.data() + m0 * nb, bias,
                                            y + m0 * W.rows, n0, n1);
    }
  });
}

}  // namespace
}  // namespace stepaudio::ops::arm
#endif
