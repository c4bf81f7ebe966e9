// Q8_0/Q4_0 rows -> bf16: the panels of the prefill GEMM (matmul_avx512.cpp) with AVX-512.
//
// Every weight becomes bf16(float(q) * d): the code widened exactly, one f32 multiply by the
// block's f16 scale (exact in f32), one round-to-nearest-even to bf16 (vcvtne2ps2bf16). Plain rows
// are read block by block. Packed rows (the decode GEMV's 16-row interleaved groups,
// ops/repack.h) are read a whole group at a time: the codes of one block of 16 rows are 8 (Q8_0)
// or 4 (Q4_0) 64-byte chunks whose dword r belongs to row r, so a dword transpose in registers
// (unpack 32, unpack 64, permute 64) turns them into the 16 rows' contiguous codes, and the 16
// scales convert with one vcvtph2ps. Why: reading one packed row alone means gathering 4-byte
// pieces 64 bytes apart (a vpgatherdd per block): 2.5-4.5x the plain rows' dequantization time,
// 12-22% on top of the GEMM at 155 tokens; the group pass streams the packed bytes once, in
// order, with plain loads (1.1-1.7x plain, docs/PERF.md session 4). The arithmetic per weight is
// the same as the row path's, so the bits are too.
#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "ops/quant.h"
#include "ops/repack.h"
#include "ops/x86/avx512_target.h"
#include "ops/x86/kernels.h"

namespace stepaudio::ops::x86 {

namespace {
// One block of 32 codes times its scale d -> bf16 (q * d rounded once): Q8_0 from its 32 int8
// codes, Q4_0 from its 16 bytes of nibbles.
SA_AVX512 inline void q8_block_bf16(__m256i q, __m512 d, uint16_t* dst) {
  const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(q)));
  const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(q, 1)));
  _mm512_storeu_si512(dst,
                      (__m512i)_mm512_cvtne2ps_pbh(_mm512_mul_ps(hi, d), _mm512_mul_ps(lo, d)));
}
SA_AVX512 inline void q4_block_bf16(__m128i raw, __m512 d, uint16_t* dst) {
  const __m128i m4 = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
  const __m128i lo8 = _mm_sub_epi8(_mm_and_si128(raw, m4), eight);
  const __m128i hi8 = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), eight);
  const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo8));
  const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi8));
  _mm512_storeu_si512(dst,
                      (__m512i)_mm512_cvtne2ps_pbh(_mm512_mul_ps(hi, d), _mm512_mul_ps(lo, d)));
}

// One plain quantized row (K elements) -> bf16. Blocks are 34 or 18 bytes, so the f16 scale is
// read with memcpy (2-byte aligned at best).
SA_AVX512 void plain_row_bf16(DType t, const char* row, size_t K, uint16_t* dst) {
  const size_t nb = K / kQBlock, bs = t == DType::q8_0 ? sizeof(BlockQ8_0) : sizeof(BlockQ4_0);
  for (size_t i = 0; i < nb; ++i) {
    const char* blk = row + i * bs;
    uint16_t d16;
    std::memcpy(&d16, blk, 2);
    const __m512 d = _mm512_set1_ps(_cvtsh_ss(d16));
    if (t == DType::q8_0)
      q8_block_bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2)), d,
                    dst + i * kQBlock);
    else
      q4_block_bf16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2)), d,
                    dst + i * kQBlock);
  }
}

// Rows 4l + i of a block's 16 rows from its code chunks c[0..3] (chunk p: dword r = piece p of row
// r): after the two unpack stages, 128-bit lane l of t[i] holds pieces 0..3 of row 4l + i.
SA_AVX512 inline void transpose4(const __m512i* c, __m512i* t) {
  const __m512i a0 = _mm512_unpacklo_epi32(c[0], c[1]), a1 = _mm512_unpackhi_epi32(c[0], c[1]);
  const __m512i a2 = _mm512_unpacklo_epi32(c[2], c[3]), a3 = _mm512_unpackhi_epi32(c[2], c[3]);
  t[0] = _mm512_unpacklo_epi64(a0, a2);
  t[1] = _mm512_unpackhi_epi64(a0, a2);
  t[2] = _mm512_unpacklo_epi64(a1, a3);
  t[3] = _mm512_unpackhi_epi64(a1, a3);
}

