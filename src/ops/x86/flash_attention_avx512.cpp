// Fused attention for AttentionShape::fast without a causal mask (the audio encoder under
// --quant q8/q4): flash-attention style, the scores of a tile of 16 queries x one head never leave
// L1. Two element formats share the code (the Fmt template parameter):
//   Bf16: every multiply-add is one lane-pair of `vdpbf16ps` (bf16 x bf16 products, f32 sums);
//   F32:  every multiply-add is one lane of `vfmadd` on f32 inputs (no rounding of q, k, v, p).
// A 64-byte vector holds 16 lanes of kPer elements (2 bf16 or 1 f32):
//   Q K^T: lanes = 16 keys, kPer head dims per lane; K pre-packed per KV head so one 64-byte load
//          serves all 16 queries of the tile (the query's kPer dims broadcast from L1);
//   P V:   lanes = 16 head dims, kPer keys per lane; V pre-packed (pair-interleaved over keys for
//          bf16), the query's kPer probabilities broadcast from the tile's P rows.
// Which format runs is measured once per process (preferred_flash_format): vdpbf16ps does twice
// the multiply-adds of vfmadd per instruction, but its issue rate differs between CPUs and even
// between two states of this project's VM: session 11 measured the bf16 dot at half the f32 FMA's
// flops, session 12 at 1.8x, where the bf16 kernel ran 1.6x faster than f32 (docs/PERF.md).
// Softmax is online (running max m and sum l per query, rescale of O by 2^(m_old - m_new) per key
// block), in base 2: scores are scaled by scale * log2(e) and the bias by log2(e), so each
// exponential is 2^x with x <= 0 (exp2_neg below). Why not two GEMMs (the session-3 path through
// oneDNN): S = Q K^T has K = 64, a poor GEMM shape, and S made a round trip through memory; this
// kernel keeps both products in one pass over K and V per query tile.
// Results do not depend on the thread count: a work item is one KV head (packing, then its heads'
// 16-query tiles), always computed by the same code with the same key blocks in the same order.
#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "ops/x86/avx512_target.h"
#include "ops/x86/kernels.h"

namespace stepaudio::ops::x86 {

namespace {
constexpr size_t kTileQ = 16;     // queries per work item (one accumulator register each in Q K^T)
constexpr size_t kBlockK = 64;    // keys per online-softmax step (S: 16 x 64 f32 = 4 KB in L1)
constexpr size_t kMaxChunks = 8;  // head_dim <= 128 (16 dims per chunk)
constexpr float kLog2e = 1.44269504088896341f;
// Logits (log2 units) of the padding keys and the running max before the first block: finite, so
// differences stay finite (no inf - inf), and far below any real logit (|bias| < 1e29 checked).
constexpr float kPadLogit = -1e30f, kNoMax = -1e38f;

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<unsigned char[], FreeDeleter>;
Buffer alloc_bytes(size_t bytes) {  // 64-byte aligned: every packed vector is one cache line
  bytes = (bytes + 63) / 64 * 64;
  return Buffer(static_cast<unsigned char*>(std::aligned_alloc(64, bytes ? bytes : 64)));
}

// 2^x for x <= 0 (finite): n = round(x), r = x - n in [-0.5, 0.5] (exact), 2^r by a degree-4
// minimax polynomial (relative error < 2.7e-6 with these f32 coefficients: far below the 2^-8 of
// the bf16 rounding of P that follows; in the f32 format the largest error left, and still below
// what the encoder's int8 linears add), times 2^n by scalef (0 for x below about -150). No clamp:
// the masked and padding keys carry large finite negative logits (-1e30 at most), for which
// r = 0 and scalef gives exactly 0.
SA_AVX512 inline __m512 exp2_neg(__m512 x) {
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 r = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(0.009570098482072353f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.05591787397861481f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.240247443318367f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.6931217908859253f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.9999992847442627f));
  return _mm512_scalef_ps(p, n);
}

// The two element formats. Each 64-byte vector is 16 lanes of kPer elements; a lane's elements
// are consecutive head dims (K, Q) or consecutive keys (V, P).
struct Bf16 {
  using Elem = uint16_t;
  static constexpr size_t kPer = 2;
  SA_AVX512 static __m512 bcast(const Elem* p) {  // a bf16 pair as 32 bits in every lane
    uint32_t u;
    std::memcpy(&u, p, 4);
    return _mm512_castsi512_ps(_mm512_set1_epi32(static_cast<int>(u)));
  }
  SA_AVX512 static __m512 dot(__m512 acc, __m512 a, __m512 b) {
    return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
  }
  // 16 floats -> 16 bf16 (round to nearest even), stored at y.
  SA_AVX512 static void store16(Elem* y, __m512 x) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y), (__m256i)_mm512_cvtneps_pbh(x));
  }
  // 16 lanes of probabilities (two groups of 16 keys, a and b) at y: bf16 (a0..a15 b0..b15).
  SA_AVX512 static void store_p(Elem* y, __m512 a, __m512 b, bool) {
    _mm512_store_si512(y, (__m512i)_mm512_cvtne2ps_pbh(b, a));
  }
  // The 32 dims from x0 as 16 bf16 pairs (only the low 16 when !has_hi).
  SA_AVX512 static __m512i lanes(const float* x0, bool has_hi) {
    const __m512 lo = _mm512_loadu_ps(x0);
    const __m512 hi = has_hi ? _mm512_loadu_ps(x0 + 16) : _mm512_setzero_ps();
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
  }
  // V of keys a and b (null: past n_kv, zeros), dims 16c..16c+15, as lanes (v[a][d], v[b][d]).
  SA_AVX512 static void store_v(Elem* y, const float* a, const float* b) {
    // cvtne2ps(b, a) = [a0..a15 | b0..b15]; interleave to (a0 b0 a1 b1 ...).
    alignas(64) static constexpr uint16_t kInter[32] = {0,  16, 1,  17, 2,  18, 3,  19, 4,  20, 5,
                                                        21, 6,  22, 7,  23, 8,  24, 9,  25, 10, 26,
                                                        11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    const __m512 va = a ? _mm512_loadu_ps(a) : _mm512_setzero_ps();
    const __m512 vb = b ? _mm512_loadu_ps(b) : _mm512_setzero_ps();
    _mm512_store_si512(y, _mm512_permutexvar_epi16(_mm512_load_si512(kInter),
                                                   (__m512i)_mm512_cvtne2ps_pbh(vb, va)));
  }
};

