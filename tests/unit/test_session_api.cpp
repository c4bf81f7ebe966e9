// The public session API (include/stepaudio/session.h) on the synthetic tiny model: a forked
// prefix continues with exactly the logits of a run from scratch, batched tree scoring equals
// token-by-token scoring, scoring leaves the state untouched, and session generation reproduces
// generate().
#include <gtest/gtest.h>

#include <cmath>

#include "stepaudio/error.h"
#include "stepaudio/model.h"
#include "stepaudio/session.h"

using namespace stepaudio;

namespace {
MelChunk test_mel(size_t frames, float seed) {
  MelChunk c;
  c.n_mels = 128;
  c.n_frames = frames;
  c.data.resize(c.n_mels * c.n_frames);
  for (size_t i = 0; i < c.data.size(); ++i) c.data[i] = std::sin(0.37f * float(i) + seed) * 0.8f;
  return c;
}

struct Fixture {
  std::shared_ptr<const Model> m = make_synthetic_model("tiny", 3);
  std::vector<MelChunk> mels = {test_mel(101, 0.1f), test_mel(61, 0.7f)};
  std::vector<int32_t> prefix;  // system-ish ids + the audio patches of both chunks
  std::vector<int32_t> question = {17, 23, 99, 5};
  Fixture() {
    const int32_t patch = model_info(*m).audio_patch_id;
    prefix = {1, 2, 3};
    for (const auto& c : mels) {
      prefix.push_back(4);
      prefix.insert(prefix.end(), audio_patch_count(c.n_frames), patch);
      prefix.push_back(6);
    }
    prefix.push_back(7);
  }
  static SessionGenerateOptions opts(size_t max_new) {
    SessionGenerateOptions o;
    o.max_new_tokens = max_new;
    return o;
  }
  std::vector<int32_t> full() const {
    std::vector<int32_t> f = prefix;
    f.insert(f.end(), question.begin(), question.end());
    return f;
  }
};
}  // namespace

TEST(SessionApi, ForkedPrefixEqualsFromScratch) {
  Fixture f;
  auto audio = encode_audio(*f.m, f.mels, 2);
  DecodeSession shared(f.m, 256, 2);
  shared.append(f.prefix, audio);
  DecodeSession branch = shared.fork();
  branch.append(f.question);

  DecodeSession scratch(f.m, 256, 2);
  scratch.append(f.full(), audio);
  ASSERT_EQ(branch.pos(), scratch.pos());
  std::vector<float> a(branch.logits().begin(), branch.logits().end());
  std::vector<float> b(scratch.logits().begin(), scratch.logits().end());
  EXPECT_EQ(a, b);  // bit for bit: every kernel computes a row independently of the others

  // The parent is untouched by its fork's work.
  DecodeSession again(f.m, 256, 2);
  again.append(f.prefix, audio);
  EXPECT_TRUE(std::equal(shared.logits().begin(), shared.logits().end(), again.logits().begin()));
}

TEST(SessionApi, GenerateFromForkMatchesGenerate) {
  Fixture f;
  GenerateRequest req;
  req.prompt_ids = f.full();
  req.mels = f.mels;
  req.max_new_tokens = 6;
  req.threads = 2;
  GenerateResult want = stepaudio::generate(*f.m, req);

  auto audio = encode_audio(*f.m, f.mels, 2);
  DecodeSession shared(f.m, 256, 2);
  shared.append(f.prefix, audio);
  DecodeSession branch = shared.fork();
  branch.append(f.question);
  GenerateResult got = branch.generate(Fixture::opts(6));
  EXPECT_EQ(got.tokens, want.tokens);
  EXPECT_EQ(got.logprobs, want.logprobs);
}