// One block (32 columns) of the 16 rows of a packed group -> dst[r * ld + 0..31] (bf16).
// sc: the 16 f16 scales; co: the codes (8 chunks for Q8_0, 4 for Q4_0).
template <bool kQ8>
SA_AVX512 inline void group_block_bf16(const char* sc, const char* co, uint16_t* dst, size_t ld) {
  alignas(64) float d[kPackRows];
  _mm512_store_ps(d, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sc))));
  if constexpr (kQ8) {
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));  // w + 128 -> w
    __m512i c[8], lo[4], hi[4];
    for (int g = 0; g < 8; ++g) c[g] = _mm512_xor_si512(_mm512_loadu_si512(co + 64 * g), flip);
    transpose4(c, lo);      // pieces 0..3 of row 4l + i in lane l of lo[i]
    transpose4(c + 4, hi);  // pieces 4..7
    // Row 4l + i = [lane l of lo[i], lane l of hi[i]]: rows 4l + i for l = 0, 1 (then 2, 3) into
    // the two 256-bit halves of one register.
    const __m512i i01 = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
    const __m512i i23 = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
    for (int i = 0; i < 4; ++i) {
      const __m512i r01 = _mm512_permutex2var_epi64(lo[i], i01, hi[i]);
      const __m512i r23 = _mm512_permutex2var_epi64(lo[i], i23, hi[i]);
      q8_block_bf16(_mm512_castsi512_si256(r01), _mm512_set1_ps(d[i]), dst + i * ld);
      q8_block_bf16(_mm512_extracti64x4_epi64(r01, 1), _mm512_set1_ps(d[4 + i]),
                    dst + (4 + i) * ld);
      q8_block_bf16(_mm512_castsi512_si256(r23), _mm512_set1_ps(d[8 + i]), dst + (8 + i) * ld);
      q8_block_bf16(_mm512_extracti64x4_epi64(r23, 1), _mm512_set1_ps(d[12 + i]),
                    dst + (12 + i) * ld);
    }
  } else {
    __m512i c[4], t[4];
    for (int p = 0; p < 4; ++p) c[p] = _mm512_loadu_si512(co + 64 * p);
    transpose4(c, t);  // row 4l + i: lane l of t[i], its 16 bytes of nibbles
    for (int i = 0; i < 4; ++i) {
      q4_block_bf16(_mm512_castsi512_si128(t[i]), _mm512_set1_ps(d[i]), dst + i * ld);
      q4_block_bf16(_mm512_extracti32x4_epi32(t[i], 1), _mm512_set1_ps(d[4 + i]),
                    dst + (4 + i) * ld);
      q4_block_bf16(_mm512_extracti32x4_epi32(t[i], 2), _mm512_set1_ps(d[8 + i]),
                    dst + (8 + i) * ld);
      q4_block_bf16(_mm512_extracti32x4_epi32(t[i], 3), _mm512_set1_ps(d[12 + i]),
                    dst + (12 + i) * ld);
    }
  }
}

// The 16 rows of one packed group (nb blocks) -> dst[16][ld]: the group's bytes in stream order.
// The source is prefetched kAhead bytes ahead: with 16 rows of stores in flight the hardware
// prefetcher fell behind on the one read stream (Q8_0 panels took 2.3x the plain rows' time
// without it, 1.2-1.3x with it; bench_matmul Dequant_*).
constexpr size_t kAhead = 4096;
template <bool kQ8>
SA_AVX512 void group_bf16(const char* grp, size_t nb, uint16_t* dst, size_t ld) {
  constexpr size_t C = kQ8 ? 512 : 256;  // code bytes of one block of 16 rows
  size_t b = 0;
  for (; b + 2 <= nb; b += 2) {  // a pair: [scales b][scales b+1][codes b][codes b+1]
    const char* base = grp + b * (C + 32);
    for (size_t o = 0; o < 2 * (C + 32); o += 64) _mm_prefetch(base + kAhead + o, _MM_HINT_T0);
    group_block_bf16<kQ8>(base, base + 64, dst + b * kQBlock, ld);
    group_block_bf16<kQ8>(base + 32, base + 64 + C, dst + (b + 1) * kQBlock, ld);
  }
  if (b < nb) {  // the odd last block: [scales][codes]
    const char* base = grp + b * (C + 32);
    group_block_bf16<kQ8>(base, base + 32, dst + b * kQBlock, ld);
  }
}
}  // namespace

// A packed row's codes are 4-byte pieces 64 bytes apart, fetched with one gather per block: the
// per-row reference of the group path (tests), never used by the GEMM for packed rows.
SA_AVX512 void dequant_row_bf16_avx512(const WeightView& W, size_t n, uint16_t* dst) {
  if (n >= packed_rows(W)) return plain_row_bf16(W.dtype, W.row_ptr(n), W.cols, dst);
  const size_t r = n % kPackRows, nb = W.cols / kQBlock;
  const char* grp = W.row_ptr(n - r);  // the group starts where its first plain row would
  const bool q8 = W.dtype == DType::q8_0;
  const size_t C = q8 ? 512 : 256;
  for (size_t b = 0; b < nb; ++b) {
    size_t so, co;
    packed_block_offsets(b, nb, C, &so, &co);
    uint16_t d16;
    std::memcpy(&d16, grp + so + 2 * r, 2);
    const __m512 d = _mm512_set1_ps(_cvtsh_ss(d16));
    const auto* pieces = reinterpret_cast<const int*>(grp + co + 4 * r);
    if (q8) {
      const __m256i idx = _mm256_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112);
      const __m256i q = _mm256_xor_si256(_mm256_i32gather_epi32(pieces, idx, 4),
                                         _mm256_set1_epi8(static_cast<char>(0x80)));
      q8_block_bf16(q, d, dst + b * kQBlock);
    } else {
      q4_block_bf16(_mm_i32gather_epi32(pieces, _mm_setr_epi32(0, 16, 32, 48), 4), d,
                    dst + b * kQBlock);
    }
  }
}

void dequant_rows_bf16_avx512(const WeightView& W, size_t n0, size_t count, uint16_t* dst,
                              size_t ld) {
  const auto group = W.dtype == DType::q8_0 ? group_bf16<true> : group_bf16<false>;
  const size_t nb = W.cols / kQBlock, end = n0 + count, P = packed_rows(W);
  size_t n = n0;
  if (n % kPackRows == 0) {  // whole groups (a GEMM chunk starts on a multiple of 128)
    for (; n + kPackRows <= std::min(end, P); n += kPackRows)
      group(W.row_ptr(n), nb, dst + (n - n0) * ld, ld);
  }
  for (; n < end; ++n) dequant_row_bf16_avx512(W, n, dst + (n - n0) * ld);
}

}  // namespace stepaudio::ops::x86
#endif
