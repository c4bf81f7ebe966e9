#include "ops/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <set>
#include <string>

namespace stepaudio::ops {

namespace {
// Range of the i-th of `parts` near-equal pieces of [0, n).
void split(size_t n, int parts, int i, size_t* b, size_t* e) {
  size_t base = n / parts, rem = n % parts;
  *b = i * base + std::min<size_t>(i, rem);
  *e = *b + base + (static_cast<size_t>(i) < rem ? 1 : 0);
}

// Spins until pred() or ~200 microseconds have passed; true when pred() held.
template <typename Pred>
bool spin_until(Pred pred) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0;; ++i) {
    if (pred()) return true;
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
    if ((i & 255) == 255 && std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(200))
      return false;
  }
}
}  // namespace

int ThreadPool::physical_cores() {
  std::set<std::string> cores;
  for (int cpu = 0; cpu < 4096; ++cpu) {
    std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    std::ifstream pkg(base + "physical_package_id"), core(base + "core_id");
    if (!pkg || !core) break;
    std::string p, c;
    pkg >> p;
    core >> c;
    cores.insert(p + ":" + c);
  }
  if (!cores.empty()) return static_cast<int>(cores.size());
  unsigned hc = std::thread::hardware_concurrency();
  return hc ? static_cast<int>(hc) : 1;
}

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads > 0 ? n_threads : physical_cores()) {
  for (int i = 1; i < n_threads_; ++i) threads_.emplace_back([this] { worker(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  start_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void ThreadPool::run_pieces(uint64_t gen, const std::function<void(size_t, size_t)>& fn, size_t n,
                            size_t pieces) {
  const uint64_t tag = (gen & 0xffffffffu) << 32;
  for (;;) {
    uint64_t v = next_.load();
    do {
      if ((v & ~uint64_t{0xffffffffu}) != tag || (v & 0xffffffffu) >= pieces) return;
    } while (!next_.compare_exchange_weak(v, v + 1));
    size_t b, e;
    split(n, static_cast<int>(pieces), static_cast<int>(v & 0xffffffffu), &b, &e);
    if (b < e) fn(b, e);
    if (done_.fetch_add(1) + 1 == pieces) {
      std::lock_guard<std::mutex> lock(mu_);  // the caller may be about to sleep: wake it
      done_cv_.notify_one();
    }
  }
}

void ThreadPool::worker() {
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(size_t, size_t)>* job;
    size_t n, pieces;
    auto ready = [&] { return stop_.load() || generation_.load() != seen; };
    if (!spin_until(ready)) {
      std::unique_lock<std::mutex> lock(mu_);
      start_cv_.wait(lock, ready);
    }
    if (stop_) return;
    {
      // job_, job_n_, job_pieces_, next_ and done_ were written under mu_ before generation_
      // changed.
      std::lock_guard<std::mutex> lock(mu_);
      seen = generation_;
      job = job_;
      n = job_n_;
      pieces = job_pieces_;
    }
    run_pieces(seen, *job, n, pieces);  // claims nothing if the job is already taken or over
  }
}

void ThreadPool::parallel_for(size_t n, const std::function<void(size_t, size_t)>& fn,
                              size_t pieces) {
  if (n == 0) return;
  if (n_threads_ == 1 || n == 1) {
    fn(0, n);
    return;
  }
  pieces = std::min(n, pieces ? pieces : static_cast<size_t>(n_threads_));
  uint64_t gen;
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &fn;
    job_n_ = n;
    job_pieces_ = pieces;
    done_ = 0;
    gen = generation_ + 1;
    next_ = (gen & 0xffffffffu) << 32;
    generation_ = gen;
  }
  start_cv_.notify_all();
  run_pieces(gen, fn, n, pieces);
  // Every piece is claimed now; wait for the ones other threads are still running.
  auto done = [&] { return done_.load() == pieces; };
  if (spin_until(done)) return;
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, done);
}

}  // namespace stepaudio::ops