struct F32 {
  using Elem = float;
  static constexpr size_t kPer = 1;
  SA_AVX512 static __m512 bcast(const Elem* p) { return _mm512_set1_ps(*p); }
  SA_AVX512 static __m512 dot(__m512 acc, __m512 a, __m512 b) { return _mm512_fmadd_ps(a, b, acc); }
  SA_AVX512 static void store16(Elem* y, __m512 x) { _mm512_storeu_ps(y, x); }
  SA_AVX512 static void store_p(Elem* y, __m512 a, __m512 b, bool has_b) {
    _mm512_store_ps(y, a);
    if (has_b) _mm512_store_ps(y + 16, b);
  }
  SA_AVX512 static __m512i lanes(const float* x0, bool) {
    return _mm512_castps_si512(_mm512_loadu_ps(x0));
  }
  SA_AVX512 static void store_v(Elem* y, const float* a, const float*) {
    _mm512_store_ps(y, a ? _mm512_loadu_ps(a) : _mm512_setzero_ps());
  }
};

// In-register transpose of 16 x 16 32-bit elements: r[j] lane c -> r[c] lane j.
SA_AVX512 inline void transpose16(__m512i* r) {
  __m512i t[16], u[16];
  for (int i = 0; i < 16; i += 2) {  // 128-bit lane L of t[i]: a0 b0 a1 b1, of t[i+1]: a2 b2 a3 b3
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int g = 0; g < 16; g += 4) {  // u[g + e] lane L: element 4L + e of rows g..g+3
    u[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
    u[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
    u[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
    u[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
  }
  for (int e = 0; e < 4; ++e) {  // column 4L + e = lane L of u[e], u[4 + e], u[8 + e], u[12 + e]
    const __m512i x0 = _mm512_shuffle_i32x4(u[e], u[4 + e], 0x88);
    const __m512i x1 = _mm512_shuffle_i32x4(u[e], u[4 + e], 0xdd);
    const __m512i y0 = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], 0x88);
    const __m512i y1 = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], 0xdd);
    r[e] = _mm512_shuffle_i32x4(x0, y0, 0x88);
    r[4 + e] = _mm512_shuffle_i32x4(x1, y1, 0x88);
    r[8 + e] = _mm512_shuffle_i32x4(x0, y0, 0xdd);
    r[12 + e] = _mm512_shuffle_i32x4(x1, y1, 0xdd);
  }
}

