// The decode GEMV's packed (16-row interleaved) Q8_0/Q4_0 layout (ops/repack.h): pack round trip,
// the packed kernels bit-identical to the scalar twin ref::matmul_q on odd shapes, misaligned
// pointers and any thread count, the prefill GEMM reading packed weights as plain ones (its panel
// dequantizer by whole groups vs by row), and a model whose decoder was packed (q|k|v and gate|up
// fused) decoding as the plain one.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "model/model_data.h"
#include "model/session.h"
#include "ops/cpu.h"
#include "ops/ops.h"
#include "ops/quant.h"
#include "ops/repack.h"
#include "ops/x86/kernels.h"
#include "random_inputs.h"

using namespace stepaudio;
using namespace stepaudio::ops;

namespace {

// A quantized [N][K] matrix in the plain layout and its packed copy, each at an address misaligned
// for SIMD loads. `misalign` must be even: a block's f16 scale needs 2-byte alignment, which every
// real source gives (GGUF tensors are >= 32-byte aligned, load-time quantization uses our buffers).
struct Pair {
  std::vector<char> plain_buf, packed_buf;
  WeightView plain, packed;
};
Pair make_pair(DType t, size_t N, size_t K, uint64_t seed, size_t misalign) {
  Pair p;
  if (misalign % 2 != 0) throw std::invalid_argument("make_pair: misalign must be even");
  const size_t rb = row_bytes(t, K);
  p.plain_buf.resize(N * rb + 64);
  p.packed_buf.resize(N * rb + 64);
  char* a = p.plain_buf.data() + misalign;
  char* b = p.packed_buf.data() + 64 - misalign;
  auto w = randn(N * K, seed, 0.05f);
  for (size_t n = 0; n < N; ++n) {
    if (t == DType::q8_0)
      quantize_row_q8_0(w.data() + n * K, reinterpret_cast<BlockQ8_0*>(a + n * rb), K);
    else
      quantize_row_q4_0(w.data() + n * K, reinterpret_cast<BlockQ4_0*>(a + n * rb), K);
  }
  ThreadPool pool(2);
  pack_matrix(pool, t, a, N, K, b);
  p.plain = {t, a, N, K, true, false};
  p.packed = {t, b, N, K, true, true};
  return p;
}

const std::vector<size_t> kRows = {1, 15, 16, 17, 33, 48, 100};
const std::vector<size_t> kCols = {32, 64, 96, 160, 288};  // nb = 1, 2, 3, 5, 9 (odd last block)
}  // namespace

TEST(Kernels, PackedLayoutRoundTrip) {
  uint64_t seed = 1;
  for (DType t : {DType::q8_0, DType::q4_0})
    for (size_t N : kRows)
      for (size_t K : kCols) {
        Pair p = make_pair(t, N, K, ++seed, 6);
        const size_t rb = row_bytes(t, K);
        std::vector<char> row(rb);
        std::vector<float> f1(K), f2(K);
        for (size_t n = 0; n < N; ++n) {
          copy_plain_row(p.packed, n, row.data());
          ASSERT_EQ(0, std::memcmp(row.data(), p.plain.row_ptr(n), rb))
              << dtype_name(t) << " N=" << N << " K=" << K << " row " << n;
          p.packed.row_f32(n, f1.data());
          p.plain.row_f32(n, f2.data());
          ASSERT_EQ(0, std::memcmp(f1.data(), f2.data(), K * 4));
        }
        EXPECT_EQ(packed_rows(p.packed), N - N % kPackRows);
      }
}

TEST(Kernels, PackedLayoutOffsetsTileTheGroup) {
  // Every block's scales (32 B) and codes (C B) together cover the group exactly once.
  for (size_t C : {256, 512})
    for (size_t nb : {1, 2, 3, 4, 7}) {
      std::vector<int> cover(nb * (C + 32), 0);
      for (size_t b = 0; b < nb; ++b) {
        size_t s, c;
        packed_block_offsets(b, nb, C, &s, &c);
        for (size_t i = 0; i < 32; ++i) ++cover.at(s + i);
        for (size_t i = 0; i < C; ++i) ++cover.at(c + i);
        if ((b | 1) < nb) {
          EXPECT_EQ(c % 64, 0u) << "codes of a pair start on a cache line";
        }
      }
      for (int v : cover) ASSERT_EQ(v, 1);
    }
}

