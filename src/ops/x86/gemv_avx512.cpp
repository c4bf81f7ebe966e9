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
// block order. M <= kGemvMaxRows activation rows share each
// weight load. Work is split over fixed 16-row groups, so any thread count gives the same bits.
#if defined(__x86_64__)
#include <immintrin.h>

#include <vector>

#include "ops/quant.h"
#include "ops/repack.h"
#include "ops/x86/avx512_target.h"
#include "ops/x86/kernels.h"

namespace stepaudio::ops::x86 {

namespace {
struct Acts {                // M activation rows quantized for the packed GEMV
  std::vector<int8_t> q;     // [M][K] codes
  std::vector<float> d;      // [M][nb] scales
  std::vector<int32_t> off;  // [M][nb] -128 (Q8_0) or -8 (Q4_0) times the block's code sum
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

// out[m][16] = the 16 rows of one packed group . activation row m, for m < M.
template <bool kQ8, int M>
SA_AVX512 void gemv_group(const char* grp, size_t nb, size_t K, const Acts& a, float* out) {
  constexpr size_t C = kQ8 ? 512 : 256;  // code bytes of one block of 16 rows
  __m512 acc[M];
  for (int m = 0; m < M; ++m) acc[m] = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(15);
  auto block = [&](size_t b, const char* sc, const char* co) SA_AVX512 {
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
    for (int m = 0; m < M; ++m) {
      const int8_t* xq = a.q.data() + m * K + b * kQBlock;
      int32_t xw[8];
      __builtin_memcpy(xw, xq, 32);
      // Two independent chains halve the vpdpbusd latency per block; int32 sums are exact, so
      // the split does not change the result.
      __m512i p0 = _mm512_set1_epi32(a.off[m * nb + b]), p1 = _mm512_setzero_si512();
      for (int i = 0; i < 8; i += 2) {
        p0 = _mm512_dpbusd_epi32(p0, w[i], _mm512_set1_epi32(xw[i]));
        p1 = _mm512_dpbusd_epi32(p1, w[i + 1], _mm512_set1_epi32(xw[i + 1]));
      }
      const __m512 s = _mm512_mul_ps(dw, _mm512_set1_ps(a.d[m * nb + b]));
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

template <bool kQ8>
void run_groups(ThreadPool& pool, size_t M, const WeightView& W, const Acts& a, const float* bias,
                float* y) {
  const size_t N = W.rows, K = W.cols, nb = K / kQBlock, rb = row_bytes(W.dtype, K);
  using Fn = void (*)(const char*, size_t, size_t, const Acts&, float*);
  static const Fn fns[4] = {gemv_group<kQ8, 1>, gemv_group<kQ8, 2>, gemv_group<kQ8, 3>,
                            gemv_group<kQ8, 4>};
  const Fn fn = fns[M - 1];
  const auto* base = static_cast<const char*>(W.data);
  pool.parallel_for(packed_rows(W) / kPackRows, [&](size_t g0, size_t g1) {
    float out[kGemvMaxRows * kPackRows];
    for (size_t g = g0; g < g1; ++g) {
      fn(base + g * kPackRows * rb, nb, K, a, out);
      for (size_t m = 0; m < M; ++m)
        for (size_t r = 0; r < kPackRows; ++r) {
          const size_t n = g * kPackRows + r;
          y[m * N + n] = out[m * kPackRows + r] + (bias ? bias[n] : 0.0f);
        }
    }
  });
}
}  // namespace

void gemv_packed_avx512(ThreadPool& pool, const float* x, size_t M, const WeightView& W,
                        const float* bias, float* y) {
  const size_t N = W.rows, K = W.cols, nb = K / kQBlock;
  const bool q8 = W.dtype == DType::q8_0;
  thread_local Acts a;  // reused: no allocation per call
  a.q.resize(M * K);
  a.d.resize(M * nb);
  a.off.resize(M * nb);
  for (size_t m = 0; m < M; ++m)
    quantize_row(x + m * K, K, q8 ? -128 : -8, a.q.data() + m * K, a.d.data() + m * nb,
                 a.off.data() + m * nb);
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