// K and V of one KV head are packed by the thread that then runs all of the head's query tiles,
// into its own buffers (2 x 192 KB at 1500 keys and 64 dims in bf16, 2 x 384 KB in f32): they
// stay in its L2 and never make the trip through L3/DRAM that a whole-call packing pass (12 MB at
// 1500 keys) made, which cost 3-15% of a call depending on the neighbours' cache pressure.
// Layouts (P = kPer; keys padded to a multiple of 16 with zeros):
//   k: [nk16][hd/P][16 keys][P]: per block of 16 keys and lane unit d, one 64-byte vector whose
//      lane j is (k[j][Pd] .. k[j][Pd+P-1]) (a 16 x 16 transpose of 32-bit lanes of 16 key rows);
//   v: [nk16 * 16 / P][hd/16][16 dims][P]: per unit t of P keys and chunk of 16 dims, one vector
//      whose lane c is (v[Pt][c] .. v[Pt+P-1][c]) (for f32 simply the rows, padded).
// A head's part of a row is hd floats at a stride of the whole row (5 KB in the encoder), a
// pattern the hardware prefetcher does not follow: rows are prefetched 16 ahead.
SA_AVX512 inline void prefetch_row(const float* x, size_t hd) {
  for (size_t c = 0; c < hd; c += 16) _mm_prefetch(x + c, _MM_HINT_T0);
}

template <class Fmt>
SA_AVX512 void pack_kv_head(const float* k, const float* v, size_t stride, size_t n_kv, size_t hd,
                            size_t nk16, typename Fmt::Elem* kp, typename Fmt::Elem* vp) {
  constexpr size_t P = Fmt::kPer;
  const size_t units = hd / P, chunks = hd / 16;
  for (size_t b = 0; b < nk16; ++b) {
    for (size_t d0 = 0; d0 < units; d0 += 16) {  // 16 lanes of P dims per transpose
      __m512i r[16];
      for (size_t j = 0; j < 16; ++j) {
        const size_t key = 16 * b + j;
        if (d0 == 0 && key + 16 < n_kv) prefetch_row(k + (key + 16) * stride, hd);
        r[j] = key < n_kv ? Fmt::lanes(k + key * stride + P * d0, P * d0 + 16 < hd)
                          : _mm512_setzero_si512();
      }
      transpose16(r);
      for (size_t u = d0; u < std::min(units, d0 + 16); ++u)
        _mm512_store_si512(kp + (b * units + u) * 16 * P, r[u - d0]);
    }
  }
  for (size_t t = 0; t < nk16 * 16 / P; ++t) {
    const size_t ka = P * t, kb = P * t + P - 1;  // the lane's keys (one for f32); past n_kv: zeros
    if (kb + 16 < n_kv) {
      prefetch_row(v + (ka + 16) * stride, hd);
      if (kb != ka) prefetch_row(v + (kb + 16) * stride, hd);
    }
    for (size_t c = 0; c < chunks; ++c)
      Fmt::store_v(vp + (t * chunks + c) * 16 * P, ka < n_kv ? v + ka * stride + 16 * c : nullptr,
                   kb < n_kv ? v + kb * stride + 16 * c : nullptr);
  }
}

// The state of one query tile (16 queries x one head), all in L1.
template <class Fmt, size_t NC>
struct Tile {
  using Elem = typename Fmt::Elem;
  static constexpr size_t HD = NC * 16;
  alignas(64) Elem qt[kTileQ * HD];      // [16][HD] queries (rows past nb zero)
  alignas(64) float s[4 * kBlockK];      // [4][kBlockK] logits of a group of 4 queries
  alignas(64) Elem p[kTileQ * kBlockK];  // [16][kBlockK] probabilities (unnormalised)
  alignas(64) float o[kTileQ * HD];      // [16][HD] f32 output accumulators
  alignas(64) float l[kTileQ * 16];      // [16][16 lanes] running sums of p
  float m[kTileQ], alpha[kTileQ];        // running max (log2 units), rescale of this block
};

