// AVX-512 decode GEMV on packed Q8_0/Q4_0 weights (16-row interleaved groups, ops/repack.h).
//
// Per block of 32 columns and group of 16 rows: the 16 f16 scales convert with one vcvtph2ps, the
// codes come from 8 (Q8_0) or 4 (Q4_0, unpacked with and/shift to 8) 64-byte loads of one
// sequential stream, and 8 vpdpbusd multiply them by the activation's 8 dwords (4 int8 codes each,
// broadcast): lane r of the int32 sum is row r's exact block dot product, so no horizontal sum is
// needed and each activation register serves 16 rows. The weights are vpdpbusd's unsigned operand
// (Q4_0 codes 0..15; Q8_0 stored as w + 128), so the sum starts at -8 or -128 times the block's
// activation code sum. About 2 instructions per row-block instead of ~16 for the one-row kernel.
//
// Semantics are exactly ref::matmul_q's (bit-identical, tested): activation codes and scales as
// quantize_act_q8, exact int32 block sums, and per row acc = fma(d_w * d_x, float(isum), acc) in
// block order. Up to kGemvMaxRows activation rows share each weight load (a batched decode step);
// more rows (the int8 prefill GEMM, WeightView::int8_act) go in tiles of 16 rows that each
// re-read the group's weights from L1/L2 (16 rows x K: 32-170 KB at full size), so a weight byte
// comes from memory once per matmul and each vpdpbusd does 64 multiply-adds: twice the bf16
// vdpbf16ps rate. Work is split over fixed 16-row groups, so any thread count gives the same bits,
// and a row's result does not depend on M or on its tile.
#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "ops/quant.h"
#include "ops/repack.h"
#include "ops/x86/avx512_target.h"
#include "ops/x86/kernels.h"

namespace stepaudio::ops::x86 {

namespace {
// An unaligned int32 that may alias the int8 codes (4 codes read as one dword).
typedef int32_t I32u __attribute__((may_alias, aligned(1)));

struct Acts {                // M activation rows quantized for the packed GEMV
  std::vector<int8_t> q;     // [M][K] codes
  std::vector<float> d;      // [M][nb] scales
  std::vector<int32_t> off;  // [M][nb] -128 (Q8_0) or -8 (Q4_0) times the block's code sum
  // The same, interleaved per tile of kGemvMaxRows rows: tile t, block b, row m of the tile at
  // qi[((t * nb + b) * 8 + m) * 32], di/offi[(t * nb + b) * 8 + m]. The kernel then reads every
  // row of a block from one pointer at fixed offsets (one address register instead of one per
  // row plus its scale and offset: the 8-row kernel had run out of registers).
  std::vector<int8_t> qi;
  std::vector<float> di;
  std::vector<int32_t> offi;
};

// The codes and scales of ops::quantize_act_q8 (round to nearest even, |code| <= 127).
SA_AVX512 void quantize_row(const float* x, size_t K, int32_t off_mul, int8_t* q, float* d,
                            int32_t* off) {
  const __m512 sign = _mm512_set1_ps(-0.0f);
  for (size_t b = 0; b < K / kQBlock; ++b) {
    const __m512 v0 = _mm512_loadu_ps(x + b * kQBlock), v1 = _mm512_loadu_ps(x + b * kQBlock + 16);
    const float amax =
        _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1)));
    d[b] = amax / 127.0f;
    const __m512 id = _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
    const __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, id));
    const __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, id));
    off[b] = off_mul * _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b * kQBlock), _mm512_cvtsepi32_epi8(i0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b * kQBlock + 16), _mm512_cvtsepi32_epi8(i1));
  }
}

// Software prefetch distance in the weight stream (bytes; tuned on the development VM with
// bench_matmul's Gemv_q4_packed_dram_B*).
constexpr size_t kPrefetch = 4096;

