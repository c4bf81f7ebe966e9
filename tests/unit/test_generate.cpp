// generate() orchestration on the synthetic tiny model: cancellation, progress, patch-count checks,
// max-positions limit, and Session::fork reproducing the un-forked continuation bit for bit.
#include <gtest/gtest.h>

#include <atomic>

#include "model/model_data.h"
#include "model/session.h"
#include "stepaudio/error.h"
#include "stepaudio/model.h"

using namespace stepaudio;

namespace {
GenerateRequest small_request(const Model& m) {
  GenerateRequest r;
  MelChunk c;
  c.n_mels = 128;
  c.n_frames = 101;
  c.data.assign(c.n_mels * c.n_frames, 0.25f);
  r.mels.push_back(c);
  r.prompt_ids = {1, 2};
  for (size_t i = 0; i < audio_patch_count(101); ++i)
    r.prompt_ids.push_back(model_info(m).audio_patch_id);
  r.prompt_ids.push_back(3);
  r.max_new_tokens = 4;
  r.threads = 2;
  return r;
}
}  // namespace

TEST(Generate, PatchCountFormula) {
  EXPECT_EQ(audio_patch_count(2502), 313u);  // a full 25 s chunk
  EXPECT_EQ(audio_patch_count(529), 66u);
}

TEST(Generate, ProgressAndCancel) {
  auto m = make_synthetic_model("tiny", 1);
  auto req = small_request(*m);
  int calls = 0;
  auto res = generate(*m, req, [&](const GenerateProgress&) { ++calls; });
  EXPECT_EQ(res.tokens.size(), res.logprobs.size());
  EXPECT_GE(calls, 3);
  std::atomic<bool> cancel{true};
  try {
    generate(*m, req, {}, &cancel);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::canceled);
  }
}

TEST(Generate, RejectsInconsistentInputs) {
  auto m = make_synthetic_model("tiny", 1);
  auto req = small_request(*m);
  req.prompt_ids.pop_back();
  req.prompt_ids.pop_back();  // one patch id short
  EXPECT_THROW(generate(*m, req), Error);
  req = small_request(*m);
  req.max_new_tokens = model_info(*m).max_positions;  // prompt + new > max positions
  EXPECT_THROW(generate(*m, req), Error);
}

TEST(Session, ForkContinuesIdentically) {
  auto m = make_synthetic_model("tiny", 2);
  ops::ThreadPool pool(2);
  model::Session a(*m, pool, 16);
  const size_t H = m->cfg.text.hidden, V = m->cfg.text.vocab;
  std::vector<float> x(3 * H), logits(V), la(V), lb(V);
  for (int i = 0; i < 3; ++i) a.embed(10 + i, x.data() + i * H);
  a.forward(x.data(), 3, logits.data());
  model::Session b = a.fork(8);
  EXPECT_EQ(b.pos(), 3u);
  std::vector<float> e(H);
  a.embed(42, e.data());
  a.forward(e.data(), 1, la.data());
  b.forward(e.data(), 1, lb.data());
  EXPECT_EQ(la, lb);
}
