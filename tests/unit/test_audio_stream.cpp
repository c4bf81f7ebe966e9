// The streaming front end (decode_file_stream -> StreamResampler -> ChunkPlanner) must give exactly
// what the whole-signal path gives (decode_file -> Resampler::process -> plan_chunks): the same
// 16 kHz samples bit for bit, the same chunk boundaries, hence the same log-mels; on every real
// recording of ../shared/data and on long synthetic signals pushed in pieces of varied sizes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "stepaudio/audio.h"
#include "stepaudio/error.h"

using namespace stepaudio;
using namespace stepaudio::audio;

namespace {

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Speech-like: pitch-wobbling bursts with pauses, plus noise (pauses for the planner to find).
std::vector<float> bursts(size_t n, int rate, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0, 0.003f);
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) {
    const double t = double(i) / rate;
    const double env = std::sin(2 * M_PI * 0.37 * t) > -0.3 ? 1.0 : 0.0;
    x[i] = float(env * 0.2 * std::sin(2 * M_PI * (180 + 40 * std::sin(2 * M_PI * 3 * t)) * t)) +
           noise(rng);
  }
  return x;
}

// Streams `x` through the resampler in pieces whose sizes come from `rng` (1 .. max_piece).
std::vector<float> stream_resample(const std::vector<float>& x, int from, int to, std::mt19937& rng,
                                   size_t max_piece) {
  StreamResampler r(from, to);
  std::vector<float> out;
  std::uniform_int_distribution<size_t> piece(1, max_piece);
  for (size_t at = 0; at < x.size();) {
    const size_t n = std::min(piece(rng), x.size() - at);
    r.push(x.data() + at, n, out);
    at += n;
  }
  r.finish(out);
  return out;
}

std::vector<PlannedChunk> stream_plan(const std::vector<float>& pcm, const ChunkOptions& o,
                                      std::mt19937& rng, size_t max_piece) {
  ChunkPlanner p(o);
  std::vector<PlannedChunk> out;
  PlannedChunk c;
  std::uniform_int_distribution<size_t> piece(1, max_piece);
  for (size_t at = 0; at < pcm.size();) {
    const size_t n = std::min(piece(rng), pcm.size() - at);
    p.push(pcm.data() + at, n);
    at += n;
    while (p.next(c)) out.push_back(std::move(c));
  }
  p.finish();
  while (p.next(c)) out.push_back(std::move(c));
  return out;
}

void expect_same_plan(const std::vector<float>& pcm, const std::vector<PlannedChunk>& streamed,
                      const ChunkOptions& o) {
  const std::vector<Chunk> whole = plan_chunks(pcm.data(), pcm.size(), o);
  ASSERT_EQ(streamed.size(), whole.size());
  for (size_t i = 0; i < whole.size(); ++i) {
    EXPECT_EQ(streamed[i].range.begin, whole[i].begin) << i;
    EXPECT_EQ(streamed[i].range.end, whole[i].end) << i;
    const std::vector<float> ref(pcm.begin() + whole[i].begin, pcm.begin() + whole[i].end);
    EXPECT_TRUE(same_bits(streamed[i].pcm, ref)) << i;
  }
}

}  // namespace

TEST(AudioStream, ResamplerStreamsBitIdentically) {
  std::mt19937 rng(7);
  // Common rates (gcd-reduced kernels of 1..160 phases), upsampling, and the identity.
  for (int from : {8000, 11025, 22050, 24000, 44100, 48000, 16000}) {
    const std::vector<float> x = bursts(size_t(from) * 3 + 17, from, 1);
    const std::vector<float> whole = Resampler(from, kSampleRate).process(x.data(), x.size());
    for (size_t max_piece : {1ul, 7ul, 1024ul, 100000ul}) {
      if (max_piece == 1 && from > 16000) continue;  // slow and adds nothing over 7
      EXPECT_TRUE(same_bits(stream_resample(x, from, kSampleRate, rng, max_piece), whole))
          << from << " Hz, pieces up to " << max_piece;
    }
  }
  // Shorter than the kernel: every output touches both edges.
  const std::vector<float> tiny = bursts(5, 44100, 2);
  EXPECT_TRUE(same_bits(stream_resample(tiny, 44100, kSampleRate, rng, 2),
                        Resampler(44100, kSampleRate).process(tiny.data(), tiny.size())));
}

