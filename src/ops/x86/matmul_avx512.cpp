// AVX-512 matmul kernels (Zen 4 / Sapphire Rapids: F, BW, VL, DQ, VNNI, BF16). Three paths:
//
// 1. Exact (f32 or bf16 weights, WeightView::fast false): f32 activations, bf16 widened exactly,
//    f32 FMA. Register tile of up to 4 x-rows x 4 W-rows (16 zmm accumulators, 8 loads per 16 FMA);
//    the same tile serves decode (M <= 4: each weight row streamed once) and prefill (the 4 W rows
//    stay in L1/L2 while every x tile passes).
// 2. Fast GEMM (M > kGemvMaxRows, W bf16 with fast, or q8_0/q4_0): activations rounded to bf16
//    once, quantized W rows dequantized to a bf16 panel of kChunk rows, then bf16 dot products
//    (`vdpbf16ps`, 2 flops x 32 per instruction, twice the f32 FMA rate) by oneDNN when built in
//    (ops/dnnl_matmul.h), else by our 4x4 register tile. Per-block scales are applied while
//    dequantizing, so the inner loop is pure dot products (no per-block int->float conversions as
//    an int8 GEMM with 32-blocks would need).
// 3. Quantized GEMV (M <= kGemvMaxRows, q8_0/q4_0): activations quantized to int8 blocks, one
//    256-bit `vpdpbusd` per block of 32 (u8 x s8): for Q8_0 the sign trick (|x| as the unsigned
//    operand, sign(w, x) as the signed one), for Q4_0 the codes 0..15 are the unsigned operand and
//    the -8 offset enters as -8 * sum(x codes) in the accumulator's first lane.
// Determinism: every output is accumulated in its own register over K in a fixed order and reduced
// in a fixed order, whatever tile or thread computes it; work is split over fixed 4-row tiles of W
// (the fast GEMM: fixed kChunk-row chunks, each one call of the same shape).
#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "ops/dnnl_matmul.h"
#include "ops/quant.h"
#include "ops/repack.h"
#include "ops/scratch.h"
#include "ops/x86/avx512_target.h"
#include "ops/x86/kernels.h"

namespace stepaudio::ops::x86 {

namespace {
constexpr int kTile = 4;

// ---------------------------------------------------------------- 1. exact (f32 activations)
template <bool kBf16>
SA_AVX512 inline __m512 load_w16(const char* row, size_t k, __mmask16 m) {
  if constexpr (kBf16) {
    const __m256i h = _mm256_maskz_loadu_epi16(m, reinterpret_cast<const uint16_t*>(row) + k);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  } else {
    return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(row) + k);
  }
}

// out[MR][NR] = x[MR][K] . w[NR][K] (x rows ldx floats apart, w rows ldw bytes apart).
template <bool kBf16, int MR, int NR>
SA_AVX512 void tile_exact(const float* x, size_t ldx, const char* w, size_t ldw, size_t K,
                          float* out) {
  __m512 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  size_t k = 0;
  auto step = [&](__mmask16 m) SA_AVX512_STEP {
    __m512 wv[NR];
    for (int j = 0; j < NR; ++j) wv[j] = load_w16<kBf16>(w + j * ldw, k, m);
    for (int i = 0; i < MR; ++i) {
      const __m512 xv = _mm512_maskz_loadu_ps(m, x + i * ldx + k);
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  };
  for (; k + 16 <= K; k += 16) step(0xffff);
  if (k < K) step(static_cast<__mmask16>((1u << (K - k)) - 1));
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) out[i * NR + j] = _mm512_reduce_add_ps(acc[i][j]);
}

// ---------------------------------------------------------------- 2. bf16-dot GEMM
template <int MR, int NR>
SA_AVX512 void tile_bf16(const uint16_t* x, size_t ldx, const uint16_t* w, size_t ldw, size_t K,
                         float* out) {
  __m512 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  size_t k = 0;
  auto step = [&](__mmask32 m) SA_AVX512_STEP {
    __m512bh wv[NR];
    for (int j = 0; j < NR; ++j) wv[j] = (__m512bh)_mm512_maskz_loadu_epi16(m, w + j * ldw + k);
    for (int i = 0; i < MR; ++i) {
      const __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(m, x + i * ldx + k);
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv, wv[j]);
    }
  };
  for (; k + 32 <= K; k += 32) step(0xffffffffu);
  if (k < K) step(static_cast<__mmask32>((1ull << (K - k)) - 1));
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) out[i * NR + j] = _mm512_reduce_add_ps(acc[i][j]);
}