// The two phases of a key block are separate (not inlined) functions: each needs most of the 32
// vector registers, and inlined together the compiler kept the exponential's constants live
// across the dot loops and spilled their accumulators.

// Scores and online softmax of one key block (G groups of 16 keys at kb, G <= 4), 4 queries at a
// time: S for 4 queries x 16 G keys in 4 G accumulators (per dim pair: G K loads and 4 q-pair
// broadcasts for 4 G vdpbf16ps); then, from registers, logits in log2 units (scale2 s + bias2),
// new running max m, alpha = 2^(m_old - m), l *= alpha, logits to t.s. The exponentials of a group
// (p = 2^(logit - m), rounded to bf16 into t.p, l += sum p) are software-pipelined into the dot
// loop of the next group: after their own dot loop they were a dependent chain the core could not
// overlap with anything (~19% of the time), interleaved they run in the slots vdpbf16ps leaves.

// One unit of exponentials: row r (of the group whose logits are in t.s), key groups 2u, 2u + 1.
template <class Fmt, size_t NC, size_t G>
SA_AVX512 inline void exp_unit(Tile<Fmt, NC>& t, size_t r0, size_t r, size_t u) {
  const size_t row = r0 + r, g = 2 * u;
  const __m512 m = _mm512_set1_ps(t.m[row]);
  const float* sr = t.s + r * kBlockK;
  const __m512 p0 = exp2_neg(_mm512_sub_ps(_mm512_load_ps(sr + 16 * g), m));
  const __m512 p1 = g + 1 < G ? exp2_neg(_mm512_sub_ps(_mm512_load_ps(sr + 16 * g + 16), m))
                              : _mm512_setzero_ps();  // an odd last 16 keys: paired with zeros
  Fmt::store_p(t.p + row * kBlockK + 16 * g, p0, p1, g + 1 < G);
  _mm512_store_ps(t.l + 16 * row,
                  _mm512_add_ps(_mm512_load_ps(t.l + 16 * row), _mm512_add_ps(p0, p1)));
}

// Dots of group r0 (skipped when DOTS is false: the drain) with the exponentials of group r0 - 4
// (skipped when EXPS is false: the first group).
template <class Fmt, size_t NC, size_t G, bool DOTS, bool EXPS>
SA_AVX512 inline void group_step(Tile<Fmt, NC>& t, const typename Fmt::Elem* qt,
                                 const typename Fmt::Elem* kb, size_t r0, __m512 (&acc)[4][G]) {
  constexpr size_t P = Fmt::kPer, HD = NC * 16, DU = HD / P;  // DU lane units per head row
  constexpr size_t GP = (G + 1) / 2, UNITS = 4 * GP;          // exp units (see exp_unit)
#pragma GCC unroll 4
  for (size_t r = 0; r < 4; ++r)
#pragma GCC unroll 4
    for (size_t g = 0; g < G; ++g) acc[r][g] = _mm512_setzero_ps();
  static_assert(DU % UNITS == 0);  // DU = 8 NC or 16 NC, UNITS = 4 or 8
  for (size_t un = 0; un < UNITS; ++un) {
    if constexpr (EXPS) exp_unit<Fmt, NC, G>(t, r0 - 4, un / GP, un % GP);
    if constexpr (DOTS) {
#pragma GCC unroll 16
      for (size_t dd = 0; dd < DU / UNITS; ++dd) {  // constant trip count: unrolled
        const size_t d = un * (DU / UNITS) + dd;
        __m512 kv[G];
#pragma GCC unroll 4
        for (size_t g = 0; g < G; ++g)
          kv[g] = _mm512_castsi512_ps(_mm512_load_si512(kb + (g * DU + d) * 16 * P));
#pragma GCC unroll 4
        for (size_t r = 0; r < 4; ++r) {
          const __m512 qr = Fmt::bcast(qt + (r0 + r) * HD + P * d);
#pragma GCC unroll 4
          for (size_t g = 0; g < G; ++g) acc[r][g] = Fmt::dot(acc[r][g], kv[g], qr);
        }
      }
    }
  }
}

