// ops::matmul on aarch64 NEON (baseline: every aarch64 CPU). Two paths:
//
// 1. Exact (f32/bf16 weights, fast or not, and q8_0/q4_0 with M > kGemvMaxRows): the semantics of
//    ref::matmul: f32 activations, bf16 widened exactly (a shift into the top half), quantized rows
//    dequantized exactly (q * d) into a [4][K] f32 panel per tile, f32 FMA. Register tile of up to
//    4 x-rows x 4 W-rows (16 q-register accumulators of 4 lanes, 8 loads per 16 FMA; aarch64 has
//    32 vector registers); the same tile serves decode (M <= 4: each weight row streamed once) and
//    prefill (the 4 W rows stay in L1/L2 while every x tile passes). There is no bf16 GEMM here:
//    BFDOT/BFMMLA (ARMv8.6) would be a later kernel, with the `fast` rounding of the AVX-512 one.
// 2. q8_0/q4_0 with M <= kGemvMaxRows: the int8 GEMV of ref::matmul_q (gemv_q.h), `sdot` on
//    CPUs with ASIMDDP (matmul_neon_dot.cpp), else widening multiplies (smull + sadalp) here.
// Determinism: every output is accumulated in its own register over K in a fixed order (lanes =
// k mod 4, then a fixed horizontal sum, then the K mod 4 tail) whatever tile or thread computes
// it, and work is split over fixed 4-row tiles of W, so results do not depend on the thread count
// (nor, on this path, on M).
#if defined(__aarch64__)
#include <arm_neon.h>

#include <algorithm>
#include <vector>

#include "ops/arm/gemv_q.h"
#include "ops/arm/kernels.h"
#include "ops/quant.h"

namespace stepaudio::ops::arm {

namespace {
constexpr size_t kTile = 4;

template <bool kBf16>
inline float32x4_t load4(const char* row, size_t k) {
  if constexpr (kBf16)
    return vreinterpretq_f32_u32(
        vshll_n_u16(vld1_u16(reinterpret_cast<const uint16_t*>(row) + k), 16));
  else
    return vld1q_f32(reinterpret_cast<const float*>(row) + k);
}
template <bool kBf16>
inline float load1(const char* row, size_t k) {
  return kBf16 ? bf16_to_f32(reinterpret_cast<const uint16_t*>(row)[k])
               : reinterpret_cast<const float*>(row)[k];
}

// out[i][j] = x row i (ldx floats apart) . w[j], i < MR, j < 4.
template <bool kBf16, int MR>
void tile_exact(const float* x, size_t ldx, const char* const* w, size_t K, float* out) {
  // Every loop over i < MR and j < 4 is unrolled, so acc lives in registers (16 + 4 + 1 of the 32).
  float32x4_t acc[MR][kTile];
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (size_t j = 0; j < kTile; ++j) acc[i][j] = vdupq_n_f32(0.0f);
  size_t k = 0;
  for (; k + 4 <= K; k += 4) {
    float32x4_t wv[kTile];
#pragma GCC unroll 4
    for (size_t j = 0; j < kTile; ++j) wv[j] = load4<kBf16>(w[j], k);
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      const float32x4_t xv = vld1q_f32(x + i * ldx + k);
#pragma GCC unroll 4
      for (size_t j = 0; j < kTile; ++j) acc[i][j] = vfmaq_f32(acc[i][j], xv, wv[j]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (size_t j = 0; j < kTile; ++j) out[i * kTile + j] = vaddvq_f32(acc[i][j]);
  for (int i = 0; i < MR; ++i)
    for (size_t j = 0; j < kTile; ++j) {
      float s = out[i * kTile + j];
      for (size_t t = k; t < K; ++t) s += x[i * ldx + t] * load1<kBf16>(w[j], t);
      out[i * kTile + j] = s;
    }
}

template <bool kBf16>
void tile_rows(const float* x, size_t K, int mr, const char* const* w, float* out) {
  switch (mr) {
    case 1:
      return tile_exact<kBf16, 1>(x, K, w, K, out);
    case 2:
      return tile_exact<kBf16, 2>(x, K, w, K, out);
    case 3:
      return tile_exact<kBf16, 3>(x, K, w, K, out);
    default:
      return tile_exact<kBf16, 4>(x, K, w, K, out);
  }
}

void matmul_exact(ThreadPool& pool, const float* x, size_t M, const WeightView& W,
                  const float* bias, float* y) {
  const size_t N = W.rows, K = W.cols;
  const size_t tiles = (N + kTile - 1) / kTile;
  pool.parallel_for(tiles, [&](size_t t0, size_t t1) {
    const bool block = is_block_type(W.dtype), bf = W.dtype == DType::bf16;
    std::vector<float> panel(block ? kTile * K : 0);  // [4][K] dequantized rows
    float out[kTile * kTile];
    for (size_t t = t0; t < t1; ++t) {
      const size_t n = t * kTile, nr = std::min(kTile, N - n);
      // A short last tile repeats its last row (computed, never stored): one tile shape for all.
      const char* w[kTile];
      for (size_t j = 0; j < kTile; ++j) {
        const size_t r = std::min(j, nr - 1);
        if (block) {
          if (j < nr) W.row_f32(n + j, panel.data() + j * K);
          w[j] = reinterpret_cast<const char*>(panel.data() + r * K);
        } else {
          w[j] = W.row_ptr(n + r);
        }
      }
      for (size_t m = 0; m < M; m += kTile) {
        const int mr = static_cast<int>(std::min(kTile, M - m));
        (bf ? tile_rows<true> : tile_rows<false>)(x + m * K, K, mr, w, out);
        for (int i = 0; i < mr; ++i)
          for (size_t j = 0; j < nr; ++j)
            y[(m + i) * N + n + j] = out[i * kTile + j] + (bias ? bias[n + j] : 0.0f);
      }
    }
  });
}

// The baseline int8 block dot: 8x8 -> 16-bit products (|p| <= 127^2 fits), pairwise-added into
// int32 lanes (sadalp): exact.
struct WidenDot {
  static int32x4_t run(int8x16_t wl, int8x16_t wh, const int8_t* x) {
    const int8x16_t xl = vld1q_s8(x), xh = vld1q_s8(x + 16);
    int32x4_t s = vpaddlq_s16(vmull_s8(vget_low_s8(wl), vget_low_s8(xl)));
    s = vpadalq_s16(s, vmull_high_s8(wl, xl));
    s = vpadalq_s16(s, vmull_s8(vget_low_s8(wh), vget_low_s8(xh)));
    return vpadalq_s16(s, vmull_high_s8(wh, xh));
  }
};
}  // namespace

void matmul_neon(ThreadPool& pool_in, const float* x, size_t M, const WeightView& W,
                 const float* bias, float* y, bool dot) {
  static ThreadPool serial(1);  // as the x86 kernels: tiny products stay on the caller
  ThreadPool& pool = M * W.rows * W.cols < (size_t{1} << 16) ? serial : pool_in;
  if (int8_path(W, M)) {
    if (dot) return detail::gemv_q_sdot(pool, x, M, W, bias, y);
    return gemv_q<WidenDot>(pool, x, M, W, bias, y);
  }
  matmul_exact(pool, x, M, W, bias, y);
}

}  // namespace stepaudio::ops::arm
#endif
