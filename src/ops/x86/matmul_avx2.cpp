// ops::matmul for CPUs with AVX2 + FMA but not our AVX-512 set (Zen 2/3, Haswell..Alder Lake).
// Also reachable on AVX-512 machines with STEPAUDIO_ISA=avx2 (how the tests exercise it).
//
// - q8_0/q4_0 and `fast` bf16 weights with M > kGemvMaxRows when oneDNN is built in: the same
//   exact math (weights dequantized/widened exactly into an f32 panel of kChunk rows, f32
//   accumulation) through oneDNN's f32 GEMM, which blocks for the caches (the prefill); only the
//   summation order differs, and it may depend on M (allowed for fast weights, ops.h).
// - f32/bf16 weights, and q8_0/q4_0 with M > kGemvMaxRows: the exact path of ref::matmul (weights
//   widened or dequantized exactly to f32, f32 FMA), 1 x-row x 4 W-row tiles of 8-wide
//   accumulators; quantized rows are dequantized into a [4][K] f32 panel per tile. There is no
//   bf16 dot instruction in AVX2, so the `fast` bf16 GEMM of the AVX-512 path has no twin here.
// - q8_0/q4_0 with M <= kGemvMaxRows: the int8 GEMV of ref::matmul_q. Without VNNI one block is
//   vpmaddubsw (u8 x s8 -> pairs summed into int16: |x| <= 127 and |w| <= 127 (Q8_0, sign trick)
//   or w in 0..15 (Q4_0) cannot overflow: 2*127*127 < 32767) then vpmaddwd by ones (-> int32);
//   the Q4_0 -8 offset is -8 * sum(x codes) added to the int32 lanes' total. Exact int32 block
//   sums, scaled by d_w * d_x into four float accumulators (block mod 4) as the AVX-512 kernel.
// Work is split over fixed 4-row W tiles / rows and each output accumulates in a fixed order, so
// results do not depend on the thread count.
#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "ops/dnnl_matmul.h"
#include "ops/quant.h"
#include "ops/x86/kernels.h"

#define SA_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace stepaudio::ops::x86 {

namespace {
constexpr size_t kTile = 4;

SA_AVX2 inline float hsum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

// 8 weights from k as f32: f32 rows (p = float*) or bf16 rows (exact widening: shift into the top).
template <bool kBf16>
SA_AVX2 inline __m256 load8(const void* row, size_t k) {
  if constexpr (kBf16) {
    const __m128i h =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + k));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else {
    return _mm256_loadu_ps(static_cast<const float*>(row) + k);
  }
}
template <bool kBf16>
inline float load1(const void* row, size_t k) {
  return kBf16 ? bf16_to_f32(static_cast<const uint16_t*>(row)[k])
               : static_cast<const float*>(row)[k];
}

// out[j] = x[0..K) . W row j, for nr <= 4 rows at w + j * ldw.
template <bool kBf16>
SA_AVX2 void dot_rows_exact(const float* x, const char* w, size_t ldw, size_t K, int nr,
                            float* out) {
  __m256 acc[kTile] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                       _mm256_setzero_ps()};
  size_t k = 0;
  for (; k + 8 <= K; k += 8) {
    const __m256 xv = _mm256_loadu_ps(x + k);
    for (int j = 0; j < nr; ++j) acc[j] = _mm256_fmadd_ps(xv, load8<kBf16>(w + j * ldw, k), acc[j]);
  }
  for (int j = 0; j < nr; ++j) {
    float s = hsum(acc[j]);
    for (size_t t = k; t < K; ++t) s += x[t] * load1<kBf16>(w + j * ldw, t);
    out[j] = s;
  }
}

// Exact path for f32/bf16 rows, and for block rows through a dequantized f32 panel.
void matmul_exact(ThreadPool& pool, const float* x, size_t M, const WeightView& W,
                  const float* bias, float* y) {
  const size_t N = W.rows, K = W.cols;
  const size_t tiles = (N + kTile - 1) / kTile;
  pool.parallel_for(tiles, [&](size_t t0, size_t t1) {
    std::vector<float> panel(is_block_type(W.dtype) ? kTile * K : 0);  // [4][K] dequantized
    float out[kTile];
    for (size_t t = t0; t < t1; ++t) {
      const size_t n = t * kTile;
      const int nr = static_cast<int>(std::min(kTile, N - n));
      const char* w = W.row_ptr(n);
      size_t ldw = row_bytes(W.dtype, K);
      bool bf = W.dtype == DType::bf16;
      if (is_block_type(W.dtype)) {
        for (int j = 0; j < nr; ++j) W.row_f32(n + j, panel.data() + j * K);
        w = reinterpret_cast<const char*>(panel.data());
        ldw = K * 4;
        bf = false;
      }
      for (size_t m = 0; m < M; ++m) {
        (bf ? dot_rows_exact<true> : dot_rows_exact<false>)(x + m * K, w, ldw, K, nr, out);
        for (int j = 0; j < nr; ++j) y[m * N + n + j] = out[j] + (bias ? bias[n + j] : 0.0f);
      }
    }
  });
}