TEST(Kernels, PackedGemvBitIdenticalToScalarTwin) {
  uint64_t seed = 500;
  for (DType t : {DType::q8_0, DType::q4_0})
    for (size_t N : kRows)
      for (size_t K : kCols)
        for (size_t M = 1; M <= kGemvMaxRows; ++M) {
          Pair p = make_pair(t, N, K, ++seed, 2);
          auto xs = randn(M * K + 1, seed + 7);
          auto bias = randn(N, seed + 9);
          const float* x = xs.data() + 1;  // misaligned by one float
          std::vector<float> yr(M * N), yp(M * N + 1), yt(M * N);
          ThreadPool p1(1), p2(2), p3(3);
          ref::matmul_q(p1, x, M, p.plain, bias.data(), yr.data());
          matmul(p2, x, M, p.packed, bias.data(), yp.data() + 1);
          ASSERT_EQ(0, std::memcmp(yr.data(), yp.data() + 1, yr.size() * 4))
              << dtype_name(t) << " M=" << M << " N=" << N << " K=" << K;
          matmul(p3, x, M, p.packed, nullptr, yp.data());
          ref::matmul_q(p3, x, M, p.packed, nullptr, yt.data());  // the twin reads packed too
          ref::matmul_q(p1, x, M, p.plain, nullptr, yr.data());
          ASSERT_EQ(0, std::memcmp(yr.data(), yp.data(), yr.size() * 4));
          ASSERT_EQ(0, std::memcmp(yr.data(), yt.data(), yr.size() * 4));
        }
}

TEST(Kernels, Int8PrefillGemmBitIdenticalToScalarTwin) {
  // WeightView::int8_act: every M takes the int8 semantics, the packed kernel in row tiles (of 16
  // when M > kGemvMaxRows, partial last tiles of 1 to 15 rows included). Each packed row must equal
  // ref::matmul_q bit for bit, and every row the same row computed alone (M = 1): what makes
  // batched decode and chunked prefill exact.
  uint64_t seed = 700;
  for (DType t : {DType::q8_0, DType::q4_0})
    for (size_t N : {17, 48})
      for (size_t K : {96, 288})
        for (size_t M : {9, 16, 17, 21, 40}) {
          Pair p = make_pair(t, N, K, ++seed, 2);
          p.plain.int8_act = p.packed.int8_act = true;
          auto x = randn(M * K, seed + 3);
          auto bias = randn(N, seed + 4);
          std::vector<float> yr(M * N), yp(M * N), yu(M * N), y1(N);
          ThreadPool p1(1), p2(2);
          ref::matmul_q(p1, x.data(), M, p.plain, bias.data(), yr.data());
          matmul(p2, x.data(), M, p.packed, bias.data(), yp.data());
          matmul(p2, x.data(), M, p.plain, bias.data(), yu.data());
          ASSERT_EQ(0, std::memcmp(yr.data(), yp.data(), yr.size() * 4))
              << dtype_name(t) << " M=" << M << " N=" << N << " K=" << K;
          // The plain-layout kernels have their own (tested) block order, but a row's bits still
          // do not depend on M there either.
          for (size_t m : {size_t{0}, M - 1}) {
            matmul(p2, x.data() + m * K, 1, p.packed, bias.data(), y1.data());
            ASSERT_EQ(0, std::memcmp(y1.data(), yr.data() + m * N, N * 4)) << "row " << m;
            matmul(p2, x.data() + m * K, 1, p.plain, bias.data(), y1.data());
            ASSERT_EQ(0, std::memcmp(y1.data(), yu.data() + m * N, N * 4)) << "plain row " << m;
          }
        }
}

TEST(Kernels, PackedWeightsInPrefillGemmAsPlain) {
  // M > kGemvMaxRows: the GEMM dequantizes rows; packed rows must give the plain rows' bits.
  for (DType t : {DType::q8_0, DType::q4_0})
    for (size_t M : {9, 13}) {
      const size_t N = 37, K = 96;
      Pair p = make_pair(t, N, K, 77 + M, 4);
      auto x = randn(M * K, 78);
      std::vector<float> y1(M * N), y2(M * N);
      ThreadPool pool(2);
      // Forced AVX2 (ctest's second pass) sends packed weights to the scalar twin.
      if (cpu_isa() == Isa::avx2)
        ref::matmul(pool, x.data(), M, p.plain, nullptr, y1.data());
      else
        matmul(pool, x.data(), M, p.plain, nullptr, y1.data());
      matmul(pool, x.data(), M, p.packed, nullptr, y2.data());
      EXPECT_EQ(0, std::memcmp(y1.data(), y2.data(), y1.size() * 4)) << dtype_name(t);
    }
}