TEST(SessionApi, TreeScoringEqualsSequentialScoring) {
  Fixture f;
  auto audio = encode_audio(*f.m, f.mels, 2);
  DecodeSession s(f.m, 256, 2);
  s.append(f.full(), audio);
  const std::vector<std::vector<int32_t>> cands = {{11, 12, 13},     {11, 12}, {40},
                                                   {11, 50, 51, 52}, {},       {40, 41}};
  std::vector<float> before(s.logits().begin(), s.logits().end());
  auto got = s.score(cands);
  ASSERT_EQ(got.size(), cands.size());
  for (size_t c = 0; c < cands.size(); ++c) {
    DecodeSession b = s.fork();
    double want = 0;
    for (int32_t tok : cands[c]) {
      want += b.logprob(tok);
      b.append(std::vector<int32_t>{tok});
    }
    EXPECT_EQ(got[c].n_tokens, cands[c].size());
    // Bit-identical with the scalar kernels (STEPAUDIO_ISA=generic). The SIMD matmul reduces a
    // multi-row tile in another order than a single row, so the one-pass tree and the token-by-token
    // forks may differ by float32 rounding: dot products of K <= 128 terms of O(1) values differ by
    // ~K * 6e-8 relative, i.e. ~1e-5 on logits of magnitude <= 10 and on each log-softmax; a sum of
    // <= 4 tokens stays below 1e-4. A wrong mask or position gives differences of order 1.
    EXPECT_NEAR(got[c].logprob, want, 1e-4) << "candidate " << c;
  }
  // The state is unchanged: same logits, and continuing gives what a fresh session gives.
  EXPECT_TRUE(std::equal(before.begin(), before.end(), s.logits().begin()));
  s.append(std::vector<int32_t>{8, 9});
  DecodeSession fresh(f.m, 256, 2);
  auto full = f.full();
  full.push_back(8);
  full.push_back(9);
  fresh.append(full, audio);
  EXPECT_TRUE(std::equal(fresh.logits().begin(), fresh.logits().end(), s.logits().begin()));
}

TEST(SessionApi, GenerateStopsOnStopIdAndVeto) {
  Fixture f;
  DecodeSession s(f.m, 64, 2);
  s.append(std::vector<int32_t>{1, 2, 3});
  DecodeSession probe = s.fork();
  GenerateResult free_run = probe.generate(Fixture::opts(5));
  ASSERT_FALSE(free_run.tokens.empty());
  DecodeSession a = s.fork();
  SessionGenerateOptions o = Fixture::opts(5);
  o.stop_ids = {free_run.tokens[0]};
  GenerateResult r = a.generate(o);
  EXPECT_EQ(r.tokens.size(), 1u);
  EXPECT_TRUE(r.stopped_at_eos);
  DecodeSession b = s.fork();
  int seen = 0;
  o = Fixture::opts(5);
  o.on_token = [&](int32_t, float) { return ++seen < 2; };
  r = b.generate(o);
  EXPECT_EQ(r.tokens.size(), 2u);
}

TEST(SessionApi, RejectsBadInputs) {
  Fixture f;
  auto audio = encode_audio(*f.m, f.mels, 2);
  DecodeSession s(f.m, 16, 2);
  EXPECT_THROW(s.append(f.prefix, audio), Error);  // over capacity
  DecodeSession t(f.m, 256, 2);
  auto short_prefix = f.prefix;
  short_prefix.erase(short_prefix.begin() + 5);  // one <audio_patch> short
  EXPECT_THROW(t.append(short_prefix, audio), Error);
  EXPECT_THROW(t.score({{1}}), Error);  // nothing appended yet
  EXPECT_THROW(DecodeSession(f.m, model_info(*f.m).max_positions + 1), Error);
}

TEST(SessionApi, NormalizeLogprobs) {
  auto p = normalize_logprobs({-1.0, -2.0, -1000.0});
  ASSERT_EQ(p.size(), 3u);
  EXPECT_NEAR(p[0] + p[1] + p[2], 1.0, 1e-12);
  EXPECT_NEAR(p[0] / p[1], std::exp(1.0), 1e-9);
  EXPECT_TRUE(normalize_logprobs({}).empty());
}