// out[m][16] = the 16 rows of one packed group . row m of a tile of M activation rows (qt, dt,
// ot: the tile's start in Acts::qi, di, offi, interleaved by T rows), for m < M <= T.
template <bool kQ8, int M, size_t T>
SA_AVX512 void gemv_group(const char* grp, size_t nb, const int8_t* qt, const float* dt,
                          const int32_t* ot, float* out) {
  constexpr size_t C = kQ8 ? 512 : 256;  // code bytes of one block of 16 rows
  __m512 acc[M];
  for (int m = 0; m < M; ++m) acc[m] = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(15);
  auto block = [&](size_t b, const char* sc, const char* co) SA_AVX512 {
    // The weights stream from memory once per call, and the hardware prefetcher alone kept too
    // few misses in flight: the lines kPrefetch bytes ahead in the same sequential stream (the
    // next blocks, then the next group) are requested explicitly. Measured from memory
    // (bench_matmul Gemv_q4_packed_dram_B*): B = 1 17 -> 14-17 ms, B = 4 20-22 -> 14-17 ms,
    // B = 8 26-27 -> 17-22 ms. Prefetches past the matrix's end are harmless hints.
    for (size_t l = 0; l < C + 32; l += 64) _mm_prefetch(co + kPrefetch + l, _MM_HINT_T0);
    __m512i w[8];
    if constexpr (kQ8) {
      for (int i = 0; i < 8; ++i) w[i] = _mm512_loadu_si512(co + 64 * i);
    } else {
      for (int p = 0; p < 4; ++p) {
        const __m512i z = _mm512_loadu_si512(co + 64 * p);
        w[p] = _mm512_and_si512(z, m4);                            // elements 4p..4p+3
        w[p + 4] = _mm512_and_si512(_mm512_srli_epi16(z, 4), m4);  // elements 16+4p..
      }
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sc)));
    const auto* xb = reinterpret_cast<const I32u*>(qt + b * T * kQBlock);
    // Unrolled so that acc[] stays in registers (GCC's own limit stops short of 16 rows).
#pragma GCC unroll 16
    for (int m = 0; m < M; ++m) {
      const I32u* xw = xb + m * (kQBlock / 4);
      // Each activation dword is broadcast straight from memory (a load, no shuffle uop; from a
      // register the broadcasts took port 5 beside the dot products). Two independent chains
      // halve the vpdpbusd latency per block; int32 sums are exact, so the split does not
      // change the result.
      __m512i p0 = _mm512_set1_epi32(ot[b * T + m]), p1 = _mm512_setzero_si512();
      for (int i = 0; i < 8; i += 2) {
        p0 = _mm512_dpbusd_epi32(p0, w[i], _mm512_set1_epi32(xw[i]));
        p1 = _mm512_dpbusd_epi32(p1, w[i + 1], _mm512_set1_epi32(xw[i + 1]));
      }
      const __m512 s = _mm512_mul_ps(dw, _mm512_set1_ps(dt[b * T + m]));
      acc[m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(p0, p1)), s, acc[m]);
    }
  };
  size_t b = 0;
  for (; b + 2 <= nb; b += 2) {  // a pair: [scales b][scales b+1][codes b][codes b+1]
    const char* base = grp + b * (C + 32);
    block(b, base, base + 64);
    block(b + 1, base + 32, base + 64 + C);
  }
  if (b < nb) {  // the odd last block: [scales][codes]
    const char* base = grp + b * (C + 32);
    block(b, base, base + 32);
  }
  for (int m = 0; m < M; ++m) _mm512_storeu_ps(out + 16 * m, acc[m]);
}

// Tile heights: a batched decode step (M <= kGemvMaxRows) is one tile of 8; the prefill GEMM goes
// in tiles of 16, which halves the weight loads and Q4_0 unpacking per row-block and gives the
// out-of-order core twice the independent vpdpbusd chains: 16 accumulators, 8 weight registers,
// the two chains and the constants fit the 32 zmm registers (no spill in the block loop).
// bench_matmul Gemm_q*_M155_packed_*_int8, alternating rounds (bench/ab_compare.py): 1.04-1.10x
// over tiles of 8. One chain per row (no add) or four were slower with 16 rows: docs/PERF.md.
constexpr size_t kPrefillTile = 16;
inline size_t tile_height(size_t M) {
  return M > kGemvMaxRows ? kPrefillTile : kGemvMaxRows;
}

using GroupFn = void (*)(const char*, size_t, const int8_t*, const float*, const int32_t*, float*);

template <bool kQ8, size_t T, size_t... I>
constexpr std::array<GroupFn, T> group_fns(std::index_sequence<I...>) {
  return {gemv_group<kQ8, int(I) + 1, T>...};
}