// Round-to-nearest-even f32 -> bf16 (vcvtneps2bf16 = ops::f32_to_bf16 for non-NaN input).
SA_AVX512 void to_bf16(const float* src, uint16_t* dst, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                        (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
  for (; i < n; ++i) dst[i] = f32_to_bf16(src[i]);
}

// ---------------------------------------------------------------- 3. quantized GEMV
struct QuantAct {          // one activation row quantized to int8 blocks (ops/quant.h)
  std::vector<int8_t> q;   // [K] codes
  std::vector<uint8_t> a;  // [K] |codes| (the unsigned VNNI operand for Q8_0)
  std::vector<float> d;    // [K/32] scales
  std::vector<int32_t> s;  // [K/32] sums of codes (Q4_0 offset)
};

SA_AVX512 void quantize_act(const float* x, size_t K, QuantAct& o) {
  const size_t nb = K / kQBlock;
  o.q.resize(K);
  o.a.resize(K);
  o.d.resize(nb);
  o.s.resize(nb);
  const __m512 sign = _mm512_set1_ps(-0.0f);
  for (size_t b = 0; b < nb; ++b) {
    const __m512 v0 = _mm512_loadu_ps(x + b * kQBlock), v1 = _mm512_loadu_ps(x + b * kQBlock + 16);
    const float amax =
        _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1)));
    o.d[b] = amax / 127.0f;
    const __m512 id = _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
    // cvtps_epi32 rounds to nearest even like std::nearbyint under the default rounding mode.
    const __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, id));
    const __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, id));
    o.s[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
    const __m256i q = _mm256_set_m128i(_mm512_cvtsepi32_epi8(i1), _mm512_cvtsepi32_epi8(i0));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.q.data() + b * kQBlock), q);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.a.data() + b * kQBlock), _mm256_abs_epi8(q));
  }
}

SA_AVX512 inline float hsum256(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

// The same dot products for R consecutive weight rows at once (decode: R = 4, dot_rows). Why: one
// pass over the activation blocks serves R rows, so its loads, the Q4_0 offset term and the
// activation scale broadcast are shared, and R independent FMA chains keep the ports busy while the
// weight streams in. Every row's arithmetic is exactly dot_q8_0/dot_q4_0's (same accumulator per
// block index mod 4, same combination order; the f16 scale times the activation scale is the same
// single rounding whether done in a scalar or broadcast), so the results are bit-identical to the
// one-row kernels. One block b of R rows into accumulator j (= b mod 4) of each row.
template <int R>
SA_AVX512 inline void step_q8_0(const char* w0, size_t ldw, const QuantAct& x, size_t b,
                                __m256* acc) {
  const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q.data() + b * 32));
  const __m256i xa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.a.data() + b * 32));
  const __m256 xd = _mm256_set1_ps(x.d[b]);
  for (int r = 0; r < R; ++r) {
    const BlockQ8_0& blk = reinterpret_cast<const BlockQ8_0*>(w0 + r * ldw)[b];
    const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qs));
    const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), xa, _mm256_sign_epi8(wv, xq));
    const __m256 sc = _mm256_mul_ps(_mm256_cvtph_ps(_mm_set1_epi16(short(blk.d))), xd);
    acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), sc, acc[r]);
  }
}

template <int R>
SA_AVX512 inline void step_q4_0(const char* w0, size_t ldw, const QuantAct& x, size_t b,
                                __m256* acc) {
  const __m256i m4 = _mm256_set1_epi8(15);
  const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q.data() + b * 32));
  const __m256i init = _mm256_zextsi128_si256(_mm_cvtsi32_si128(-8 * x.s[b]));
  const __m256 xd = _mm256_set1_ps(x.d[b]);
  for (int r = 0; r < R; ++r) {
    const BlockQ4_0& blk = reinterpret_cast<const BlockQ4_0*>(w0 + r * ldw)[b];
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.qs));
    const __m256i wv = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), m4);
    const __m256i p = _mm256_dpbusd_epi32(init, wv, xq);
    const __m256 sc = _mm256_mul_ps(_mm256_cvtph_ps(_mm_set1_epi16(short(blk.d))), xd);
    acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), sc, acc[r]);
  }
}

