// A fixed pool of compute threads for data-parallel loops.
//
// parallel_for splits [0, n) into near-equal contiguous ranges (by default one per thread) that the
// threads, the caller among them, claim from an atomic counter, and returns when all are done.
// Why claimed rather than assigned: on an oversubscribed machine a descheduled worker's range is
// run by whoever is free instead of stalling the caller for a time slice, and the caller never
// waits for a worker that has not started. Kernels partition over independent outputs (rows or
// columns), never over a reduction, so results are bit-identical for any thread count and any
// claiming order.
// Hand-off: workers and the caller spin briefly (~0.2 ms) on atomics before sleeping on the
// condition variables: decode issues ~200 short matmuls per token, and a futex wake-up per call
// (tens of microseconds) would cost several percent of the bandwidth bound.
// Thread-safety: one parallel_for at a time per pool (a Session owns its pool); not reentrant.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace stepaudio::ops {

class ThreadPool {
 public:
  // n_threads <= 0: the number of physical cores (see physical_cores()).
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }
  // fn(begin, end) for contiguous ranges covering [0, n); ranges are never empty. pieces: how many
  // ranges (0: one per thread; more lets a fast thread take over a slow one's work); a thread may
  // run several.
  void parallel_for(size_t n, const std::function<void(size_t, size_t)>& fn, size_t pieces = 0);

  // Physical cores from /sys (siblings of SMT pairs counted once); hardware_concurrency() fallback.
  static int physical_cores();

 private:
  void worker();
  // Claims and runs pieces of job `gen` until none is left (or a newer job was published).
  void run_pieces(uint64_t gen, const std::function<void(size_t, size_t)>& fn, size_t n,
                  size_t pieces);

  int n_threads_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable start_cv_, done_cv_;
  const std::function<void(size_t, size_t)>* job_ = nullptr;
  size_t job_n_ = 0, job_pieces_ = 0;
  std::atomic<uint64_t> generation_{0};
  // (low 32 bits of the generation << 32) | next unclaimed piece: a worker still holding an older
  // job cannot claim a piece of the current one.
  std::atomic<uint64_t> next_{0};
  std::atomic<size_t> done_{0};  // pieces of the current job finished
  std::atomic<bool> stop_{false};
};

}  // namespace stepaudio::ops
