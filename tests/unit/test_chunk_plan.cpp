// Chunk planning on synthetic signals with known pauses.
#include <gtest/gtest.h>

#include <random>

#include "stepaudio/audio.h"
#include "stepaudio/error.h"

using namespace stepaudio;
using namespace stepaudio::audio;

namespace {
// Noise-like "speech" with silent pauses at the given [start, end) seconds.
std::vector<float> speech_with_pauses(double seconds,
                                      std::vector<std::pair<double, double>> pauses) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-0.5f, 0.5f);
  std::vector<float> x(size_t(seconds * kSampleRate));
  for (auto& v : x) v = u(rng);
  for (auto [a, b] : pauses)
    for (size_t i = size_t(a * kSampleRate); i < size_t(b * kSampleRate) && i < x.size(); ++i)
      x[i] = 0.001f * u(rng);
  return x;
}

void expect_cover(const std::vector<Chunk>& chunks, size_t n, double max_s) {
  ASSERT_FALSE(chunks.empty());
  EXPECT_EQ(chunks.front().begin, 0u);
  EXPECT_EQ(chunks.back().end, n);
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_GT(chunks[i].end, chunks[i].begin);
    EXPECT_LE(chunks[i].end - chunks[i].begin, size_t(max_s * kSampleRate));
    if (i) {
      EXPECT_EQ(chunks[i].begin, chunks[i - 1].end);
    }
  }
}
}  // namespace

TEST(ChunkPlan, CutsInsidePauses) {
  auto x = speech_with_pauses(70, {{22.0, 22.3}, {45.5, 45.9}, {10, 10.5}});
  auto chunks = plan_chunks(x.data(), x.size());
  expect_cover(chunks, x.size(), 25);
  ASSERT_EQ(chunks.size(), 3u);
  // A 25 ms window fully inside the pause: its centre lies >= 12.5 ms inside.
  EXPECT_GE(chunks[0].end_s(), 22.0125);
  EXPECT_LE(chunks[0].end_s(), 22.2875);
  EXPECT_GE(chunks[1].end_s(), 45.5125);
  EXPECT_LE(chunks[1].end_s(), 45.8875);
  EXPECT_EQ(plan_chunks(x.data(), x.size()).size(), chunks.size());  // deterministic
  EXPECT_EQ(plan_chunks(x.data(), x.size())[1].end, chunks[1].end);
}

TEST(ChunkPlan, NoPauseCutsAtTheLimit) {
  std::vector<float> x(size_t(60 * kSampleRate), 0.25f);  // constant energy: ties go to the latest
  auto chunks = plan_chunks(x.data(), x.size());
  expect_cover(chunks, x.size(), 25);
  EXPECT_EQ(chunks[0].end, size_t(25 * kSampleRate));
}

TEST(ChunkPlan, FixedSplitIsTheOfficialOne) {
  auto x = speech_with_pauses(61, {{22.0, 22.3}});
  ChunkOptions fixed;
  fixed.search_seconds = 0;
  auto chunks = plan_chunks(x.data(), x.size(), fixed);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[0].end, 400000u);
  EXPECT_EQ(chunks[1].end, 800000u);
  EXPECT_EQ(chunks[2].end, x.size());
}

TEST(ChunkPlan, ShortAndEmpty) {
  std::vector<float> x(1000, 0.1f);
  auto chunks = plan_chunks(x.data(), x.size());
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].end, 1000u);
  EXPECT_TRUE(plan_chunks(x.data(), 0).empty());
  std::vector<float> exact(400000, 0.1f);  // exactly 25 s: one chunk
  EXPECT_EQ(plan_chunks(exact.data(), exact.size()).size(), 1u);
}

TEST(ChunkPlan, RejectsBadOptions) {
  std::vector<float> x(10);
  ChunkOptions bad;
  bad.search_seconds = 30;
  EXPECT_THROW(plan_chunks(x.data(), x.size(), bad), Error);
  bad = {};
  bad.max_seconds = 0;
  EXPECT_THROW(plan_chunks(x.data(), x.size(), bad), Error);
}
