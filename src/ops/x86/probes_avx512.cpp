// The probe loops of ops/probes.h: 12 independent accumulator chains per loop (more than
// latency x throughput of each instruction on Zen 4 / Golden Cove), so the loops run at the
// execution units' peak; results feed a reduction so the compiler cannot drop them.
#if defined(__x86_64__)
#include <immintrin.h>

#include "ops/x86/avx512_target.h"
#include "ops/x86/kernels.h"

namespace stepaudio::ops::x86 {

constexpr int kChains = 12;

SA_AVX512 double fma_f32_loop_avx512(size_t iters) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
  for (size_t it = 0; it < iters; ++it)
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  __m512 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, acc[i]);
  volatile float sink = _mm512_reduce_add_ps(s);
  (void)sink;
  return static_cast<double>(iters) * kChains * 16 * 2;
}

SA_AVX512 double dot_bf16_loop_avx512(size_t iters) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(2e-3f));
  const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f));
  for (size_t it = 0; it < iters; ++it)
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  __m512 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, acc[i]);
  volatile float sink = _mm512_reduce_add_ps(s);
  (void)sink;
  return static_cast<double>(iters) * kChains * 32 * 2;
}

SA_AVX512 double dot_int8_loop_avx512(size_t iters) {
  __m512i acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_epi32(i);
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
  for (size_t it = 0; it < iters; ++it)
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
  __m512i s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_epi32(s, acc[i]);
  volatile int sink = _mm512_reduce_add_epi32(s);
  (void)sink;
  return static_cast<double>(iters) * kChains * 64 * 2;
}

// The decode GEMV's read pattern without its arithmetic: one sequential stream, 64-byte loads, 8
// per step into independent accumulators (a packed Q8_0 block pair is 17 cache lines). Any size:
// 64-byte steps, then a masked load for the last bytes.
SA_AVX512 uint64_t read_sum_avx512(const void* p, size_t bytes) {
  const char* c = static_cast<const char*>(p);
  __m512i s[8];
  for (auto& v : s) v = _mm512_setzero_si512();
  size_t i = 0;
  for (; i + 512 <= bytes; i += 512)
    for (int j = 0; j < 8; ++j) s[j] = _mm512_xor_si512(s[j], _mm512_loadu_si512(c + i + 64 * j));
  for (; i + 64 <= bytes; i += 64) s[0] = _mm512_xor_si512(s[0], _mm512_loadu_si512(c + i));
  if (i < bytes)
    s[1] = _mm512_xor_si512(s[1], _mm512_maskz_loadu_epi8(~0ull >> (64 - (bytes - i)), c + i));
  for (int j = 1; j < 8; ++j) s[0] = _mm512_xor_si512(s[0], s[j]);
  return static_cast<uint64_t>(_mm512_reduce_add_epi64(s[0]));
}

}  // namespace stepaudio::ops::x86
#endif
