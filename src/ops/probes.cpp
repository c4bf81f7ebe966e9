// Machine-limit probes (ops/probes.h). The loops themselves are SIMD kernels in ops/x86; on other
// CPUs the scalar fallbacks below report what the portable kernels can use.
#include "ops/probes.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <vector>

#include "ops/cpu.h"
#include "ops/x86/kernels.h"
#include "util/huge_buffer.h"

namespace stepaudio::ops {

namespace {
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

uint64_t read_sum_generic(const void* p, size_t bytes) {
  const char* c = static_cast<const char*>(p);
  uint64_t s = 0;
  size_t i = 0;
  for (; i + 8 <= bytes; i += 8) {
    uint64_t v;
    std::memcpy(&v, c + i, 8);
    s ^= v;
  }
  for (; i < bytes; ++i) s += static_cast<unsigned char>(c[i]);
  return s;
}

uint64_t read_sum(const void* p, size_t bytes) {
#if defined(__x86_64__)
  static const bool x86 = cpu_isa() == Isa::avx512;
  if (x86) return x86::read_sum_avx512(p, bytes);
#endif
  return read_sum_generic(p, bytes);
}

double fma_generic(size_t iters) {
  float a[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  for (size_t i = 0; i < iters; ++i)
    for (float& v : a) v = v * 0.999f + 0.001f;
  volatile float sink = a[0] + a[7];
  (void)sink;
  return static_cast<double>(iters) * 8 * 2;
}

// Runs fn(iters) on every thread; returns total ops / wall seconds (best of reps).
template <typename Fn>
double rate(ThreadPool& pool, int threads, Fn fn, size_t iters, int reps) {
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    std::atomic<double> ops{0};
    const auto t0 = Clock::now();
    pool.parallel_for(static_cast<size_t>(threads), [&](size_t b, size_t e) {
      double local = 0;
      for (size_t i = b; i < e; ++i) local += fn(iters);
      double cur = ops.load();
      while (!ops.compare_exchange_weak(cur, cur + local)) {
      }
    });
    best = std::max(best, ops.load() / seconds_since(t0));
  }
  return best;
}
}  // namespace

double read_pass_gbps(ThreadPool& pool, const ReadRegion* regions, size_t n) {
  std::atomic<uint64_t> sink{0};
  size_t total = 0;
  const auto t0 = Clock::now();
  for (size_t r = 0; r < n; ++r) {
    const char* p = static_cast<const char*>(regions[r].data);
    const size_t bytes = regions[r].bytes, parts = static_cast<size_t>(pool.size());
    total += bytes;
    // Range boundaries on 64-byte multiples, as the GEMV's 16-row groups fall on cache lines.
    pool.parallel_for(parts, [&](size_t b, size_t e) {
      const size_t lo = bytes * b / parts / 64 * 64,
                   hi = e == parts ? bytes : bytes * e / parts / 64 * 64;
      sink ^= read_sum(p + lo, hi - lo);
    });
  }
  return static_cast<double>(total) / seconds_since(t0) / 1e9;
}

MachineLimits measure_machine(ThreadPool& pool, size_t buffer_bytes) {
  MachineLimits lim;
  lim.threads = pool.size();
  const Isa isa = cpu_isa();
  lim.isa = isa_name(isa);
  [[maybe_unused]] const bool x86 = isa == Isa::avx512;  // unused off x86

  // Read bandwidth: a buffer far larger than the caches, touched once (page faults outside the
  // timing), then streamed. 1 thread: only the caller's slice range runs (parallel_for(1)).
  {
    util::HugeBuffer buf(buffer_bytes);
    std::memset(buf.data(), 1, buf.size());
    auto stream = [&](int parts) {
      double best = 0;
      for (int r = 0; r < 5; ++r) {
        std::atomic<uint64_t> sink{0};
        const size_t chunk = buf.size() / parts / 4096 * 4096;
        const auto t0 = Clock::now();
        pool.parallel_for(static_cast<size_t>(parts), [&](size_t b, size_t e) {
          for (size_t i = b; i < e; ++i) {
            sink ^= read_sum(static_cast<const char*>(buf.data()) + i * chunk, chunk);
          }
        });
        best = std::max(best, static_cast<double>(chunk) * parts / seconds_since(t0) / 1e9);
      }
      return best;
    };
    lim.read_gbps_1thread = stream(1);
    lim.read_gbps = stream(lim.threads);
  }

  // Peaks: ~20-50 ms per repetition per thread.
#if defined(__x86_64__)
  if (x86) {
    lim.peak_fp32_gflops = rate(pool, lim.threads, x86::fma_f32_loop_avx512, 2'000'000, 5) / 1e9;
    lim.peak_bf16_gflops = rate(pool, lim.threads, x86::dot_bf16_loop_avx512, 2'000'000, 5) / 1e9;
    lim.peak_int8_gops = rate(pool, lim.threads, x86::dot_int8_loop_avx512, 2'000'000, 5) / 1e9;
    return lim;
  }
  if (isa == Isa::avx2) {
    lim.peak_fp32_gflops = rate(pool, lim.threads, x86::fma_f32_loop_avx2, 4'000'000, 5) / 1e9;
    lim.peak_bf16_gflops = lim.peak_fp32_gflops;  // no bf16 dot: the fast GEMM runs in float32
    lim.peak_int8_gops = rate(pool, lim.threads, x86::dot_int8_loop_avx2, 4'000'000, 5) / 1e9;
    return lim;
  }
#endif
  lim.peak_fp32_gflops = rate(pool, lim.threads, fma_generic, 5'000'000, 3) / 1e9;
  lim.peak_bf16_gflops = lim.peak_fp32_gflops;  // no bf16 dot: the portable kernels widen to f32
  lim.peak_int8_gops = lim.peak_fp32_gflops;
  return lim;
}

}  // namespace stepaudio::ops
