// The threaded norms, element-wise ops and RoPE of ops.h: rows (or 4096-float pieces) split over
// the pool, each range run by the AVX-512 kernel (ops/x86/rowwise_avx512.cpp, elementwise_avx512)
// or the scalar twin. A row's or element's result never depends on the range it falls in.
#include <algorithm>

#include "ops/cpu.h"
#include "ops/ops.h"
#include "ops/x86/kernels.h"

namespace stepaudio::ops {

namespace {
// Below this many floats a hand-off to the other threads costs more than the pass (a decode row of
// 3584 floats is normalized in well under a microsecond).
constexpr size_t kSerialFloats = size_t{1} << 15;
// Element-wise pieces: a multiple of 16 floats, so only the last piece has a SIMD tail.
constexpr size_t kPiece = 4096;

bool use_avx512() {
#if defined(__x86_64__)
  return cpu_isa() == Isa::avx512;
#else
  return false;
#endif
}

template <class F>
void for_rows(ThreadPool& pool, size_t M, size_t D, const F& fn) {
  if (M < 2 || M * D < kSerialFloats || pool.size() == 1) return fn(size_t{0}, M);
  pool.parallel_for(M, fn);
}

template <class F>
void for_pieces(ThreadPool& pool, size_t n, const F& fn) {
  if (n < kSerialFloats || pool.size() == 1) return fn(size_t{0}, n);
  pool.parallel_for((n + kPiece - 1) / kPiece,
                    [&](size_t p0, size_t p1) { fn(p0 * kPiece, std::min(n, p1 * kPiece)); });
}
}  // namespace

void add_layer_norm(ThreadPool& pool, float* x, const float* r, size_t M, size_t D, const float* w,
                    const float* b, float eps, float* y) {
  for_rows(pool, M, D, [&](size_t m0, size_t m1) {
    float* xs = x + m0 * D;
    const float* rs = r ? r + m0 * D : nullptr;
#if defined(__x86_64__)
    if (use_avx512()) return x86::add_layer_norm_avx512(xs, rs, m1 - m0, D, w, b, eps, y + m0 * D);
#endif
    if (rs) add(xs, rs, (m1 - m0) * D);
    ref::layer_norm(xs, m1 - m0, D, w, b, eps, y + m0 * D);
  });
}

void layer_norm(ThreadPool& pool, const float* x, size_t M, size_t D, const float* w,
                const float* b, float eps, float* y) {
  // With r null, x is only read.
  add_layer_norm(pool, const_cast<float*>(x), nullptr, M, D, w, b, eps, y);
}

void add_rms_norm(ThreadPool& pool, float* x, const float* r, size_t M, size_t D, const float* w,
                  float eps, float* y) {
  for_rows(pool, M, D, [&](size_t m0, size_t m1) {
    float* xs = x + m0 * D;
    const float* rs = r ? r + m0 * D : nullptr;
#if defined(__x86_64__)
    if (use_avx512()) return x86::add_rms_norm_avx512(xs, rs, m1 - m0, D, w, eps, y + m0 * D);
#endif
    if (rs) add(xs, rs, (m1 - m0) * D);
    ref::rms_norm(xs, m1 - m0, D, w, eps, y + m0 * D);
  });
}

void rms_norm(ThreadPool& pool, const float* x, size_t M, size_t D, const float* w, float eps,
              float* y) {
  add_rms_norm(pool, const_cast<float*>(x), nullptr, M, D, w, eps, y);
}

void gelu(ThreadPool& pool, float* x, size_t n) {
  for_pieces(pool, n, [&](size_t i0, size_t i1) { gelu(x + i0, i1 - i0); });
}

void add(ThreadPool& pool, float* x, const float* y, size_t n) {
  for_pieces(pool, n, [&](size_t i0, size_t i1) {
#if defined(__x86_64__)
    if (use_avx512()) return x86::add_avx512(x + i0, y + i0, i1 - i0);
#endif
    add(x + i0, y + i0, i1 - i0);
  });
}

void silu_mul(ThreadPool& pool, float* g, const float* u, size_t n) {
  for_pieces(pool, n, [&](size_t i0, size_t i1) {
#if defined(__x86_64__)
    if (use_avx512()) return x86::silu_mul_avx512(g + i0, u + i0, i1 - i0);
    if (cpu_isa() == Isa::avx2) return x86::silu_mul_avx2(g + i0, u + i0, i1 - i0);
#endif
    silu(g + i0, i1 - i0);
    mul(g + i0, u + i0, i1 - i0);
  });
}

void rope_rows(ThreadPool& pool, float* x, size_t n, size_t stride, size_t n_heads, size_t head_dim,
               const float* cs) {
  const size_t half = head_dim / 2;
  for_rows(pool, n, n_heads * head_dim, [&](size_t r0, size_t r1) {
#if defined(__x86_64__)
    if (use_avx512())
      return x86::rope_rows_avx512(x + r0 * stride, r1 - r0, stride, n_heads, head_dim,
                                   cs + r0 * 2 * half);
#endif
    for (size_t r = r0; r < r1; ++r)
      ref::rope_row(x + r * stride, n_heads, head_dim, cs + r * 2 * half);
  });
}

}  // namespace stepaudio::ops
