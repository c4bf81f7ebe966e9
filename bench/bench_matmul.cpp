// Kernel micro-benchmarks: decode GEMV (M=1) and prefill GEMM (M=128) at the decoder's shapes, per
// weight format; `_packed`: the decode layout (16-row interleaved, ops/repack.h) the loader makes
// on AVX-512 CPUs. Counters: GB/s of weights streamed (GEMV) and GFLOP/s (GEMM).
//   build/bin/bench_matmul --benchmark_filter=Gemv   (compare with `stepaudio bench` read GB/s)
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "ops/cpu.h"
#include "ops/ops.h"
#include "ops/quant.h"
#include "ops/repack.h"
#include "ops/x86/kernels.h"

using namespace stepaudio::ops;

namespace {
struct Weights {
  std::vector<char> storage;
  char* data = nullptr;  // 64-byte aligned inside storage, as the model's 2 MiB-aligned buffers
  size_t bytes = 0;
  WeightView view;
};

Weights make(DType t, size_t N, size_t K, bool packed) {
  std::mt19937 g(1);
  std::normal_distribution<float> d(0.0f, 0.02f);
  Weights w;
  const size_t rb = row_bytes(t, K);
  w.bytes = N * rb;
  w.storage.resize(w.bytes + 64);
  w.data = w.storage.data() + (64 - reinterpret_cast<uintptr_t>(w.storage.data()) % 64) % 64;
  std::vector<float> row(K);
  for (size_t n = 0; n < N; ++n) {
    for (auto& v : row) v = d(g);
    char* dst = w.data + n * rb;
    if (t == DType::bf16)
      for (size_t k = 0; k < K; ++k) reinterpret_cast<uint16_t*>(dst)[k] = f32_to_bf16(row[k]);
    else if (t == DType::q8_0)
      quantize_row_q8_0(row.data(), reinterpret_cast<BlockQ8_0*>(dst), K);
    else if (t == DType::q4_0)
      quantize_row_q4_0(row.data(), reinterpret_cast<BlockQ4_0*>(dst), K);
    else
      std::copy(row.begin(), row.end(), reinterpret_cast<float*>(dst));
  }
  w.view = WeightView{t, w.data, N, K, true};
  if (packed) {
    std::vector<char> plain(w.data, w.data + w.bytes);
    ThreadPool pool(0);
    pack_matrix(pool, t, plain.data(), N, K, w.data);
    w.view.packed = true;
  }
  return w;
}

void run(benchmark::State& st, DType t, size_t M, size_t N, size_t K, bool packed = false,
         bool int8 = false) {
  Weights w = make(t, N, K, packed);
  w.view.int8_act = int8;  // M > kGemvMaxRows: the int8 VNNI GEMM instead of the bf16 one
  std::vector<float> x(M * K, 0.5f), y(M * N);
  ThreadPool pool(static_cast<int>(st.range(0)));
  for (auto _ : st) {
    matmul(pool, x.data(), M, w.view, nullptr, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  const double it = static_cast<double>(st.iterations());
  st.counters["GB/s"] = benchmark::Counter(it * w.bytes, benchmark::Counter::kIsRate);
  st.counters["GFLOP/s"] =
      benchmark::Counter(it * 2.0 * M * N * K / 1e9, benchmark::Counter::kIsRate);
}

#if defined(__x86_64__)
// The prefill GEMM's panel dequantization alone (1 thread, all 4096 rows into one 128-row panel
// after another): plain rows, packed rows by 16-row groups, packed rows one by one (the gather).
void dequant(benchmark::State& st, DType t, bool packed, bool by_row) {
  if (cpu_isa() != Isa::avx512) return st.SkipWithError("needs AVX-512");
  const size_t N = 18944, K = 3584, kChunk = 128;
  Weights w = make(t, N, K, packed);
  const size_t ld = K;
  std::vector<uint16_t> panel(kChunk * (K + 32) + 32);
  uint16_t* p = panel.data() + (64 - reinterpret_cast<uintptr_t>(panel.data()) % 64) % 64 / 2;
  for (auto _ : st) {
    for (size_t n0 = 0; n0 < N; n0 += kChunk) {
      if (by_row)
        for (size_t j = 0; j < kChunk; ++j)
          x86::dequant_row_bf16_avx512(w.view, n0 + j, p + j * ld);
      else
        x86::dequant_rows_bf16_avx512(w.view, n0, kChunk, p, ld);
      benchmark::DoNotOptimize(p);
    }
  }
  st.counters["GB/s"] = benchmark::Counter(static_cast<double>(st.iterations()) * w.bytes,
                                           benchmark::Counter::kIsRate);
}
#endif
}  // namespace

#if defined(__x86_64__)
BENCHMARK_CAPTURE(dequant, Dequant_q4_plain, DType::q4_0, false, false);
BENCHMARK_CAPTURE(dequant, Dequant_q4_packed, DType::q4_0, true, false);
BENCHMARK_CAPTURE(dequant, Dequant_q4_packed_by_row, DType::q4_0, true, true);
BENCHMARK_CAPTURE(dequant, Dequant_q8_plain, DType::q8_0, false, false);
BENCHMARK_CAPTURE(dequant, Dequant_q8_packed, DType::q8_0, true, false);
BENCHMARK_CAPTURE(dequant, Dequant_q8_packed_by_row, DType::q8_0, true, true);
#endif

// Gate/up projection shape (18944 x 3584): 68-136 MB per matrix, larger than any cache.
BENCHMARK_CAPTURE(run, Gemv_q4, DType::q4_0, 1, 18944, 3584)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK_CAPTURE(run, Gemv_q8, DType::q8_0, 1, 18944, 3584)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK_CAPTURE(run, Gemv_bf16, DType::bf16, 1, 18944, 3584)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK_CAPTURE(run, Gemv_q4_packed, DType::q4_0, 1, 18944, 3584, true)
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(run, Gemv_q8_packed, DType::q8_0, 1, 18944, 3584, true)
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime();
// The per-layer shapes of decode with the fused calls: q|k|v (4608 x 3584, 9.3 MB in q4: per-call
// overheads show here), o (3584 x 3584), gate|up (37888 x 3584), down (3584 x 18944).
BENCHMARK_CAPTURE(run, Gemv_q4_packed_qkv, DType::q4_0, 1, 4608, 3584, true)->Arg(2)->UseRealTime();
BENCHMARK_CAPTURE(run, Gemv_q4_packed_o, DType::q4_0, 1, 3584, 3584, true)->Arg(2)->UseRealTime();
BENCHMARK_CAPTURE(run, Gemv_q4_packed_gateup, DType::q4_0, 1, 37888, 3584, true)
    ->Arg(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(run, Gemv_q4_packed_down, DType::q4_0, 1, 3584, 18944, true)
    ->Arg(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(run, Gemv_q8_packed_qkv, DType::q8_0, 1, 4608, 3584, true)->Arg(2)->UseRealTime();
BENCHMARK_CAPTURE(run, Gemv_q8_packed_down, DType::q8_0, 1, 3584, 18944, true)
    ->Arg(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(run, Gemm_q4_M128, DType::q4_0, 128, 4096, 3584)->Arg(2)->UseRealTime();
BENCHMARK_CAPTURE(run, Gemm_bf16_M128, DType::bf16, 128, 4096, 3584)->Arg(2)->UseRealTime();
// Prefill from the decoder's packed layout (what --quant q8/q4 uses on AVX-512): the 128-row
// panels are dequantized from 16-row interleaved groups. gate|up (18944 x 3584) and down
// (3584 x 18944) at M = 155 (the 10 s bench prompt).
BENCHMARK_CAPTURE(run, Gemm_q4_M128_packed, DType::q4_0, 128, 4096, 3584, true)
    ->Arg(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(run, Gemm_q8_M128, DType::q8_0, 128, 4096, 3584)->Arg(2)->UseRealTime();
BENCHMARK_CAPTURE(run, Gemm_q8_M128_packed, DType::q8_0, 128, 4096, 3584, true)
    ->Arg(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(run, Gemm_q4_M155_packed_up, DType::q4_0, 155, 18944, 3584, true)
    ->Arg(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(run, Gemm_q4_M155_packed_down, DType::q4_0, 155, 3584, 18944, true)
    ->Arg(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(run, Gemm_q8_M155_packed_up, DType::q8_0, 155, 18944, 3584, true)
    ->Arg(2)
    ->UseRealTime();
// The same with int8 activations (WeightView::int8_act, the default prefill of --quant q8/q4).
BENCHMARK_CAPTURE(run, Gemm_q4_M155_packed_up_int8, DType::q4_0, 155, 18944, 3584, true, true)
    ->Arg(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(run, Gemm_q4_M155_packed_down_int8, DType::q4_0, 155, 3584, 18944, true, true)
    ->Arg(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(run, Gemm_q8_M155_packed_up_int8, DType::q8_0, 155, 18944, 3584, true, true)
    ->Arg(2)
    ->UseRealTime();
// Batched decode: B = 4 and 8 rows share one pass over gate|up (B = 1: Gemv_q4_packed_gateup).
BENCHMARK_CAPTURE(run, Gemv_q4_packed_gateup_B4, DType::q4_0, 4, 37888, 3584, true)
    ->Arg(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(run, Gemv_q4_packed_gateup_B8, DType::q4_0, 8, 37888, 3584, true)
    ->Arg(2)
    ->UseRealTime();
// The same from memory: 151552 x 3584 in q4 (305 MB, past the 260 MB L3 of the development VM),
// as a full-size decode step reads every matrix: B = 1, 4, 8 rows per pass.
BENCHMARK_CAPTURE(run, Gemv_q4_packed_dram_B1, DType::q4_0, 1, 151552, 3584, true)
    ->Arg(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(run, Gemv_q4_packed_dram_B4, DType::q4_0, 4, 151552, 3584, true)
    ->Arg(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(run, Gemv_q4_packed_dram_B8, DType::q4_0, 8, 151552, 3584, true)
    ->Arg(2)
    ->UseRealTime();

// The encoder's linears for 10 s of audio (T2 = 500 frames; bf16 weights, fast): q/k/v/out, fc1,
// fc2.
BENCHMARK_CAPTURE(run, Gemm_bf16_enc_qkv, DType::bf16, 500, 1280, 1280)
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(run, Gemm_bf16_enc_fc1, DType::bf16, 500, 5120, 1280)
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(run, Gemm_bf16_enc_fc2, DType::bf16, 500, 1280, 5120)
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime();
// The same as the default encoder of --quant q8/q4 runs them: packed Q8_0, int8 activations.
BENCHMARK_CAPTURE(run, Gemm_q8_enc_qkv_int8, DType::q8_0, 500, 1280, 1280, true, true)
    ->Arg(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(run, Gemm_q8_enc_fc1_int8, DType::q8_0, 500, 5120, 1280, true, true)
    ->Arg(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(run, Gemm_q8_enc_fc2_int8, DType::q8_0, 500, 1280, 5120, true, true)
    ->Arg(2)
    ->UseRealTime();
// The same at a 25 s chunk's 1,250 frames (what every chunk of a long recording runs): [1250][K]
// int8 activations, 1.6 MB at K = 1280 and 6.4 MB at 5120 (past a 1-2 MB L2).
BENCHMARK_CAPTURE(run, Gemm_q8_enc25_qkv_int8, DType::q8_0, 1250, 1280, 1280, true, true)
    ->Arg(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(run, Gemm_q8_enc25_fc1_int8, DType::q8_0, 1250, 5120, 1280, true, true)
    ->Arg(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(run, Gemm_q8_enc25_fc2_int8, DType::q8_0, 1250, 1280, 5120, true, true)
    ->Arg(2)
    ->UseRealTime();

BENCHMARK_MAIN();