// The loop is unrolled by the 4 accumulators so that acc[j] has a constant index and lives in a
// register (with acc[b & 3] the compiler kept all of them on the stack: a load and a store per
// block); blocks still go to accumulator b mod 4, so the order is unchanged.
template <int R, bool kQ8>
SA_AVX512 void dot_rows(const char* w0, size_t ldw, const QuantAct& x, size_t nb, float* out) {
  __m256 acc[4][R];
  for (int j = 0; j < 4; ++j)
    for (int r = 0; r < R; ++r) acc[j][r] = _mm256_setzero_ps();
  auto step = [&](size_t b, __m256* a) SA_AVX512_STEP {
    if constexpr (kQ8)
      step_q8_0<R>(w0, ldw, x, b, a);
    else
      step_q4_0<R>(w0, ldw, x, b, a);
  };
  size_t b = 0;
  for (; b + 4 <= nb; b += 4) {
    step(b, acc[0]);
    step(b + 1, acc[1]);
    step(b + 2, acc[2]);
    step(b + 3, acc[3]);
  }
  for (; b < nb; ++b) step(b, acc[b & 3]);
  for (int r = 0; r < R; ++r)
    out[r] = hsum256(
        _mm256_add_ps(_mm256_add_ps(acc[0][r], acc[1][r]), _mm256_add_ps(acc[2][r], acc[3][r])));
}

// ---------------------------------------------------------------- drivers
using ExactFn = void (*)(const float*, size_t, const char*, size_t, size_t, float*);
using Bf16Fn = void (*)(const uint16_t*, size_t, const uint16_t*, size_t, size_t, float*);

template <bool kBf16>
ExactFn exact_tile(int mr, int nr) {
  static const ExactFn t[4][4] = {{tile_exact<kBf16, 1, 1>, tile_exact<kBf16, 1, 2>,
                                   tile_exact<kBf16, 1, 3>, tile_exact<kBf16, 1, 4>},
                                  {tile_exact<kBf16, 2, 1>, tile_exact<kBf16, 2, 2>,
                                   tile_exact<kBf16, 2, 3>, tile_exact<kBf16, 2, 4>},
                                  {tile_exact<kBf16, 3, 1>, tile_exact<kBf16, 3, 2>,
                                   tile_exact<kBf16, 3, 3>, tile_exact<kBf16, 3, 4>},
                                  {tile_exact<kBf16, 4, 1>, tile_exact<kBf16, 4, 2>,
                                   tile_exact<kBf16, 4, 3>, tile_exact<kBf16, 4, 4>}};
  return t[mr - 1][nr - 1];
}

Bf16Fn bf16_tile(int mr, int nr) {
  static const Bf16Fn t[4][4] = {
      {tile_bf16<1, 1>, tile_bf16<1, 2>, tile_bf16<1, 3>, tile_bf16<1, 4>},
      {tile_bf16<2, 1>, tile_bf16<2, 2>, tile_bf16<2, 3>, tile_bf16<2, 4>},
      {tile_bf16<3, 1>, tile_bf16<3, 2>, tile_bf16<3, 3>, tile_bf16<3, 4>},
      {tile_bf16<4, 1>, tile_bf16<4, 2>, tile_bf16<4, 3>, tile_bf16<4, 4>}};
  return t[mr - 1][nr - 1];
}

inline void store_tile(const float* out, int mr, int nr, size_t m, size_t n, size_t N,
                       const float* bias, float* y) {
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j)
      y[(m + i) * N + n + j] = out[i * nr + j] + (bias ? bias[n + j] : 0.0f);
}

void matmul_exact(ThreadPool& pool, const float* x, size_t M, const WeightView& W,
                  const float* bias, float* y) {
  const size_t N = W.rows, K = W.cols, ldw = row_bytes(W.dtype, K);
  const bool bf = W.dtype == DType::bf16;
  const char* w = static_cast<const char*>(W.data);  // rows ldw apart (not row_ptr per tile)
  const size_t tiles = (N + kTile - 1) / kTile;
  pool.parallel_for(tiles, [&](size_t t0, size_t t1) {
    float out[kTile * kTile];
    for (size_t t = t0; t < t1; ++t) {
      const size_t n = t * kTile;
      const int nr = static_cast<int>(std::min<size_t>(kTile, N - n));
      for (size_t m = 0; m < M; m += kTile) {
        const int mr = static_cast<int>(std::min<size_t>(kTile, M - m));
        (bf ? exact_tile<true>(mr, nr) : exact_tile<false>(mr, nr))(x + m * K, K, w + n * ldw, ldw,
                                                                    K, out);
        store_tile(out, mr, nr, m, n, N, bias, y);
      }
    }
  });
}

// Columns of y (rows of W) per work item of the fast GEMM: a dequantized [kChunk][K] bf16 panel
// (K = 3584: 0.9 MB) stays in L2 while the whole x passes over it. Fixed, so every output is
// computed by the same call shape whatever the thread count.
constexpr size_t kChunk = 128;

