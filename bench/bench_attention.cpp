// Attention micro-benchmarks at the model's shapes, in GFLOP/s (4 flops per query-key pair and
// head dimension: the Q K^T and P V multiply-adds; causal counts only the visible pairs).
//   build/bin/bench_attention
// Encoder: 500 / 1500 frames (10 s / 30 s), 20 heads of 64, no mask (exact, and the fused kernel
// of --quant q8/q4 in both its formats; EncoderFast is what ops::attention picks on this CPU).
// Decoder prefill: n tokens, 28 query heads / 4 KV heads of 128, causal. Decoder decode: 1 query
// against an n-position KV cache.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <initializer_list>
#include <random>
#include <vector>

#include "ops/cpu.h"
#include "ops/ops.h"
#if defined(__x86_64__)
#include "ops/x86/kernels.h"
#endif

using namespace stepaudio::ops;

namespace {
enum Flash { kDispatch, kBf16, kF32 };  // ops::attention, or one format of the fused kernel

void fill_normal(std::mt19937& g, std::initializer_list<std::vector<float>*> vecs) {
  std::normal_distribution<float> d;
  for (auto* vec : vecs)
    for (auto& x : *vec) x = d(g);
}

void run(benchmark::State& st, size_t heads, size_t kv_heads, size_t hd, bool causal, bool decode,
         bool fast = false, int threads = 2, Flash flash = kDispatch) {
  const size_t n_kv = static_cast<size_t>(st.range(0)), n_q = decode ? 1 : n_kv;
  const size_t qs = heads * hd, kvs = kv_heads * hd;
  std::mt19937 g(1);
  std::vector<float> q(n_q * qs), k(n_kv * kvs), v(n_kv * kvs), out(n_q * qs);
  fill_normal(g, {&q, &k, &v});
  ThreadPool pool(threads);
  const AttentionShape s{n_q, n_kv, heads, kv_heads, hd, qs, kvs, fast};
  if (flash != kDispatch && cpu_isa() != Isa::avx512) {
    st.SkipWithError("the fused kernel needs AVX-512");
    return;
  }
  for (auto _ : st) {
#if defined(__x86_64__)
    if (flash != kDispatch)
      x86::flash_attention_avx512(pool, s, q.data(), k.data(), v.data(), 0.125f, nullptr,
                                  flash == kF32 ? x86::FlashFormat::f32 : x86::FlashFormat::bf16,
                                  out.data());
    else
#endif
      attention(pool, s, q.data(), k.data(), v.data(), 0.125f, nullptr, causal, n_kv - n_q,
                out.data());
    benchmark::DoNotOptimize(out.data());
  }
  const double pairs = causal && !decode ? n_q * (n_q + 1) / 2.0 : static_cast<double>(n_q) * n_kv;
  st.counters["GFLOP/s"] =
      benchmark::Counter(static_cast<double>(st.iterations()) * pairs * heads * hd * 4 / 1e9,
                         benchmark::Counter::kIsRate);
}
}  // namespace

BENCHMARK_CAPTURE(run, Encoder, 20, 20, 64, false, false)->Arg(500)->Arg(1500)->UseRealTime();
BENCHMARK_CAPTURE(run, EncoderFast, 20, 20, 64, false, false, true)
    ->Arg(500)
    ->Arg(1500)
    ->UseRealTime();
BENCHMARK_CAPTURE(run, EncoderFastBf16, 20, 20, 64, false, false, true, 2, kBf16)
    ->Arg(500)
    ->Arg(1500)
    ->UseRealTime();
BENCHMARK_CAPTURE(run, EncoderFastF32, 20, 20, 64, false, false, true, 2, kF32)
    ->Arg(500)
    ->Arg(1500)
    ->UseRealTime();
// One thread: against the one-core peaks, less exposed to a busy machine.
BENCHMARK_CAPTURE(run, EncoderFastBf16_1Thread, 20, 20, 64, false, false, true, 1, kBf16)
    ->Arg(500)
    ->Arg(1500)
    ->UseRealTime();
BENCHMARK_CAPTURE(run, EncoderFastF32_1Thread, 20, 20, 64, false, false, true, 1, kF32)
    ->Arg(500)
    ->Arg(1500)
    ->UseRealTime();
BENCHMARK_CAPTURE(run, DecoderPrefill, 28, 4, 128, true, false)->Arg(512)->Arg(2048)->UseRealTime();
BENCHMARK_CAPTURE(run, DecoderDecode, 28, 4, 128, true, true)->Arg(512)->Arg(4096)->UseRealTime();

namespace {
// Decode attention as the model meets it: every call on another KV cache (a ring of caches past
// the L3, as 28 layers x several sessions are), so K and V come from memory, not from cache.
void decode_cold(benchmark::State& st) {
  const size_t n_kv = static_cast<size_t>(st.range(0)), heads = 28, kv_heads = 4, hd = 128;
  const size_t qs = heads * hd, kvs = kv_heads * hd;
  const size_t ring = std::max<size_t>(8, (256u << 20) / (2 * n_kv * kvs * sizeof(float)));
  std::mt19937 g(1);
  std::vector<float> q(qs), out(qs);
  fill_normal(g, {&q});
  std::vector<std::vector<float>> k(ring, std::vector<float>(n_kv * kvs)), v(k);
  for (size_t r = 0; r < ring; ++r) fill_normal(g, {&k[r], &v[r]});
  ThreadPool pool(2);
  const AttentionShape s{1, n_kv, heads, kv_heads, hd, qs, kvs, false};
  size_t r = 0;
  for (auto _ : st) {
    attention(pool, s, q.data(), k[r].data(), v[r].data(), 0.125f, nullptr, true, n_kv - 1,
              out.data());
    benchmark::DoNotOptimize(out.data());
    r = (r + 1) % ring;
  }
  st.counters["GB/s"] = benchmark::Counter(
      static_cast<double>(st.iterations()) * 2.0 * n_kv * kvs * sizeof(float) / 1e9,
      benchmark::Counter::kIsRate);
}
}  // namespace
BENCHMARK(decode_cold)->Name("DecoderDecodeCold")->Arg(256)->Arg(512)->Arg(2048)->UseRealTime();

BENCHMARK_MAIN();
