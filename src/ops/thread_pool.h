// A fixed pool of compute threads for data-parallel loops.
//
// parallel_for splits [0, n) into at most size() contiguous ranges, one per thread (the caller runs
// one of them), and returns when all are done. Kernels partition over independent outputs (rows or
// columns), never over a reduction, so results are bit-identical for any thread count.
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
  // fn(begin, end) for contiguous ranges covering [0, n); ranges are never empty.
  void parallel_for(size_t n, const std::function<void(size_t, size_t)>& fn);

  // Physical cores from /sys (siblings of SMT pairs counted once); hardware_concurrency() fallback.
  static int physical_cores();

 private:
  void worker(int index);

  int n_threads_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable start_cv_, done_cv_;
  const std::function<void(size_t, size_t)>* job_ = nullptr;
  size_t job_n_ = 0;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace stepaudio::ops
