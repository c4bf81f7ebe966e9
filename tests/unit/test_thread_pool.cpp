// ThreadPool::parallel_for: every index covered exactly once by non-empty contiguous ranges, for
// any thread count and piece count, over many back-to-back jobs (a worker still finishing one job
// must never run a piece of the next with the old function), and with more threads than cores.
#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "ops/thread_pool.h"

using stepaudio::ops::ThreadPool;

TEST(ThreadPool, CoversEveryIndexOnceAcrossManyJobs) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int job = 0; job < 3000; ++job) {
      const size_t n = 1 + (job * 37) % 101, pieces = (job % 4 == 0) ? 0 : 1 + job % 13;
      std::vector<std::atomic<int>> hits(n);
      std::atomic<int> bad{0};
      pool.parallel_for(
          n,
          [&](size_t b, size_t e) {
            if (b >= e || e > n) ++bad;
            for (size_t i = b; i < e; ++i) ++hits[i];
          },
          pieces);
      ASSERT_EQ(bad.load(), 0);
      for (size_t i = 0; i < n; ++i)
        ASSERT_EQ(hits[i].load(), 1) << "threads " << threads << " job " << job << " i " << i;
    }
  }
}
