// Batched decode (include/stepaudio/session.h: BatchDecoder, generate_batch) on the synthetic tiny
// model in every quant mode: branches generating together give bit for bit the tokens and
// log-probabilities of each branch generated alone, and leave each session in the state a lone run
// leaves (same logits afterwards), also with more branches than one pass takes, branches joining
// mid-way (continuous batching), sampling, stop ids, vetoes, budgets and a canceled branch.
// Exact equality is the contract (not a tolerance): every kernel's row result is independent of
// the number of rows in the call (ops.h), so a batch changes no number.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>

#include "stepaudio/error.h"
#include "stepaudio/model.h"
#include "stepaudio/session.h"

using namespace stepaudio;

namespace {
struct Branches {
  std::shared_ptr<const Model> m;
  DecodeSession prefix;
  std::vector<std::vector<int32_t>> questions = {
      {17, 23, 99, 5}, {8}, {40, 41}, {3, 3, 3, 9, 10, 11}, {77, 78, 79}, {12, 13},
      {90, 91, 92, 93}, {5}, {60, 61, 62}, {33}};
  explicit Branches(Quant q)
      : m(make_synthetic_model("tiny", 11, q)), prefix(m, 512, 2) {
    prefix.append(std::vector<int32_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  }
  std::vector<DecodeSession> forks(size_t n) {
    std::vector<DecodeSession> out;
    for (size_t i = 0; i < n; ++i) {
      out.push_back(prefix.fork(prefix.pos() + 64));
      out.back().append(questions[i % questions.size()]);
    }
    return out;
  }
  // Branch i's options: budgets, sampling and stops differ per branch.
  static SessionGenerateOptions opts(size_t i) {
    SessionGenerateOptions o;
    o.max_new_tokens = 3 + (i * 5) % 11;
    if (i % 3 == 1) {
      o.sampling.temperature = 0.9f;
      o.sampling.top_p = 0.95f;
      o.sampling.seed = 100 + i;
    }
    if (i % 4 == 2) o.sampling.repetition_penalty = 1.3f;
    if (i % 5 == 3) o.stop_ids = {7, 19};
    return o;
  }
};

void expect_same(const GenerateResult& a, const GenerateResult& b, const std::string& what) {
  ASSERT_EQ(a.tokens, b.tokens) << what;
  ASSERT_EQ(a.logprobs.size(), b.logprobs.size()) << what;
  EXPECT_EQ(0, std::memcmp(a.logprobs.data(), b.logprobs.data(), a.logprobs.size() * 4)) << what;
  EXPECT_EQ(a.stopped_at_eos, b.stopped_at_eos) << what;
}

void expect_same_state(const DecodeSession& a, const DecodeSession& b, const std::string& what) {
  ASSERT_EQ(a.pos(), b.pos()) << what;
  ASSERT_EQ(a.logits().size(), b.logits().size()) << what;
  EXPECT_EQ(0, std::memcmp(a.logits().data(), b.logits().data(), a.logits().size() * 4)) << what;
}
}  // namespace

class BatchDecode : public ::testing::TestWithParam<Quant> {};

TEST_P(BatchDecode, EqualsEachBranchAlone) {
  Branches f(GetParam());
  for (size_t n : {1, 4, 8, 10}) {  // 10: two passes per step at max_batch 8
    std::vector<DecodeSession> alone = f.forks(n), together = f.forks(n);
    std::vector<GenerateResult> want;
    for (size_t i = 0; i < n; ++i) want.push_back(alone[i].generate(Branches::opts(i)));
    std::vector<BranchRequest> req;
    for (size_t i = 0; i < n; ++i) req.push_back({&together[i], Branches::opts(i)});
    std::vector<GenerateResult> got = generate_batch(req);
    ASSERT_EQ(got.size(), n);
    for (size_t i = 0; i < n; ++i) {
      const std::string what = std::string(quant_name(GetParam())) + " n=" + std::to_string(n) +
                               " branch " + std::to_string(i);
      expect_same(want[i], got[i], what);
      expect_same_state(alone[i], together[i], what);
      // The sessions go on exactly alike after the batch.
      alone[i].append(std::vector<int32_t>{42});
      together[i].append(std::vector<int32_t>{42});
      expect_same_state(alone[i], together[i], what + " after one more append");
    }
  }
}

TEST_P(BatchDecode, BranchesJoiningMidwayAndSmallPasses) {
  // Continuous batching: branches 3.. join when an earlier one ends (from its DoneFn, as the
  // pipeline's summary joins when the transcript ends); passes of at most 3 rows.
  Branches f(GetParam());
  const size_t n = 7;
  std::vector<DecodeSession> alone = f.forks(n), together = f.forks(n);
  std::vector<GenerateResult> want(n), got(n);
  for (size_t i = 0; i < n; ++i) want[i] = alone[i].generate(Branches::opts(i));
  BatchDecoder d(3);
  size_t next = 3;
  std::function<void(size_t)> start = [&](size_t i) {
    d.add(together[i], Branches::opts(i), [&, i](GenerateResult r, std::exception_ptr e) {
      ASSERT_FALSE(e);
      got[i] = std::move(r);
      if (next < n) start(next++);
    });
  };
  for (size_t i = 0; i < 3; ++i) start(i);
  size_t steps = 0;
  while (d.step() > 0) ++steps;
  EXPECT_EQ(next, n);
  for (size_t i = 0; i < n; ++i) {
    expect_same(want[i], got[i], "branch " + std::to_string(i));
    expect_same_state(alone[i], together[i], "branch " + std::to_string(i));
  }
  EXPECT_GT(steps, 0u);
}

TEST_P(BatchDecode, CanceledOrVetoedBranchEndsAloneOthersUnchanged) {
  Branches f(GetParam());
  std::vector<DecodeSession> alone = f.forks(3), together = f.forks(3);
  std::atomic<bool> cancel{false};
  std::vector<SessionGenerateOptions> o(3);
  for (auto& x : o) x.max_new_tokens = 12;
  size_t seen = 0;
  o[1].on_token = [&](int32_t, float) { return ++seen < 4; };  // vetoes its 4th token
  o[2].cancel = &cancel;
  GenerateResult w0 = alone[0].generate(o[0]);
  size_t seen_alone = 0;
  SessionGenerateOptions o1 = o[1];
  o1.on_token = [&](int32_t, float) { return ++seen_alone < 4; };
  GenerateResult w1 = alone[1].generate(o1);
  EXPECT_EQ(w1.tokens.size(), 4u);

  BatchDecoder d;
  std::vector<GenerateResult> got(3);
  std::vector<std::exception_ptr> err(3);
  for (size_t i = 0; i < 3; ++i)
    d.add(together[i], o[i], [&, i](GenerateResult r, std::exception_ptr e) {
      got[i] = std::move(r);
      err[i] = e;
    });
  d.step();
  d.step();
  cancel = true;  // branch 2 ends with Error(canceled) at the next step, the others go on
  while (d.step() > 0) {
  }
  EXPECT_FALSE(err[0]);
  EXPECT_FALSE(err[1]);
  ASSERT_TRUE(err[2]);
  try {
    std::rethrow_exception(err[2]);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::canceled);
  }
  EXPECT_EQ(got[2].tokens.size(), 2u);  // the partial result: two steps chose two tokens
  expect_same(w0, got[0], "branch 0");
  expect_same(w1, got[1], "vetoed branch");
  expect_same_state(alone[0], together[0], "branch 0");
}