void matmul_bf16_gemm(ThreadPool& pool, const float* x, size_t M, const WeightView& W,
                      const float* bias, float* y) {
  const size_t N = W.rows, K = W.cols;
  // [M][K] activations in bf16, in this thread's scratch (filled by every pool thread).
  uint16_t* xb = scratch_array<uint16_t>(ScratchSlot::gemm_activations, M * K);
  pool.parallel_for(M,
                    [&](size_t m0, size_t m1) { to_bf16(x + m0 * K, xb + m0 * K, (m1 - m0) * K); });
  const size_t chunks = (N + kChunk - 1) / kChunk;
  pool.parallel_for(chunks, [&](size_t c0, size_t c1) {
    uint16_t* panel = W.dtype == DType::bf16  // [kChunk][K], per worker thread
                          ? nullptr
                          : scratch_array<uint16_t>(ScratchSlot::gemm_panel, kChunk * K);
    for (size_t c = c0; c < c1; ++c) {
      const size_t n0 = c * kChunk, nc = std::min(kChunk, N - n0);
      const uint16_t* wp;
      if (W.dtype == DType::bf16) {
        wp = reinterpret_cast<const uint16_t*>(W.row_ptr(n0));
      } else {
        dequant_rows_bf16_avx512(W, n0, nc, panel, K);
        wp = panel;
      }
      // b(k, j) = wp[j][k]: the panel read transposed through strides.
      if (!(dnnl_gemm::enabled() &&
            dnnl_gemm::matmul(true, M, nc, K, {xb, K, 1}, {wp, 1, K}, y + n0, N))) {
        float out[kTile * kTile];
        for (size_t t = 0; t < nc; t += kTile) {
          const int nr = static_cast<int>(std::min<size_t>(kTile, nc - t));
          for (size_t m = 0; m < M; m += kTile) {
            const int mr = static_cast<int>(std::min<size_t>(kTile, M - m));
            bf16_tile(mr, nr)(xb + m * K, K, wp + t * K, K, K, out);
            store_tile(out, mr, nr, m, n0 + t, N, nullptr, y);
          }
        }
      }
      if (bias) add_bias_chunk(y, M, N, n0, nc, bias);
    }
  });
}

void matmul_q_gemv(ThreadPool& pool, const float* x, size_t M, const WeightView& W,
                   const float* bias, float* y) {
  const size_t N = W.rows, K = W.cols, nb = K / kQBlock;
  std::vector<QuantAct> acts(M);
  for (size_t m = 0; m < M; ++m) quantize_act(x + m * K, K, acts[m]);
  const bool q8 = W.dtype == DType::q8_0;
  const size_t ldw = row_bytes(W.dtype, K);
  // One row per pass: R = 2 or 4 rows per pass (sharing the activation loads) measured 2-3x
  // slower on the development VM (docs/PERF.md), though the loop has fewer instructions per block;
  // likely because R interleaved weight streams 2 KB apart replace the one sequential stream the
  // prefetcher sees when rows are read one after another. Several rows per pass would need a
  // row-interleaved weight layout (repacked at load) first.
  pool.parallel_for(N, [&](size_t n0, size_t n1) {
    for (size_t n = n0; n < n1; ++n) {
      const char* row = W.row_ptr(n);
      const float b = bias ? bias[n] : 0.0f;
      for (size_t m = 0; m < M; ++m) {
        float out;
        if (q8)
          dot_rows<1, true>(row, ldw, acts[m], nb, &out);
        else
          dot_rows<1, false>(row, ldw, acts[m], nb, &out);
        y[m * N + n] = out + b;
      }
    }
  });
}
}  // namespace

void matmul_avx512(ThreadPool& pool_in, const float* x, size_t M, const WeightView& W,
                   const float* bias, float* y) {
  // Below ~64 K multiply-adds a hand-off to another thread costs more than it saves (and on an
  // oversubscribed machine a descheduled worker stalls the caller for a time slice).
  static ThreadPool serial(1);
  ThreadPool& pool = M * W.rows * W.cols < (size_t{1} << 16) ? serial : pool_in;
  if (is_block_type(W.dtype)) {
    if (int8_path(W, M))
      return W.packed ? gemv_packed_avx512(pool, x, M, W, bias, y)
                      : matmul_q_gemv(pool, x, M, W, bias, y);
    return matmul_bf16_gemm(pool, x, M, W, bias, y);
  }
  if (W.dtype == DType::bf16 && W.fast && M > kGemvMaxRows)
    return matmul_bf16_gemm(pool, x, M, W, bias, y);
  matmul_exact(pool, x, M, W, bias, y);
}

}  // namespace stepaudio::ops::x86
#endif