template <class Fmt, size_t NC, size_t G>
SA_AVX512 __attribute__((noinline)) void qk_softmax_block(Tile<Fmt, NC>& t,
                                                          const typename Fmt::Elem* qt,
                                                          const typename Fmt::Elem* kb,
                                                          const float* bias2, float scale2,
                                                          size_t nr) {
  const __m512 sc = _mm512_set1_ps(scale2);
  for (size_t r0 = 0; r0 < nr; r0 += 4) {
    __m512 acc[4][G];
    if (r0 == 0)
      group_step<Fmt, NC, G, true, false>(t, qt, kb, r0, acc);
    else
      group_step<Fmt, NC, G, true, true>(t, qt, kb, r0, acc);
#pragma GCC unroll 4
    for (size_t r = 0; r < 4; ++r) {
      const size_t row = r0 + r;
      __m512 mx = _mm512_set1_ps(kNoMax);
#pragma GCC unroll 4
      for (size_t g = 0; g < G; ++g) {
        acc[r][g] = _mm512_fmadd_ps(acc[r][g], sc, _mm512_loadu_ps(bias2 + 16 * g));
        mx = _mm512_max_ps(mx, acc[r][g]);
        _mm512_store_ps(t.s + r * kBlockK + 16 * g, acc[r][g]);
      }
      // The running max grows mostly in the first blocks: one compare against it, and the
      // horizontal max and the rescale factor only when some lane exceeds it.
      float alpha = 1.0f;
      if (_mm512_cmp_ps_mask(mx, _mm512_set1_ps(t.m[row]), _CMP_GT_OQ)) {
        const float mb = _mm512_reduce_max_ps(mx);
        alpha = _mm512_cvtss_f32(exp2_neg(_mm512_set1_ps(t.m[row] - mb)));
        t.m[row] = mb;
        _mm512_store_ps(t.l + 16 * row,
                        _mm512_mul_ps(_mm512_load_ps(t.l + 16 * row), _mm512_set1_ps(alpha)));
      }
      t.alpha[row] = alpha;
    }
  }
  __m512 unused[4][G];
  group_step<Fmt, NC, G, false, true>(t, qt, kb, nr, unused);  // the last group's exponentials
}

// o = alpha o + P V over the block's w keys at vb: 4 queries x up to 4 chunks of 16 dims in
// registers, one V load per chunk and lane unit (kPer keys) shared by the 4 queries.
template <class Fmt, size_t NC>
SA_AVX512 __attribute__((noinline)) void pv_block(Tile<Fmt, NC>& t, const typename Fmt::Elem* vb,
                                                  size_t w, size_t nr) {
  constexpr size_t P = Fmt::kPer, HD = NC * 16, CG = NC <= 4 ? NC : NC / 2;  // NC: 1..4, 6, 8
  for (size_t r0 = 0; r0 < nr; r0 += 4) {
    for (size_t c0 = 0; c0 + CG <= NC; c0 += CG) {
      __m512 acc[4][CG];
#pragma GCC unroll 4
      for (size_t r = 0; r < 4; ++r) {
        const __m512 a = _mm512_set1_ps(t.alpha[r0 + r]);
#pragma GCC unroll 4
        for (size_t c = 0; c < CG; ++c)
          acc[r][c] = _mm512_mul_ps(_mm512_load_ps(t.o + (r0 + r) * HD + 16 * (c0 + c)), a);
      }
      for (size_t k2 = 0; k2 < w / P; ++k2) {
        __m512 vv[CG];
#pragma GCC unroll 4
        for (size_t c = 0; c < CG; ++c)
          vv[c] = _mm512_castsi512_ps(_mm512_load_si512(vb + (k2 * NC + c0 + c) * 16 * P));
#pragma GCC unroll 4
        for (size_t r = 0; r < 4; ++r) {
          const __m512 pr = Fmt::bcast(t.p + (r0 + r) * kBlockK + P * k2);
#pragma GCC unroll 4
          for (size_t c = 0; c < CG; ++c) acc[r][c] = Fmt::dot(acc[r][c], vv[c], pr);
        }
      }
#pragma GCC unroll 4
      for (size_t r = 0; r < 4; ++r)
#pragma GCC unroll 4
        for (size_t c = 0; c < CG; ++c)
          _mm512_store_ps(t.o + (r0 + r) * HD + 16 * (c0 + c), acc[r][c]);
    }
  }
}