// Activations quantized per 32-block (ops/quant.h semantics): codes, |codes|, scales, code sums.
struct QuantAct {
  std::vector<int8_t> q, a;
  std::vector<float> d;
  std::vector<int32_t> s;
};
void quantize_act(const float* x, size_t K, QuantAct& o) {
  o.q.resize(K);
  o.a.resize(K);
  o.d.resize(K / kQBlock);
  o.s.resize(K / kQBlock);
  quantize_act_q8(x, K, o.q.data(), o.d.data(), o.s.data());  // scalar: O(K), once per call
  for (size_t i = 0; i < K; ++i) o.a[i] = static_cast<int8_t>(o.q[i] < 0 ? -o.q[i] : o.q[i]);
}

template <bool kQ8>
SA_AVX2 float dot_q(const char* row, const QuantAct& x, size_t nb) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i m4 = _mm256_set1_epi8(15);
  auto step = [&](size_t b, __m256& a) SA_AVX2 __attribute__((always_inline)) {
    const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q.data() + b * 32));
    __m256i p;
    uint16_t d;
    if constexpr (kQ8) {
      const BlockQ8_0& blk = reinterpret_cast<const BlockQ8_0*>(row)[b];
      const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qs));
      const __m256i xa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.a.data() + b * 32));
      p = _mm256_madd_epi16(_mm256_maddubs_epi16(xa, _mm256_sign_epi8(wv, xq)), ones);
      d = blk.d;
    } else {
      const BlockQ4_0& blk = reinterpret_cast<const BlockQ4_0*>(row)[b];
      const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.qs));
      const __m256i wv = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), m4);
      p = _mm256_madd_epi16(_mm256_maddubs_epi16(wv, xq), ones);
      p = _mm256_add_epi32(p, _mm256_setr_epi32(-8 * x.s[b], 0, 0, 0, 0, 0, 0, 0));
      d = blk.d;
    }
    const __m256 sc = _mm256_set1_ps(_cvtsh_ss(d) * x.d[b]);
    a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), sc, a);
  };
  size_t b = 0;
  for (; b + 4 <= nb; b += 4) {  // unrolled so each accumulator stays in a register
    step(b, acc[0]);
    step(b + 1, acc[1]);
    step(b + 2, acc[2]);
    step(b + 3, acc[3]);
  }
  for (; b < nb; ++b) step(b, acc[b & 3]);
  return hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
}

void matmul_q_gemv(ThreadPool& pool, const float* x, size_t M, const WeightView& W,
                   const float* bias, float* y) {
  const size_t N = W.rows, K = W.cols, nb = K / kQBlock;
  std::vector<QuantAct> acts(M);
  for (size_t m = 0; m < M; ++m) quantize_act(x + m * K, K, acts[m]);
  const bool q8 = W.dtype == DType::q8_0;
  pool.parallel_for(N, [&](size_t n0, size_t n1) {
    for (size_t n = n0; n < n1; ++n) {
      const float b = bias ? bias[n] : 0.0f;
      for (size_t m = 0; m < M; ++m)
        y[m * N + n] = (q8 ? dot_q<true>(W.row_ptr(n), acts[m], nb)
                           : dot_q<false>(W.row_ptr(n), acts[m], nb)) +
                       b;
    }
  });
}
// Rows of W per work item of the oneDNN path: a [64][K] f32 panel (K = 3584: 0.9 MB) stays in L2.
constexpr size_t kChunk = 64;

// The fast GEMM through oneDNN (see the top); false when oneDNN refused (nothing to trust in y).
bool matmul_dnnl(ThreadPool& pool, const float* x, size_t M, const WeightView& W, const float* bias,
                 float* y) {
  const size_t N = W.rows, K = W.cols, chunks = (N + kChunk - 1) / kChunk;
  std::atomic<bool> ok{true};
  pool.parallel_for(chunks, [&](size_t c0, size_t c1) {
    std::vector<float> panel(kChunk * K);  // [kChunk][K] exact f32 weights
    for (size_t c = c0; c < c1 && ok.load(std::memory_order_relaxed); ++c) {
      const size_t n0 = c * kChunk, nc = std::min(kChunk, N - n0);
      for (size_t j = 0; j < nc; ++j) W.row_f32(n0 + j, panel.data() + j * K);
      if (!dnnl_gemm::matmul(false, M, nc, K, {x, K, 1}, {panel.data(), 1, K}, y + n0, N)) {
        ok = false;
        return;
      }
      if (bias) add_bias_chunk(y, M, N, n0, nc, bias);
    }
  });
  return ok;
}
}  // namespace

void matmul_avx2(ThreadPool& pool_in, const float* x, size_t M, const WeightView& W,
                 const float* bias, float* y) {
  static ThreadPool serial(1);  // as matmul_avx512: tiny products stay on the caller
  ThreadPool& pool = M * W.rows * W.cols < (size_t{1} << 16) ? serial : pool_in;
  if (int8_path(W, M)) return matmul_q_gemv(pool, x, M, W, bias, y);
  const bool fast = is_block_type(W.dtype) || (W.dtype == DType::bf16 && W.fast);
  if (fast && M > kGemvMaxRows && dnnl_gemm::enabled() && matmul_dnnl(pool, x, M, W, bias, y))
    return;
  matmul_exact(pool, x, M, W, bias, y);
}

}  // namespace stepaudio::ops::x86
#endif