TEST(AudioStream, PlannerGivesTheWholeSignalsChunks) {
  std::mt19937 rng(11);
  const std::vector<float> pcm = bursts(size_t(kSampleRate) * 200 + 123, kSampleRate, 3);
  ChunkOptions pause;  // 25 s, search 4 s
  ChunkOptions fixed;  // the official fixed split
  fixed.search_seconds = 0;
  ChunkOptions reach_back;  // search windows reaching before the chunk's start (look-behind)
  reach_back.max_seconds = 1.0;
  reach_back.search_seconds = 0.99;
  reach_back.frame_ms = 50;
  for (const ChunkOptions& o : {pause, fixed, reach_back}) {
    for (size_t max_piece : {160ul, 16000ul, 1000000ul}) {
      const std::vector<PlannedChunk> s = stream_plan(pcm, o, rng, max_piece);
      expect_same_plan(pcm, s, o);
      if (&o == &pause) {
        EXPECT_GE(s.size(), 8u);
      }
    }
  }
  // Exactly the chunk limit, one sample more, empty.
  for (size_t n : {size_t(25 * kSampleRate), size_t(25 * kSampleRate) + 1, size_t(0)}) {
    const std::vector<float> x = bursts(n, kSampleRate, 4);
    expect_same_plan(x, stream_plan(x, pause, rng, 4000), pause);
  }
}

TEST(AudioStream, RealRecordingsStreamLikeTheWholeFile) {
  const std::filesystem::path shared = STEPAUDIO_SHARED_DATA;
  std::ifstream manifest(shared / "manifest.jsonl");
  if (!manifest) GTEST_SKIP() << "../shared/data is absent";
  std::vector<float> joined;  // every recording at 16 kHz, one after the other: a long signal
  size_t files = 0;
  for (std::string line; std::getline(manifest, line);) {
    if (line.empty()) continue;
    const std::string path = (shared / nlohmann::json::parse(line)["path"].get<std::string>());
    const DecodedAudio whole = decode_file(path);
    const std::vector<float> pcm = to_16k(whole);
    // Streamed: the decoder's own frames straight into the resampler and the planner.
    std::unique_ptr<StreamResampler> rs;
    ChunkPlanner planner;
    std::vector<float> streamed, piece;
    std::vector<PlannedChunk> chunks;
    PlannedChunk c;
    const StreamInfo info =
        decode_file_stream(path, {}, [&](const StreamInfo& i, const float* x, size_t n) {
          if (!rs) rs = std::make_unique<StreamResampler>(i.sample_rate, kSampleRate);
          piece.clear();
          rs->push(x, n, piece);
          streamed.insert(streamed.end(), piece.begin(), piece.end());
          planner.push(piece.data(), piece.size());
          while (planner.next(c)) chunks.push_back(std::move(c));
        });
    piece.clear();
    rs->finish(piece);
    streamed.insert(streamed.end(), piece.begin(), piece.end());
    planner.push(piece.data(), piece.size());
    planner.finish();
    while (planner.next(c)) chunks.push_back(std::move(c));
    EXPECT_EQ(info.sample_rate, whole.sample_rate) << path;
    EXPECT_DOUBLE_EQ(info.seconds, whole.duration_s()) << path;
    EXPECT_TRUE(same_bits(streamed, pcm)) << path;
    expect_same_plan(pcm, chunks, {});
    // Same chunks and samples, so the same log-mel (checked on the first chunk).
    const Chunk first = plan_chunks(pcm.data(), pcm.size())[0];
    EXPECT_TRUE(same_bits(log_mel(chunks[0].pcm.data(), chunks[0].pcm.size()).data,
                          log_mel(pcm.data() + first.begin, first.end - first.begin).data))
        << path;
    joined.insert(joined.end(), pcm.begin(), pcm.end());
    ++files;
  }
  EXPECT_GE(files, 30u);
  std::mt19937 rng(5);
  const std::vector<PlannedChunk> s = stream_plan(joined, {}, rng, 48000);
  EXPECT_GE(s.size(), 10u);  // ~4 minutes of real speech, cut in pauses
  expect_same_plan(joined, s, {});
}
