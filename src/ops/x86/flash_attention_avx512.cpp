// Fused bf16 attention for AttentionShape::fast without a causal mask (the audio encoder under
// --quant q8/q4): flash-attention style, the scores of a tile of 16 queries x one head never leave
// L1. Every multiply-add is one lane-pair of `vdpbf16ps` (bf16 x bf16 products, f32 sums):
//   Q K^T: lanes = 16 keys, pairs = 2 head dims; K pre-packed per KV head so one 64-byte load
//          serves all 16 queries of the tile (q pair broadcast from L1);
//   P V:   lanes = 16 head dims, pairs = 2 keys; V pre-packed pair-interleaved over keys, the P
//          pair of a query broadcast from the tile's bf16 P rows.
// Softmax is online (running max m and sum l per query, rescale of O by 2^(m_old - m_new) per key
// block), in base 2: scores are scaled by scale * log2(e) and the bias by log2(e), so each
// exponential is 2^x with x <= 0 (exp2_neg below). Why not two GEMMs (the session-3 path through
// oneDNN): S = Q K^T has K = 64, a poor GEMM shape, and S made a round trip through memory; this
// kernel keeps both products in one pass over K and V per query tile.
// Results do not depend on the thread count: a work item is one KV head (packing, then its heads'
// 16-query tiles), always computed by the same code with the same key blocks in the same order.
#if defined(__x86_64__)
#include <immintrin.h>

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
using Buffer = std::unique_ptr<uint16_t[], FreeDeleter>;
Buffer alloc_bf16(size_t n) {  // 64-byte aligned: every packed vector is one cache line
  const size_t bytes = (n * 2 + 63) / 64 * 64;
  return Buffer(static_cast<uint16_t*>(std::aligned_alloc(64, bytes ? bytes : 64)));
}

// 2^x for x <= 0 (finite): n = round(x), r = x - n in [-0.5, 0.5] (exact), 2^r by a degree-4
// minimax polynomial (relative error < 2.7e-6 with these f32 coefficients: far below the 2^-9 of
// the bf16 rounding of P that follows), times 2^n by scalef (0 for x below about -150). No clamp:
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

SA_AVX512 inline __m512 bcast_pair(const uint16_t* p) {  // a bf16 pair as 32 bits in every lane
  uint32_t u;
  std::memcpy(&u, p, 4);
  return _mm512_castsi512_ps(_mm512_set1_epi32(static_cast<int>(u)));
}

SA_AVX512 inline __m512 dot_pairs(__m512 acc, __m512 a, __m512 b) {
  return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}

// 16 floats -> 16 bf16 (round to nearest even), stored at y.
SA_AVX512 inline void store_bf16x16(uint16_t* y, __m512 x) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(y), (__m256i)_mm512_cvtneps_pbh(x));
}

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