// Queries [i0, i0 + nb) (nb <= 16, rows q_stride apart from q) of one head against all n_kv keys,
// written to out (rows out_stride apart). kp, vp: the packed K and V of the head's KV group;
// bias2: [nk16 * 16] key bias in log2 units (kPadLogit past n_kv). q_next / nb_next: the next
// tile's query rows, prefetched while this one computes.
template <class Fmt, size_t NC>
SA_AVX512 void tile(const float* q, size_t q_stride, size_t nb, const float* q_next, size_t nb_next,
                    const typename Fmt::Elem* kp, const typename Fmt::Elem* vp, const float* bias2,
                    size_t n_kv, size_t nk16, float scale2, float* out, size_t out_stride) {
  constexpr size_t HD = NC * 16;
  Tile<Fmt, NC> t;
  // Rows a whole hidden size apart: beyond what the hardware prefetcher follows. The output lines
  // are written last and the next tile's queries read first, each ~10-30 us from now.
  for (size_t r = 0; r < nb; ++r)
    for (size_t c = 0; c < HD; c += 16) _mm_prefetch(out + r * out_stride + c, _MM_HINT_T0);
  for (size_t r = 0; r < nb_next; ++r) prefetch_row(q_next + r * q_stride, HD);
  for (size_t r = 0; r < kTileQ; ++r)
    for (size_t c = 0; c < HD; c += 16)
      Fmt::store16(t.qt + r * HD + c,
                   r < nb ? _mm512_loadu_ps(q + r * q_stride + c) : _mm512_setzero_ps());
  std::memset(t.o, 0, sizeof t.o);
  std::memset(t.l, 0, sizeof t.l);
  for (size_t r = 0; r < kTileQ; ++r) t.m[r] = kNoMax;
  const size_t nr = (nb + 3) / 4 * 4;  // rows computed: groups of 4 (a short last tile)
  for (size_t j0 = 0; j0 < n_kv; j0 += kBlockK) {
    const size_t w = std::min(kBlockK, nk16 * 16 - j0);  // keys in this block, a multiple of 16
    const typename Fmt::Elem* kb = kp + j0 * HD;
    switch (w / 16) {
      case 1:
        qk_softmax_block<Fmt, NC, 1>(t, t.qt, kb, bias2 + j0, scale2, nr);
        break;
      case 2:
        qk_softmax_block<Fmt, NC, 2>(t, t.qt, kb, bias2 + j0, scale2, nr);
        break;
      case 3:
        qk_softmax_block<Fmt, NC, 3>(t, t.qt, kb, bias2 + j0, scale2, nr);
        break;
      default:
        qk_softmax_block<Fmt, NC, 4>(t, t.qt, kb, bias2 + j0, scale2, nr);
    }
    pv_block<Fmt, NC>(t, vp + j0 * HD, w, nr);
  }
  for (size_t r = 0; r < nb; ++r) {
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(_mm512_load_ps(t.l + 16 * r)));
    for (size_t c = 0; c < HD; c += 16)
      _mm512_storeu_ps(out + r * out_stride + c,
                       _mm512_mul_ps(_mm512_load_ps(t.o + r * HD + c), inv));
  }
}

// Per pool thread, grown on demand and kept (the encoder calls this once per layer with the same
// shape; a fresh allocation per call page-faulted every time): packed K and V of one KV head.
struct KvBuffers {
  Buffer buf;
  size_t cap = 0;
  unsigned char* get(size_t bytes) {  // K then V
    if (bytes > cap) {
      buf = alloc_bytes(bytes);
      cap = bytes;
    }
    return buf.get();
  }
};