INSTANTIATE_TEST_SUITE_P(Quants, BatchDecode,
                         ::testing::Values(Quant::f32, Quant::bf16, Quant::q8, Quant::q4),
                         [](const auto& info) { return std::string(quant_name(info.param)); });

TEST(BatchDecodeApi, RejectsWhatGenerateRejects) {
  auto m = make_synthetic_model("tiny", 1);
  auto other = make_synthetic_model("tiny", 2);
  DecodeSession a(m, 16, 1), b(other, 16, 1), empty(m, 16, 1);
  a.append(std::vector<int32_t>{1, 2});
  b.append(std::vector<int32_t>{1, 2});
  BatchDecoder d;
  SessionGenerateOptions o;
  o.max_new_tokens = 4;
  EXPECT_THROW(d.add(empty, o, {}), Error);  // no prompt
  d.add(a, o, {});
  EXPECT_THROW(d.add(a, o, {}), Error);  // the same session twice
  EXPECT_THROW(d.add(b, o, {}), Error);  // another model
  o.max_new_tokens = 100;
  DecodeSession c = a.fork();
  EXPECT_THROW(d.add(c, o, {}), Error);  // over the capacity
  EXPECT_EQ(d.active(), 1u);
  while (d.step() > 0) {
  }
  EXPECT_EQ(a.pos(), 2u + 3u);  // 4 tokens chosen, the last one not run
}