#if defined(__x86_64__)
TEST(Kernels, PackedGroupDequantEqualsRows) {
  // The prefill panels: whole 16-row groups dequantized in one pass (transposed in registers)
  // must give each row's bf16 values exactly as the per-row paths (plain rows, packed rows
  // gathered) and the scalar bf16(q * d). Ranges start on and off a group boundary, end inside a
  // group and in the plain tail; ld is odd (panel rows misaligned).
  if (cpu_isa() != Isa::avx512) GTEST_SKIP() << "needs AVX-512";
  uint64_t seed = 900;
  for (DType t : {DType::q8_0, DType::q4_0})
    for (size_t N : {16, 17, 40, 100})
      for (size_t K : kCols) {
        Pair p = make_pair(t, N, K, ++seed, 2);
        const size_t ld = K + 3;
        std::vector<float> f(K);
        std::vector<uint16_t> row(K), want(N * ld, 0);
        for (size_t n = 0; n < N; ++n) {
          p.plain.row_f32(n, f.data());
          for (size_t k = 0; k < K; ++k) want[n * ld + k] = f32_to_bf16(f[k]);
          x86::dequant_row_bf16_avx512(p.plain, n, row.data());
          ASSERT_EQ(0, std::memcmp(row.data(), want.data() + n * ld, K * 2)) << "plain row " << n;
          x86::dequant_row_bf16_avx512(p.packed, n, row.data());
          ASSERT_EQ(0, std::memcmp(row.data(), want.data() + n * ld, K * 2)) << "packed row " << n;
        }
        for (auto [n0, count] : {std::pair<size_t, size_t>{0, N},
                                 {0, std::min<size_t>(N, 20)},
                                 {16, N - 16},
                                 {3, N - 3}}) {
          std::vector<uint16_t> got(N * ld, 0);
          x86::dequant_rows_bf16_avx512(p.packed, n0, count, got.data(), ld);
          for (size_t j = 0; j < count; ++j)
            ASSERT_EQ(0, std::memcmp(got.data() + j * ld, want.data() + (n0 + j) * ld, K * 2))
                << dtype_name(t) << " N=" << N << " K=" << K << " n0=" << n0 << " row " << j;
          x86::dequant_rows_bf16_avx512(p.plain, n0, count, got.data(), ld);
          for (size_t j = 0; j < count; ++j)
            ASSERT_EQ(0, std::memcmp(got.data() + j * ld, want.data() + (n0 + j) * ld, K * 2));
        }
      }
}
#endif

TEST(Kernels, PackedDecoderDecodesLikePlain) {
  for (Quant q : {Quant::q8, Quant::q4}) {
    auto plain = make_synthetic_model("tiny", 5, q, false);
    auto packed = make_synthetic_model("tiny", 5, q, true, true, /*int8_encoder=*/false);
    const bool avx512 = cpu_isa() == Isa::avx512;
    EXPECT_EQ(packed->layers[0].qkv.w.data != nullptr, avx512);
    EXPECT_EQ(packed->lm_head.w.packed, avx512);
    EXPECT_EQ(plain->weight_bytes, packed->weight_bytes);
    ThreadPool pool(2);
    model::Session a(*plain, pool, 16), b(*packed, pool, 16);
    const size_t H = plain->cfg.text.hidden, V = plain->cfg.text.vocab;
    std::vector<float> x(6 * H), la(V), lb(V);
    for (int i = 0; i < 6; ++i) a.embed(7 + i, x.data() + i * H);
    // Step 0: prefill of 6 rows (the same GEMM on both), then lm_head's GEMV; then decode steps
    // (one-row plain kernel vs packed and fused): equal within float reassociation.
    for (int step = 0; step < 5; ++step) {
      const size_t n = step == 0 ? 6 : 1;
      if (step > 0) a.embed(20 + step, x.data());
      a.forward(x.data(), n, la.data());
      b.forward(x.data(), n, lb.data());
      double mx = 0, diff = 0;
      for (size_t i = 0; i < V; ++i) {
        mx = std::max(mx, std::fabs(static_cast<double>(la[i])));
        diff = std::max(diff, std::fabs(static_cast<double>(la[i]) - lb[i]));
      }
      EXPECT_LE(diff, 1e-4 * mx) << quant_name(q) << " step " << step;
    }
  }
}

TEST(Kernels, Int8EncoderIsPackedQ8WithInt8Activations) {
  // LoadOptions::int8_encoder: on AVX-512 every encoder block matrix becomes packed Q8_0 read
  // with int8 activations, the bf16 sources freed (fewer bytes held); elsewhere nothing changes.
  // Its accuracy (adapter NMSE against the reference) is checked in test_quant_kl.cpp.
  const bool avx512 = cpu_isa() == Isa::avx512;
  auto bf16_enc = make_synthetic_model("tiny", 5, Quant::q4, true, true, false);
  auto int8_enc = make_synthetic_model("tiny", 5, Quant::q4, true, true, true);
  for (const auto& b : int8_enc->blocks)
    for (const model::Linear* l : {&b.query, &b.key, &b.value, &b.out, &b.fc1, &b.fc2}) {
      EXPECT_EQ(l->w.dtype == DType::q8_0, avx512);
      EXPECT_EQ(l->w.packed && l->w.int8_act && l->w.fast, avx512);
    }
  for (const auto& b : bf16_enc->blocks) EXPECT_EQ(b.fc1.w.dtype, DType::bf16);
  if (avx512) {
    EXPECT_LT(int8_enc->weight_bytes, bf16_enc->weight_bytes);
  } else {
    EXPECT_EQ(int8_enc->weight_bytes, bf16_enc->weight_bytes);
  }
  // Never for f32/bf16 models.
  auto exact = make_synthetic_model("tiny", 5, Quant::bf16);
  EXPECT_EQ(exact->blocks[0].fc1.w.dtype, DType::bf16);
}