template <class Fmt, size_t NC>
void run_heads(ThreadPool& pool, const AttentionShape& s, const float* q, const float* k,
               const float* v, const float* bias2, size_t nk16, float scale2, float* out) {
  const size_t hd = s.head_dim, group = s.n_heads / s.n_kv_heads, ldo = s.n_heads * hd;
  const size_t tiles = (s.n_q + kTileQ - 1) / kTileQ, kv_elems = nk16 * 16 * hd;
  // One piece per KV head, claimed by whichever thread is free: whole heads keep their packed K
  // and V in one core's L2; a busy core just takes fewer heads.
  pool.parallel_for(
      s.n_kv_heads,
      [&](size_t b, size_t e) {
        thread_local KvBuffers bufs;  // one per thread, shared by the formats
        using Elem = typename Fmt::Elem;
        Elem* kp = reinterpret_cast<Elem*>(bufs.get(2 * kv_elems * sizeof(Elem)));
        Elem* vp = kp + kv_elems;
        for (size_t g = b; g < e; ++g) {
          pack_kv_head<Fmt>(k + g * hd, v + g * hd, s.kv_stride, s.n_kv, hd, nk16, kp, vp);
          for (size_t h = g * group; h < (g + 1) * group; ++h)
            for (size_t ti = 0; ti < tiles; ++ti) {
              const size_t i0 = ti * kTileQ, i1 = i0 + kTileQ;
              const float* qh = q + h * hd;
              tile<Fmt, NC>(qh + i0 * s.q_stride, s.q_stride, std::min(kTileQ, s.n_q - i0),
                            qh + i1 * s.q_stride, i1 < s.n_q ? std::min(kTileQ, s.n_q - i1) : 0, kp,
                            vp, bias2, s.n_kv, nk16, scale2, out + i0 * ldo + h * hd, ldo);
            }
        }
      },
      s.n_kv_heads);
}
}  // namespace

bool flash_attention_avx512(ThreadPool& pool, const AttentionShape& s, const float* q,
                            const float* k, const float* v, float scale, const float* key_bias,
                            FlashFormat format, float* out) {
  const size_t hd = s.head_dim;
  const size_t nc = hd / 16;  // chunks of 16 dims: 1..4, 6 or 8 (pv_block's register groups)
  if (hd % 16 != 0 || nc == 0 || nc == 5 || nc == 7 || nc > kMaxChunks || s.n_kv == 0 || s.n_q == 0)
    return false;
  const size_t nk16 = (s.n_kv + 15) / 16;
  // Bias in log2 units; kPadLogit for the padding keys of the last block (p exactly 0, see
  // exp2_neg). A caller bias beyond +-1e29 (or -inf: a fully masked row) is left to the exact path.
  std::vector<float> bias2(nk16 * 16);
  for (size_t j = 0; j < nk16 * 16; ++j) {
    const float b = j >= s.n_kv ? kPadLogit : (key_bias ? key_bias[j] * kLog2e : 0.0f);
    if (j < s.n_kv && !(std::fabs(b) < 1e29f)) return false;
    bias2[j] = b;
  }
  const float scale2 = scale * kLog2e;
  switch (nc) {
#define SA_FLASH_CASE(nc)                                                     \
  case nc:                                                                    \
    if (format == FlashFormat::f32)                                           \
      run_heads<F32, nc>(pool, s, q, k, v, bias2.data(), nk16, scale2, out);  \
    else                                                                      \
      run_heads<Bf16, nc>(pool, s, q, k, v, bias2.data(), nk16, scale2, out); \
    break;
    SA_FLASH_CASE(1)
    SA_FLASH_CASE(2)
    SA_FLASH_CASE(3)
    SA_FLASH_CASE(4)
    SA_FLASH_CASE(6)
    SA_FLASH_CASE(8)
#undef SA_FLASH_CASE
    default:
      return false;
  }
  return true;
}

FlashFormat preferred_flash_format() {
  // STEPAUDIO_FLASH_FORMAT=f32|bf16 forces one; otherwise the probe loops of probes.h on this
  // thread, best of 5 short runs each (~1 ms in all): bf16 only where its dot clearly out-runs f32
  // FMA (a margin so that run-to-run noise cannot flip a machine between the formats: the choice
  // changes the encoder's bits).
  static const FlashFormat chosen = [] {
    if (const char* force = std::getenv("STEPAUDIO_FLASH_FORMAT")) {  // to compare the two
      if (std::strcmp(force, "f32") == 0) return FlashFormat::f32;
      if (std::strcmp(force, "bf16") == 0) return FlashFormat::bf16;
    }
    auto best_rate = [](double (*loop)(size_t)) {
      double best = 0;
      for (int rep = 0; rep < 5; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        const double flops = loop(20'000);
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        best = std::max(best, flops / std::max(s, 1e-9));
      }
      return best;
    };
    const double f32 = best_rate(fma_f32_loop_avx512), bf16 = best_rate(dot_bf16_loop_avx512);
    return bf16 > 1.3 * f32 ? FlashFormat::bf16 : FlashFormat::f32;
  }();
  return chosen;
}

}  // namespace stepaudio::ops::x86
#endif
