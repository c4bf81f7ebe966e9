// Scalar matmul: y = x W^T + b. The portable fallback and the oracle of the SIMD kernels.
//
// Work is split over output columns (rows of W): each thread widens its W rows to float32 once and
// takes the dot product with every row of x. Every y[m][n] is one dot product accumulated in a
// fixed order (4 interleaved partial sums, then combined), independent of the partition.
#include <algorithm>
#include <vector>

#include "ops/ops.h"
#include "ops/quant.h"
#include "ops/repack.h"

namespace stepaudio::ops::ref {

namespace {
inline float dot(const float* a, const float* b, size_t n) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
    s2 += a[i + 2] * b[i + 2];
    s3 += a[i + 3] * b[i + 3];
  }
  for (; i < n; ++i) s0 += a[i] * b[i];
  return (s0 + s1) + (s2 + s3);
}
}  // namespace

void matmul(ThreadPool& pool, const float* x, size_t M, const WeightView& W, const float* bias,
            float* y) {
  const size_t N = W.rows, K = W.cols;
  pool.parallel_for(N, [&](size_t n0, size_t n1) {
    std::vector<float> wrow(W.dtype == DType::f32 ? 0 : K);  // [K] widened weight row
    for (size_t n = n0; n < n1; ++n) {
      const float* w;
      if (W.dtype == DType::f32) {
        w = static_cast<const float*>(W.data) + n * K;
      } else {
        W.row_f32(n, wrow.data());
        w = wrow.data();
      }
      const float b = bias ? bias[n] : 0.0f;
      for (size_t m = 0; m < M; ++m) y[m * N + n] = dot(x + m * K, w, K) + b;
    }
  });
}

void matmul_q(ThreadPool& pool, const float* x, size_t M, const WeightView& W, const float* bias,
              float* y) {
  if (!is_block_type(W.dtype)) return ref::matmul(pool, x, M, W, bias, y);
  const size_t N = W.rows, K = W.cols, nb = K / kQBlock;
  std::vector<int8_t> xq(M * K);  // [M][K] int8 codes
  std::vector<float> xd(M * nb);  // [M][K/32] scales
  for (size_t m = 0; m < M; ++m)
    quantize_act_q8(x + m * K, K, xq.data() + m * K, xd.data() + m * nb, nullptr);
  pool.parallel_for(N, [&](size_t n0, size_t n1) {
    std::vector<char> plain(W.packed ? row_bytes(W.dtype, K) : 0);  // a packed row, unpacked
    for (size_t n = n0; n < n1; ++n) {
      const float b = bias ? bias[n] : 0.0f;
      const char* row = W.row_ptr(n);
      if (W.packed) {
        copy_plain_row(W, n, plain.data());
        row = plain.data();
      }
      for (size_t m = 0; m < M; ++m) {
        const int8_t* q = xq.data() + m * K;
        const float* d = xd.data() + m * nb;
        const float v = W.dtype == DType::q8_0
                            ? vec_dot_q8_0(reinterpret_cast<const BlockQ8_0*>(row), q, d, K)
                            : vec_dot_q4_0(reinterpret_cast<const BlockQ4_0*>(row), q, d, K);
        y[m * N + n] = v + b;
      }
    }
  });
}

}  // namespace stepaudio::ops::ref