template <bool kQ8>
void run_groups(ThreadPool& pool, size_t M, const WeightView& W, const Acts& a, const float* bias,
                float* y) {
  const size_t N = W.rows, K = W.cols, nb = K / kQBlock, rb = row_bytes(W.dtype, K);
  static constexpr auto fns8 =
      group_fns<kQ8, kGemvMaxRows>(std::make_index_sequence<kGemvMaxRows>());
  static constexpr auto fns16 =
      group_fns<kQ8, kPrefillTile>(std::make_index_sequence<kPrefillTile>());
  const size_t T = tile_height(M);
  const GroupFn* fns = T == kPrefillTile ? fns16.data() : fns8.data();
  const auto* base = static_cast<const char*>(W.data);
  pool.parallel_for(packed_rows(W) / kPackRows, [&](size_t g0, size_t g1) {
    float out[kPrefillTile * kPackRows];
    for (size_t g = g0; g < g1; ++g)
      for (size_t m0 = 0; m0 < M; m0 += T) {
        const size_t mt = std::min(T, M - m0);
        const size_t t = m0 / T * nb * T;  // the tile's first entry
        fns[mt - 1](base + g * kPackRows * rb, nb, a.qi.data() + t * kQBlock, a.di.data() + t,
                    a.offi.data() + t, out);
        for (size_t m = 0; m < mt; ++m)
          for (size_t r = 0; r < kPackRows; ++r) {
            const size_t n = g * kPackRows + r;
            y[(m0 + m) * N + n] = out[m * kPackRows + r] + (bias ? bias[n] : 0.0f);
          }
      }
  });
}
}  // namespace

void gemv_packed_avx512(ThreadPool& pool, const float* x, size_t M, const WeightView& W,
                        const float* bias, float* y) {
  const size_t N = W.rows, K = W.cols, nb = K / kQBlock;
  const bool q8 = W.dtype == DType::q8_0;
  // Reused: no allocation per call. Named through a reference so that the lambdas below (run by
  // pool workers) see this thread's buffers, not their own thread_local copies.
  thread_local Acts tls_acts;
  Acts& a = tls_acts;
  a.q.resize(M * K);
  a.d.resize(M * nb);
  a.off.resize(M * nb);
  auto quantize = [&](size_t m0, size_t m1) {
    for (size_t m = m0; m < m1; ++m)
      quantize_row(x + m * K, K, q8 ? -128 : -8, a.q.data() + m * K, a.d.data() + m * nb,
                   a.off.data() + m * nb);
  };
  // The tile-interleaved copy the kernel reads (Acts::qi).
  const size_t T = tile_height(M), tiles = (M + T - 1) / T;
  a.qi.resize(tiles * nb * T * kQBlock);
  a.di.resize(tiles * nb * T);
  a.offi.resize(tiles * nb * T);
  auto interleave = [&](size_t m0, size_t m1) {
    for (size_t m = m0; m < m1; ++m) {
      const size_t t = m / T, r = m % T;
      for (size_t b = 0; b < nb; ++b) {
        const size_t e = (t * nb + b) * T + r;
        std::memcpy(a.qi.data() + e * kQBlock, a.q.data() + m * K + b * kQBlock, kQBlock);
        a.di[e] = a.d[m * nb + b];
        a.offi[e] = a.off[m * nb + b];
      }
    }
  };
  auto prepare = [&](size_t m0, size_t m1) {
    quantize(m0, m1);
    interleave(m0, m1);
  };
  if (M > kGemvMaxRows)  // prefill: rows are independent, so split them over the threads
    pool.parallel_for(M, prepare);
  else
    prepare(0, M);
  if (q8)
    run_groups<true>(pool, M, W, a, bias, y);
  else
    run_groups<false>(pool, M, W, a, bias, y);
  // The plain tail rows (N % 16 of them, only in small test models): the scalar twin's dot.
  for (size_t n = packed_rows(W); n < N; ++n)
    for (size_t m = 0; m < M; ++m) {
      const int8_t* q = a.q.data() + m * K;
      const float* d = a.d.data() + m * nb;
      const float v = q8 ? vec_dot_q8_0(reinterpret_cast<const BlockQ8_0*>(W.row_ptr(n)), q, d, K)
                         : vec_dot_q4_0(reinterpret_cast<const BlockQ4_0*>(W.row_ptr(n)), q, d, K);
      y[m * N + n] = v + (bias ? bias[n] : 0.0f);
    }
}

}  // namespace stepaudio::ops::x86
#endif