// Row x[0..hd) (f32, hd a multiple of 16) as bf16 pairs: 32 dims from x0 per vector (16 pairs).
SA_AVX512 inline __m512i bf16_pairs(const float* x0, bool has_hi) {
  const __m512 lo = _mm512_loadu_ps(x0);
  const __m512 hi = has_hi ? _mm512_loadu_ps(x0 + 16) : _mm512_setzero_ps();
  return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

// K and V of one KV head are packed by the thread that then runs all of the head's query tiles,
// into its own buffers (2 x 192 KB at 1500 keys and 64 dims): they stay in its L2 and never make
// the trip through L3/DRAM that a whole-call packing pass (12 MB at 1500 keys) made, which cost
// 3-15% of a call depending on the neighbours' cache pressure. Layouts (bf16; keys padded to a
// multiple of 16 with zeros):
//   k: [nk16][hd/2][16 keys][2]: per block of 16 keys and dim pair d, one 64-byte vector whose lane
//      j is (k[j][2d], k[j][2d+1]) (a 16 x 16 transpose of the bf16 pairs of 16 key rows);
//   v: [nk16 * 8][hd/16][16 dims][2]: per key pair t and chunk of 16 dims, one vector whose lane c
//      is (v[2t][c], v[2t+1][c]).
// A head's part of a row is hd floats at a stride of the whole row (5 KB in the encoder), a
// pattern the hardware prefetcher does not follow: rows are prefetched 16 ahead.
SA_AVX512 inline void prefetch_row(const float* x, size_t hd) {
  for (size_t c = 0; c < hd; c += 16) _mm_prefetch(x + c, _MM_HINT_T0);
}

SA_AVX512 void pack_kv_head(const float* k, const float* v, size_t stride, size_t n_kv, size_t hd,
                            size_t nk16, uint16_t* kp, uint16_t* vp) {
  const size_t pairs = hd / 2, chunks = hd / 16;
  for (size_t b = 0; b < nk16; ++b) {
    for (size_t d0 = 0; d0 < pairs; d0 += 16) {  // 16 pairs = 32 dims per transpose
      __m512i r[16];
      for (size_t j = 0; j < 16; ++j) {
        const size_t key = 16 * b + j;
        if (d0 == 0 && key + 16 < n_kv) prefetch_row(k + (key + 16) * stride, hd);
        r[j] = key < n_kv ? bf16_pairs(k + key * stride + 2 * d0, 2 * d0 + 16 < hd)
                          : _mm512_setzero_si512();
      }
      transpose16(r);
      for (size_t p = d0; p < std::min(pairs, d0 + 16); ++p)
        _mm512_store_si512(kp + (b * pairs + p) * 32, r[p - d0]);
    }
  }
  // cvtne2ps(b, a) = [a0..a15 | b0..b15]; interleave to (a0 b0 a1 b1 ...).
  alignas(64) static constexpr uint16_t kInter[32] = {0,  16, 1,  17, 2,  18, 3,  19, 4,  20, 5,
                                                      21, 6,  22, 7,  23, 8,  24, 9,  25, 10, 26,
                                                      11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i idx = _mm512_load_si512(kInter);
  for (size_t t = 0; t < nk16 * 8; ++t) {
    const size_t ka = 2 * t, kb = 2 * t + 1;  // keys past n_kv read as zeros
    if (kb + 16 < n_kv) {
      prefetch_row(v + (ka + 16) * stride, hd);
      prefetch_row(v + (kb + 16) * stride, hd);
    }
    for (size_t c = 0; c < chunks; ++c) {
      const __m512 a = ka < n_kv ? _mm512_loadu_ps(v + ka * stride + 16 * c) : _mm512_setzero_ps();
      const __m512 b = kb < n_kv ? _mm512_loadu_ps(v + kb * stride + 16 * c) : _mm512_setzero_ps();
      _mm512_store_si512(vp + (t * chunks + c) * 32,
                         _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(b, a)));
    }
  }
}

// The state of one query tile (16 queries x one head), all in L1.
template <size_t NC>
struct Tile {
  static constexpr size_t HD = NC * 16, PAIRS = HD / 2;
  alignas(64) uint16_t qt[kTileQ * HD];      // [16][HD] bf16 queries (rows past nb zero)
  alignas(64) float s[4 * kBlockK];          // [4][kBlockK] logits of a group of 4 queries
  alignas(64) uint16_t p[kTileQ * kBlockK];  // [16][kBlockK] bf16 probabilities (unnormalised)
  alignas(64) float o[kTileQ * HD];          // [16][HD] f32 output accumulators
  alignas(64) float l[kTileQ * 16];          // [16][16 lanes] running sums of p
  float m[kTileQ], alpha[kTileQ];            // running max (log2 units), rescale of this block
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
template <size_t NC, size_t G>
SA_AVX512 inline void exp_unit(Tile<NC>& t, size_t r0, size_t r, size_t u) {
  const size_t row = r0 + r, g = 2 * u;
  const __m512 m = _mm512_set1_ps(t.m[row]);
  const float* sr = t.s + r * kBlockK;
  const __m512 p0 = exp2_neg(_mm512_sub_ps(_mm512_load_ps(sr + 16 * g), m));
  const __m512 p1 = g + 1 < G ? exp2_neg(_mm512_sub_ps(_mm512_load_ps(sr + 16 * g + 16), m))
                              : _mm512_setzero_ps();  // an odd last 16 keys: paired with zeros
  _mm512_store_si512(t.p + row * kBlockK + 16 * g, (__m512i)_mm512_cvtne2ps_pbh(p1, p0));
  _mm512_store_ps(t.l + 16 * row,
                  _mm512_add_ps(_mm512_load_ps(t.l + 16 * row), _mm512_add_ps(p0, p1)));
}

// Dots of group r0 (skipped when DOTS is false: the drain) with the exponentials of group r0 - 4
// (skipped when EXPS is false: the first group).
template <size_t NC, size_t G, bool DOTS, bool EXPS>
SA_AVX512 inline void group_step(Tile<NC>& t, const uint16_t* qt, const uint16_t* kb, size_t r0,
                                 __m512 (&acc)[4][G]) {
  constexpr size_t HD = Tile<NC>::HD, PAIRS = Tile<NC>::PAIRS, GP = (G + 1) / 2, UNITS = 4 * GP;
#pragma GCC unroll 4
  for (size_t r = 0; r < 4; ++r)
#pragma GCC unroll 4
    for (size_t g = 0; g < G; ++g) acc[r][g] = _mm512_setzero_ps();
  static_assert(PAIRS % UNITS == 0);  // PAIRS = 8 NC, UNITS = 4 or 8
  for (size_t un = 0; un < UNITS; ++un) {
    if constexpr (EXPS) exp_unit<NC, G>(t, r0 - 4, un / GP, un % GP);
    if constexpr (DOTS) {
#pragma GCC unroll 8
      for (size_t dd = 0; dd < PAIRS / UNITS; ++dd) {  // constant trip count: unrolled
        const size_t d = un * (PAIRS / UNITS) + dd;
        __m512 kv[G];
#pragma GCC unroll 4
        for (size_t g = 0; g < G; ++g)
          kv[g] = _mm512_castsi512_ps(_mm512_load_si512(kb + (g * PAIRS + d) * 32));
#pragma GCC unroll 4
        for (size_t r = 0; r < 4; ++r) {
          const __m512 qr = bcast_pair(qt + (r0 + r) * HD + 2 * d);
#pragma GCC unroll 4
          for (size_t g = 0; g < G; ++g) acc[r][g] = dot_pairs(acc[r][g], kv[g], qr);
        }
      }
    }
  }
}

template <size_t NC, size_t G>
SA_AVX512 __attribute__((noinline)) void qk_softmax_block(Tile<NC>& t, const uint16_t* qt,
                                                          const uint16_t* kb, const float* bias2,
                                                          float scale2, size_t nr) {
  const __m512 sc = _mm512_set1_ps(scale2);
  for (size_t r0 = 0; r0 < nr; r0 += 4) {
    __m512 acc[4][G];
    if (r0 == 0)
      group_step<NC, G, true, false>(t, qt, kb, r0, acc);
    else
      group_step<NC, G, true, true>(t, qt, kb, r0, acc);
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
  group_step<NC, G, false, true>(t, qt, kb, nr, unused);  // the last group's exponentials
}

// o = alpha o + P V over the block's w keys at vb: 4 queries x up to 4 chunks of 16 dims in
// registers, one V load per chunk and key pair shared by the 4 queries.
template <size_t NC>
SA_AVX512 __attribute__((noinline)) void pv_block(Tile<NC>& t, const uint16_t* vb, size_t w,
                                                  size_t nr) {
  constexpr size_t HD = Tile<NC>::HD, CG = NC <= 4 ? NC : NC / 2;  // NC in {1..4, 6, 8}
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
      for (size_t k2 = 0; k2 < w / 2; ++k2) {
        __m512 vv[CG];
#pragma GCC unroll 4
        for (size_t c = 0; c < CG; ++c)
          vv[c] = _mm512_castsi512_ps(_mm512_load_si512(vb + (k2 * NC + c0 + c) * 32));
#pragma GCC unroll 4
        for (size_t r = 0; r < 4; ++r) {
          const __m512 pr = bcast_pair(t.p + (r0 + r) * kBlockK + 2 * k2);
#pragma GCC unroll 4
          for (size_t c = 0; c < CG; ++c) acc[r][c] = dot_pairs(acc[r][c], vv[c], pr);
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
template <size_t NC>
SA_AVX512 void tile(const float* q, size_t q_stride, size_t nb, const float* q_next, size_t nb_next,
                    const uint16_t* kp, const uint16_t* vp, const float* bias2, size_t n_kv,
                    size_t nk16, float scale2, float* out, size_t out_stride) {
  constexpr size_t HD = Tile<NC>::HD;
  Tile<NC> t;
  // Rows a whole hidden size apart: beyond what the hardware prefetcher follows. The output lines
  // are written last and the next tile's queries read first, each ~10-30 us from now.
  for (size_t r = 0; r < nb; ++r)
    for (size_t c = 0; c < HD; c += 16) _mm_prefetch(out + r * out_stride + c, _MM_HINT_T0);
  for (size_t r = 0; r < nb_next; ++r) prefetch_row(q_next + r * q_stride, HD);
  for (size_t r = 0; r < kTileQ; ++r)
    for (size_t c = 0; c < HD; c += 16)
      store_bf16x16(t.qt + r * HD + c,
                    r < nb ? _mm512_loadu_ps(q + r * q_stride + c) : _mm512_setzero_ps());
  std::memset(t.o, 0, sizeof t.o);
  std::memset(t.l, 0, sizeof t.l);
  for (size_t r = 0; r < kTileQ; ++r) t.m[r] = kNoMax;
  const size_t nr = (nb + 3) / 4 * 4;  // rows computed: groups of 4 (a short last tile)
  for (size_t j0 = 0; j0 < n_kv; j0 += kBlockK) {
    const size_t w = std::min(kBlockK, nk16 * 16 - j0);  // keys in this block, a multiple of 16
    const uint16_t* kb = kp + j0 * HD;
    switch (w / 16) {
      case 1:
        qk_softmax_block<NC, 1>(t, t.qt, kb, bias2 + j0, scale2, nr);
        break;
      case 2:
        qk_softmax_block<NC, 2>(t, t.qt, kb, bias2 + j0, scale2, nr);
        break;
      case 3:
        qk_softmax_block<NC, 3>(t, t.qt, kb, bias2 + j0, scale2, nr);
        break;
      default:
        qk_softmax_block<NC, 4>(t, t.qt, kb, bias2 + j0, scale2, nr);
    }
    pv_block(t, vp + j0 * HD, w, nr);
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
  uint16_t* get(size_t elems) {  // 2 x elems bf16 (K then V)
    if (2 * elems > cap) {
      buf = alloc_bf16(2 * elems);
      cap = 2 * elems;
    }
    return buf.get();
  }
};

template <size_t NC>
void run_heads(ThreadPool& pool, const AttentionShape& s, const float* q, const float* k,
               const float* v, const float* bias2, size_t nk16, float scale2, float* out) {
  const size_t hd = s.head_dim, group = s.n_heads / s.n_kv_heads, ldo = s.n_heads * hd;
  const size_t tiles = (s.n_q + kTileQ - 1) / kTileQ, kv_elems = nk16 * 16 * hd;
  // One piece per KV head, claimed by whichever thread is free: whole heads keep their packed K
  // and V in one core's L2; a busy core just takes fewer heads.
  pool.parallel_for(
      s.n_kv_heads,
      [&](size_t b, size_t e) {
        thread_local KvBuffers bufs;
        uint16_t* kp = bufs.get(kv_elems);
        uint16_t* vp = kp + kv_elems;
        for (size_t g = b; g < e; ++g) {
          pack_kv_head(k + g * hd, v + g * hd, s.kv_stride, s.n_kv, hd, nk16, kp, vp);
          for (size_t h = g * group; h < (g + 1) * group; ++h)
            for (size_t ti = 0; ti < tiles; ++ti) {
              const size_t i0 = ti * kTileQ, i1 = i0 + kTileQ;
              const float* qh = q + h * hd;
              tile<NC>(qh + i0 * s.q_stride, s.q_stride, std::min(kTileQ, s.n_q - i0),
                       qh + i1 * s.q_stride, i1 < s.n_q ? std::min(kTileQ, s.n_q - i1) : 0, kp, vp,
                       bias2, s.n_kv, nk16, scale2, out + i0 * ldo + h * hd, ldo);
            }
        }
      },
      s.n_kv_heads);
}
}  // namespace

bool flash_attention_bf16_avx512(ThreadPool& pool, const AttentionShape& s, const float* q,
                                 const float* k, const float* v, float scale, const float* key_bias,
                                 float* out) {
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
#define SA_FLASH_CASE(nc)                                             \
  case nc:                                                            \
    run_heads<nc>(pool, s, q, k, v, bias2.data(), nk16, scale2, out); \
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

}  // namespace stepaudio::ops::x86
#endif
