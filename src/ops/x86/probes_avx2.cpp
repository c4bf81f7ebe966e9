// The peak probes of ops/probes.h for Isa::avx2 CPUs (no AVX-512: Zen 2/3, Haswell..Alder Lake):
// 8-wide FMA chains (their fast GEMM runs in float32: ops/x86/matmul_avx2.cpp) and the int8 block
// dot of their GEMV (vpmaddubsw + vpmaddwd), 12 independent chains as the AVX-512 loops.
#if defined(__x86_64__)
#include <immintrin.h>

#include "ops/x86/kernels.h"

#define SA_AVX2 __attribute__((target("avx2,fma")))

namespace stepaudio::ops::x86 {

namespace {
constexpr int kChains = 12;

SA_AVX2 float hsum8(__m256 v) {
  alignas(32) float t[8];
  _mm256_store_ps(t, v);
  float s = 0;
  for (float x : t) s += x;
  return s;
}
}  // namespace

SA_AVX2 double fma_f32_loop_avx2(size_t iters) {
  __m256 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.001f);
  for (size_t it = 0; it < iters; ++it)
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  __m256 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm256_add_ps(s, acc[i]);
  volatile float sink = hsum8(s);
  (void)sink;
  return static_cast<double>(iters) * kChains * 8 * 2;
}

// One u8 x s8 block step of the AVX2 GEMV: 32 products summed in pairs to int16, then to int32.
SA_AVX2 double dot_int8_loop_avx2(size_t iters) {
  __m256i acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_epi32(i);
  const __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
  for (size_t it = 0; it < iters; ++it)
    for (int i = 0; i < kChains; ++i)
      acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones));
  __m256i s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm256_add_epi32(s, acc[i]);
  volatile int sink = _mm256_extract_epi32(s, 0) + _mm256_extract_epi32(s, 7);
  (void)sink;
  return static_cast<double>(iters) * kChains * 32 * 2;
}

}  // namespace stepaudio::ops::x86
#endif
