// The continuous-batching Scheduler (include/stepaudio/scheduler.h) on the synthetic tiny model:
// branches submitted from several threads decode in one batch and each gets exactly the tokens of
// a lone run; a prefill cut into pieces equals one append and lets a decoding branch advance
// between its pieces (a long prompt does not starve a decoding request); errors reach the caller.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "model/model_data.h"
#include "stepaudio/error.h"
#include "stepaudio/model.h"
#include "stepaudio/scheduler.h"
#include "stepaudio/session.h"

using namespace stepaudio;

namespace {
constexpr int32_t kNever = 1 << 30;  // a stop id no vocabulary has

std::vector<int32_t> ids(size_t n, int32_t seed) {
  std::vector<int32_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = int32_t((i * 37 + size_t(seed) * 11) % 400 + 1);
  return v;
}

// Waits until a GenerateResult arrives through a DoneFn.
struct Slot {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  GenerateResult r;
  std::exception_ptr e;
  BatchDecoder::DoneFn fn() {
    return [this](GenerateResult res, std::exception_ptr err) {
      std::lock_guard<std::mutex> lk(mu);
      r = std::move(res);
      e = err;
      done = true;
      cv.notify_all();
    };
  }
  GenerateResult wait() {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return done; });
    if (e) std::rethrow_exception(e);
    return r;
  }
};

// A branch decoding in the scheduler's batch until stopped: a 1000-token budget with no stop id,
// so it outlasts whatever the test runs meanwhile; start() returns once its first token is out.
struct Background {
  DecodeSession session;
  std::atomic<size_t> tokens{0};
  std::atomic<bool> stop{false};
  std::chrono::milliseconds pace{0};  // a sleep per token: outlasts a test's waits
  std::mutex mu;
  std::condition_variable cv;
  Slot slot;
  Background(std::shared_ptr<const Model> m, int32_t seed) : session(std::move(m), 1100, 1) {
    session.append(ids(8, seed));
  }
  void start(Scheduler& sched, const void* owner = nullptr) {
    SessionGenerateOptions o;
    o.max_new_tokens = 1000;
    o.stop_ids = {kNever};  // no early <|EOT|>
    o.on_token = [this](int32_t, float) {
      if (pace.count()) std::this_thread::sleep_for(pace);
      ++tokens;
      cv.notify_all();
      return !stop.load();
    };
    sched.generate(session, o, slot.fn(), owner);
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return tokens.load() > 0; });
  }
  // Stops it by its veto; the number of tokens it generated.
  size_t finish() {
    stop = true;
    return slot.wait().tokens.size();
  }
};

// Runs the model's encoder on 3 s of constant mel through sched.run_yielding (tagged owner): how
// many tokens `a` generated meanwhile (one per pass taken at the encoder's pauses).
size_t tokens_during_encode(Scheduler& sched, const Model& m, Background& a,
                            const void* owner = nullptr) {
  MelChunk mel;
  mel.n_mels = 128;
  mel.n_frames = 301;
  mel.data.assign(mel.n_mels * mel.n_frames, 0.1f);
  size_t before = 0, after = 0;
  sched.run_yielding(
      [&](const std::function<void()>& yield) {
        before = a.tokens.load();
        encode_audio(m, {mel}, 1, {}, nullptr, yield);
        after = a.tokens.load();
      },
      owner);
  return after - before;
}
}  // namespace

class SchedulerTest : public ::testing::TestWithParam<Quant> {};

TEST_P(SchedulerTest, RequestsFromThreadsBatchAndMatchLoneRuns) {
  auto m = make_synthetic_model("tiny", 21, GetParam());
  const size_t n = 4;
  std::vector<DecodeSession> alone, batched;
  for (size_t i = 0; i < n; ++i) {
    for (auto* v : {&alone, &batched}) {
      v->emplace_back(m, 128, 1);
      v->back().append(ids(10 + 3 * i, int32_t(i)));
    }
  }
  SessionGenerateOptions o;
  o.max_new_tokens = 20;
  o.stop_ids = {kNever};  // every branch runs its whole budget: the step count is exact
  std::vector<GenerateResult> want;
  for (auto& s : alone) want.push_back(s.generate(o));

  Scheduler sched;
  // Hold the scheduler's thread in a work item until every branch is queued: all four are then
  // admitted at one step boundary, so the batch of four is certain, not a matter of timing.
  std::mutex gate_mu;
  std::condition_variable gate_cv;
  bool entered = false, open = false;
  std::thread holder([&] {
    sched.run([&] {
      std::unique_lock<std::mutex> lk(gate_mu);
      entered = true;
      gate_cv.notify_all();
      gate_cv.wait(lk, [&] { return open; });
    });
  });
  {
    std::unique_lock<std::mutex> lk(gate_mu);
    gate_cv.wait(lk, [&] { return entered; });
  }
  std::vector<Slot> slots(n);
  std::vector<std::thread> clients;
  for (size_t i = 0; i < n; ++i)
    clients.emplace_back([&, i] { sched.generate(batched[i], o, slots[i].fn()); });
  for (auto& t : clients) t.join();
  {
    std::lock_guard<std::mutex> lk(gate_mu);
    open = true;
  }
  gate_cv.notify_all();
  holder.join();
  for (size_t i = 0; i < n; ++i) {
    GenerateResult got = slots[i].wait();
    ASSERT_EQ(got.tokens, want[i].tokens) << "branch " << i;
    ASSERT_EQ(0, std::memcmp(got.logprobs.data(), want[i].logprobs.data(),
                             got.logprobs.size() * sizeof(float)));
    ASSERT_EQ(0, std::memcmp(alone[i].logits().data(), batched[i].logits().data(),
                             alone[i].logits().size() * sizeof(float)));
  }
  const SchedulerStats st = sched.stats();
  EXPECT_EQ(st.max_rows, n);
  EXPECT_EQ(st.steps, 20u);  // all four in every step: 20 choices, 19 passes (+ the last choice)
}

TEST_P(SchedulerTest, LongPrefillInPiecesLetsDecodingAdvance) {
  auto m = make_synthetic_model("tiny", 22, GetParam());
  // The long prompt: 10 pieces of 40 rows.
  const std::vector<int32_t> prompt = ids(400, 2);
  DecodeSession whole(m, 512, 1), pieces(m, 512, 1);
  whole.append(prompt);

  Scheduler sched(SchedulerOptions{.max_batch = 8, .prefill_chunk = 40});
  Background a(m, 1);  // decoding before the prefill arrives, still decoding after it
  a.start(sched);
  const size_t before = a.tokens.load();
  sched.append(pieces, prompt);
  const size_t during = a.tokens.load() - before;
  // A decode step between every two pieces: at least 9 tokens while the prompt was prefilled.
  EXPECT_GE(during, 9u);
  // The pieces give one append's state, bit for bit.
  ASSERT_EQ(pieces.pos(), whole.pos());
  EXPECT_EQ(0, std::memcmp(pieces.logits().data(), whole.logits().data(),
                           whole.logits().size() * sizeof(float)));
  EXPECT_LT(a.finish(), 1000u);  // it was still decoding: the veto ended it
}

INSTANTIATE_TEST_SUITE_P(Quants, SchedulerTest, ::testing::Values(Quant::f32, Quant::q4),
                         [](const auto& info) { return std::string(quant_name(info.param)); });

TEST(SchedulerApi, ErrorsReachTheCaller) {
  auto m = make_synthetic_model("tiny", 23);
  Scheduler sched;
  EXPECT_THROW(sched.run([] { throw Error(Errc::invalid_argument, "boom"); }), Error);
  DecodeSession empty(m, 16, 1);
  Slot slot;
  sched.generate(empty, {}, slot.fn());  // no prompt: rejected through the DoneFn
  EXPECT_THROW(slot.wait(), Error);
  EXPECT_THROW(sched.drive(), Error);  // threaded: nothing to drive by hand
  // Inline: the caller drives.
  Scheduler inl(SchedulerOptions{.threaded = false});
  DecodeSession s(m, 64, 1);
  s.append(ids(5, 3));
  SessionGenerateOptions o;
  o.max_new_tokens = 5;
  Slot done;
  inl.generate(s, o, done.fn());
  size_t steps = 0;
  while (inl.drive()) ++steps;
  EXPECT_EQ(done.wait().tokens.size(), 5u);
  EXPECT_EQ(steps, 5u);
}

TEST(SchedulerApi, EncoderYieldsBetweenBlocks) {
  // run_yielding + encode_audio's between_blocks: a decode step of the batch after every encoder
  // block but the last, so a new request's encoder does not stall the others' decoding.
  auto m = make_synthetic_model("tiny", 24);
  const size_t blocks = model_info(*m).n_audio_layers;
  ASSERT_GE(blocks, 2u);
  MelChunk mel;
  mel.n_mels = 128;
  mel.n_frames = 301;
  mel.data.resize(mel.n_mels * mel.n_frames);
  for (size_t i = 0; i < mel.data.size(); ++i) mel.data[i] = float(i % 17) * 0.05f - 0.4f;
  const std::vector<AudioEmbedding> want = encode_audio(*m, {mel}, 1);
  Scheduler sched(SchedulerOptions{.yield_interval_ms = 0});
  Background a(m, 5);  // started only now: its budget far outlasts one encode
  a.start(sched);
  std::vector<AudioEmbedding> got;
  size_t before = 0, after = 0;
  sched.run_yielding([&](const std::function<void()>& yield) {
    before = a.tokens.load();  // on the scheduler's thread: no step runs but the yields below
    got = encode_audio(*m, {mel}, 1, {}, nullptr, yield);
    after = a.tokens.load();
  });
  EXPECT_EQ(after - before, blocks - 1);
  a.finish();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].rows, want[0].rows);  // pausing changes no number
}

// Prompt rows and decode rows share passes where rows do not depend on the batch: a prefill
// through the scheduler, a group of appends and a group of scores, all while a branch decodes,
// equal the same work done alone bit for bit, and the decode steps rode in the prompt passes.
// Where rows do depend on the batch (q4 with the bf16-activation GEMM) nothing is shared and the
// numbers are still the lone runs'.
TEST(SchedulerShared, PromptRowsRideWithDecodeRowsAndMatchLoneRuns) {
  struct Mode {
    Quant q;
    bool int8_prefill;
  };
  for (Mode mode : {Mode{Quant::f32, true}, Mode{Quant::q4, true}, Mode{Quant::q4, false}}) {
    auto m = make_synthetic_model("tiny", 25, mode.q, true, mode.int8_prefill);
    const bool shared = model::rows_independent_of_batch(*m);
    const std::string what = std::string(quant_name(mode.q)) + (shared ? " shared" : " separate");
    const std::vector<int32_t> prompt = ids(150, 4);
    const std::vector<std::vector<int32_t>> qs = {ids(5, 6), ids(17, 7), ids(3, 8)};
    const std::vector<std::vector<int32_t>> labels = {{5, 6, 7}, {5, 9}, {11}, {12, 13}};
    // Alone: plain DecodeSession calls.
    DecodeSession whole(m, 256, 1);
    whole.append(prompt);
    std::vector<DecodeSession> alone;
    for (const auto& q : qs) {
      alone.push_back(whole.fork(whole.pos() + 40));
      alone.back().append(q);
    }
    const std::vector<ContinuationScore> want0 = alone[0].score(labels),
                                         want1 = alone[1].score(labels);
    // Through the scheduler, a branch decoding all along.
    Scheduler sched(SchedulerOptions{.prefill_chunk = 64});
    Background bg(m, 9);
    bg.start(sched);
    DecodeSession base(m, 256, 1);
    sched.append(base, prompt);  // 150 rows: three pieces
    std::vector<DecodeSession> together;
    for (size_t i = 0; i < qs.size(); ++i) together.push_back(base.fork(base.pos() + 40));
    std::vector<AppendRequest> asks;
    for (size_t i = 0; i < qs.size(); ++i) asks.push_back({&together[i], qs[i], nullptr});
    sched.append(asks);
    const std::vector<ScoreRequest> scores = {{&together[0], &labels}, {&together[1], &labels}};
    const auto got = sched.score(scores);
    const SchedulerStats st = sched.stats();
    bg.finish();

    ASSERT_EQ(base.pos(), whole.pos()) << what;
    EXPECT_EQ(0, std::memcmp(base.logits().data(), whole.logits().data(),
                             whole.logits().size() * sizeof(float)))
        << what;
    for (size_t i = 0; i < qs.size(); ++i) {
      ASSERT_EQ(together[i].pos(), alone[i].pos()) << what;
      EXPECT_EQ(0, std::memcmp(together[i].logits().data(), alone[i].logits().data(),
                               alone[i].logits().size() * sizeof(float)))
          << what << " question " << i;
    }
    ASSERT_EQ(got.size(), 2u);
    for (size_t c = 0; c < labels.size(); ++c) {
      EXPECT_EQ(got[0][c].logprob, want0[c].logprob) << what << " label " << c;
      EXPECT_EQ(got[1][c].logprob, want1[c].logprob) << what << " label " << c;
      EXPECT_EQ(got[0][c].n_tokens, labels[c].size());
    }
    // 150 + 25 appended rows and 2 x 3 tree rows (the inner nodes {5}, {5, 6}, {12}).
    EXPECT_EQ(st.prompt_rows, 150u + 25u + 6u) << what;
    if (shared) {
      // Every prompt pass carried the branch's decode row: 3 pieces, 1 group, 1 score pass.
      EXPECT_GE(st.shared_steps, 5u) << what;
    } else {
      EXPECT_EQ(st.shared_steps, 0u) << what;
    }
  }
}

TEST(SchedulerShared, GroupsShareOnePassAndErrorsStayWithTheirRequest) {
  auto m = make_synthetic_model("tiny", 26, Quant::f32);
  Scheduler sched(SchedulerOptions{.prefill_chunk = 64, .threaded = false});
  DecodeSession a(m, 64, 1), b(m, 64, 1), c(m, 64, 1);
  const std::vector<int32_t> ia = ids(5, 1), ib = ids(7, 2), ic = ids(3, 3);
  const std::vector<AppendRequest> group = {
      {&a, ia, nullptr}, {&b, ib, nullptr}, {&c, ic, nullptr}};
  sched.append(group);
  SchedulerStats st = sched.stats();
  EXPECT_EQ(st.passes, 1u);  // 15 rows of three sessions: one pass
  EXPECT_EQ(st.prompt_rows, 15u);
  EXPECT_EQ(a.pos(), 5u);
  EXPECT_EQ(b.pos(), 7u);
  // A session twice, a prompt past the capacity, scoring without a prompt: thrown at the call,
  // before anything runs.
  const std::vector<AppendRequest> twice = {{&a, ia, nullptr}, {&a, ib, nullptr}};
  EXPECT_THROW(sched.append(twice), Error);
  EXPECT_THROW(sched.append(a, ids(80, 4)), Error);
  DecodeSession empty(m, 16, 1);
  const std::vector<std::vector<int32_t>> labels = {{1, 2}};
  EXPECT_THROW(sched.score(empty, labels), Error);
  EXPECT_EQ(sched.stats().passes, 1u);
  EXPECT_EQ(a.pos(), 5u);
  // A session of another model fails alone; the batch's own work goes on.
  auto other = make_synthetic_model("tiny", 27, Quant::f32);
  DecodeSession foreign(other, 16, 1);
  SessionGenerateOptions o;
  o.max_new_tokens = 4;
  o.stop_ids = {kNever};
  Slot slot;
  sched.generate(a, o, slot.fn());
  sched.drive();  // a is admitted and decoding: the pass model is a's
  EXPECT_THROW(sched.append(foreign, ids(4, 5)), Error);
  while (sched.drive()) {
  }
  EXPECT_EQ(slot.wait().tokens.size(), 4u);
}

TEST(SchedulerShared, EncoderPausesOnlyWhenSomethingWaits) {
  // yield_interval_ms: with no prompt rows waiting, the batch does not step at an encoder's pause
  // points until the interval has passed (a decode-only pass costs a whole read of the weights).
  auto m = make_synthetic_model("tiny", 24);
  Scheduler sched(SchedulerOptions{.yield_interval_ms = 3600 * 1000});
  Background a(m, 5);
  a.start(sched);
  EXPECT_EQ(tokens_during_encode(sched, *m, a), 0u);
  a.finish();
}

TEST(SchedulerShared, EncoderPausesServeOtherOwnersOnly) {
  // An encoder's pauses (interval 0: a pass at each one) step the branches of other owners, and
  // of none, but not its own owner's: those ride in the owner's next prompt passes.
  auto m = make_synthetic_model("tiny", 24);
  const size_t blocks = model_info(*m).n_audio_layers;
  const int me = 0, other = 0;  // two distinct addresses as tags
  for (const void* branch_owner : {static_cast<const void*>(&me), static_cast<const void*>(&other),
                                   static_cast<const void*>(nullptr)}) {
    Scheduler sched(SchedulerOptions{.yield_interval_ms = 0});
    Background a(m, 5);
    a.start(sched, branch_owner);
    EXPECT_EQ(tokens_during_encode(sched, *m, a, &me), branch_owner == &me ? 0 : blocks - 1)
        << (branch_owner == &me ? "own"
            : branch_owner      ? "other"
                                : "untagged");
    a.finish();
  }
}

TEST(SchedulerShared, WorkSubmittedFromADoneFnLeavesTheOtherBranchesAlone) {
  // A branch's DoneFn (on the scheduler's thread, inside a shared pass's step) appends a follow-up
  // prompt: it runs at once in a prompt-only pass, and the other branch of the step keeps its
  // whole budget (a nested step would have retired it).
  auto m = make_synthetic_model("tiny", 28, Quant::f32);
  Scheduler sched(SchedulerOptions{.threaded = false});
  DecodeSession a(m, 64, 1), b(m, 64, 1), c(m, 64, 1), c_alone(m, 64, 1);
  a.append(ids(4, 1));
  b.append(ids(6, 2));
  c_alone.append(ids(9, 3));
  SessionGenerateOptions short_o, long_o;
  short_o.max_new_tokens = 2;
  long_o.max_new_tokens = 9;
  short_o.stop_ids = long_o.stop_ids = {kNever};
  Slot sa, sb;
  bool appended = false;
  sched.generate(a, short_o, [&](GenerateResult r, std::exception_ptr e) {
    sched.append(c, ids(9, 3));
    appended = true;
    sa.fn()(std::move(r), e);
  });
  sched.generate(b, long_o, sb.fn());
  while (sched.drive()) {
  }
  EXPECT_TRUE(appended);
  EXPECT_EQ(sa.wait().tokens.size(), 2u);
  EXPECT_EQ(sb.wait().tokens.size(), 9u);
  ASSERT_EQ(c.pos(), c_alone.pos());
  EXPECT_EQ(0, std::memcmp(c.logits().data(), c_alone.logits().data(),
                           c.logits().size() * sizeof(float)));
}

TEST(SchedulerShared, BackgroundRowsFillTheRoomOfDecodePasses) {
  // Priority::background: while two branches decode, a background prompt takes only the room
  // below fill_rows (6 of 8 rows) in each pass, and every such pass steps the branches; a
  // background tree goes whole into any room; with nothing else in the batch a background prompt
  // takes a whole chunk; a background job that finds no room for background_max_wait passes runs
  // as normal. The numbers are the lone runs' bit for bit.
  auto m = make_synthetic_model("tiny", 29, Quant::f32);
  const SchedulerOptions opts{
      .prefill_chunk = 64, .fill_rows = 8, .background_max_wait = 3, .threaded = false};
  Scheduler sched(opts);
  DecodeSession a(m, 128, 1), b(m, 128, 1), bg(m, 128, 1), alone(m, 128, 1);
  a.append(ids(4, 1));
  b.append(ids(6, 2));
  SessionGenerateOptions o;
  o.max_new_tokens = 60;
  o.stop_ids = {kNever};
  Slot sa, sb;
  sched.generate(a, o, sa.fn());
  sched.generate(b, o, sb.fn());
  ASSERT_TRUE(sched.drive());  // both admitted and decoding
  SchedulerStats st0 = sched.stats();
  const std::vector<int32_t> prompt = ids(30, 3);
  sched.append(bg, prompt, {}, Priority::background);
  SchedulerStats st = sched.stats();
  EXPECT_EQ(st.passes - st0.passes, 5u);  // 30 rows in the room of 6
  EXPECT_EQ(st.steps - st0.steps, 5u);
  EXPECT_EQ(st.background_rows, 30u);
  alone.append(prompt);
  ASSERT_EQ(bg.pos(), alone.pos());
  EXPECT_EQ(0, std::memcmp(bg.logits().data(), alone.logits().data(),
                           bg.logits().size() * sizeof(float)));
  // A tree of 7 rows (more than the room) in one pass.
  const std::vector<std::vector<int32_t>> labels = {{5, 6, 7, 8}, {9, 10, 11, 12, 13}};
  const std::vector<ContinuationScore> want = alone.score(labels);
  st0 = sched.stats();
  const std::vector<ContinuationScore> got = sched.score(bg, labels, Priority::background);
  st = sched.stats();
  EXPECT_EQ(st.passes - st0.passes, 1u);
  EXPECT_EQ(st.background_rows - st0.background_rows, 7u);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i].logprob, want[i].logprob) << i;
  while (sched.drive()) {
  }
  EXPECT_EQ(sa.wait().tokens.size(), 60u);
  EXPECT_EQ(sb.wait().tokens.size(), 60u);
  // Nothing decoding: the whole prompt in one pass.
  DecodeSession c(m, 128, 1);
  st0 = sched.stats();
  sched.append(c, ids(40, 4), {}, Priority::background);
  EXPECT_EQ(sched.stats().passes - st0.passes, 1u);
  // The decode rows alone fill the GEMV (fill_rows 2, two branches): pieces of fill_rows.
  Scheduler busy(SchedulerOptions{.prefill_chunk = 64, .fill_rows = 2, .threaded = false});
  DecodeSession d(m, 128, 1), e(m, 128, 1), late(m, 128, 1);
  d.append(ids(4, 1));
  e.append(ids(6, 2));
  Slot sd, se;
  busy.generate(d, o, sd.fn());
  busy.generate(e, o, se.fn());
  ASSERT_TRUE(busy.drive());
  st0 = busy.stats();
  busy.append(late, prompt, {}, Priority::background);
  st = busy.stats();
  EXPECT_EQ(st.passes - st0.passes, 15u);
  EXPECT_EQ(st.background_rows, 30u);
  while (busy.drive()) {
  }
  sd.wait();
  se.wait();
}

TEST(SchedulerShared, BackgroundRowsWaitForNormalRowsOnlySoLong) {
  // Five one-token branches end in the first pass; each DoneFn appends 10 normal rows (a pass of
  // its own, inside the step). Those passes leave a background job no room: it waits, and after
  // background_max_wait (3) of them it goes in as normal with the fourth. Without the limit it
  // waits for a pass of its own.
  auto m = make_synthetic_model("tiny", 30, Quant::f32);
  for (size_t max_wait : {size_t(3), size_t(1000)}) {
    Scheduler sched(SchedulerOptions{
        .prefill_chunk = 64, .fill_rows = 8, .background_max_wait = max_wait, .threaded = false});
    std::vector<DecodeSession> branches, followers;
    for (int i = 0; i < 5; ++i) {
      branches.emplace_back(m, 64, 1);
      branches.back().append(ids(4, i));
      followers.emplace_back(m, 64, 1);
    }
    SessionGenerateOptions o;
    o.max_new_tokens = 2;
    o.stop_ids = {kNever};
    std::vector<Slot> slots(5);
    for (int i = 0; i < 5; ++i)
      sched.generate(branches[i], o, [&, i](GenerateResult r, std::exception_ptr err) {
        sched.append(followers[i], ids(10, 10 + i));
        slots[i].fn()(std::move(r), err);
      });
    ASSERT_TRUE(sched.drive());  // admitted, first token
    const SchedulerStats st0 = sched.stats();
    DecodeSession bg(m, 64, 1), alone(m, 64, 1);
    const std::vector<int32_t> prompt = ids(30, 3);
    sched.append(bg, prompt, {}, Priority::background);
    const SchedulerStats st = sched.stats();
    // The step's pass (3 rows of room: 5 decode rows) and the five followers' passes; the rest
    // of the job rides the fourth (limit 3) or takes a pass after them.
    EXPECT_EQ(st.passes - st0.passes, max_wait == 3 ? 6u : 7u) << max_wait;
    EXPECT_EQ(st.background_rows, 30u);
    alone.append(prompt);
    EXPECT_EQ(0, std::memcmp(bg.logits().data(), alone.logits().data(),
                             bg.logits().size() * sizeof(float)));
    while (sched.drive()) {
    }
    for (Slot& s : slots) EXPECT_EQ(s.wait().tokens.size(), 2u);
  }
}

TEST(SchedulerShared, BackgroundRowsAloneDoNotPauseAnEncoder) {
  // fill_rows 0: background rows only when nothing else runs. A background append queued while
  // a branch decodes waits; an encoder then runs without pausing for it (with normal rows
  // waiting it would take a pass at every block), and once the branch ends the rows go in.
  auto m = make_synthetic_model("tiny", 31, Quant::f32);
  Scheduler sched(SchedulerOptions{
      .fill_rows = 0, .background_max_wait = size_t(1) << 40, .yield_interval_ms = 3600 * 1000});
  Background a(m, 5);
  a.pace = std::chrono::milliseconds(2);  // 1000 tokens: 2 s
  a.start(sched);
  DecodeSession bg(m, 64, 1), alone(m, 64, 1);
  const std::vector<int32_t> prompt = ids(20, 6);
  std::thread t([&] { sched.append(bg, prompt, {}, Priority::background); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // queued (else this cannot fail)
  EXPECT_EQ(sched.stats().background_rows, 0u);
  EXPECT_EQ(tokens_during_encode(sched, *m, a), 0u);
  a.finish();
  t.join();
  EXPECT_EQ(sched.stats().background_rows, 20u);
  alone.append(prompt);
  EXPECT_EQ(0, std::memcmp(bg.logits().data(), alone.logits().data(),
                           bg.logits().size() * sizeof(float)));
}

TEST(SchedulerShared, AsyncAppendsQueueInOrderExpediteMakesThemNormalDropEndsThem) {
  // append_async returns before any pass; its background rows take the room of a decode pass
  // (7 beside one decode row); expedite() turns the rest into normal rows (the next pass takes
  // them all); a second piece queued after the first continues the same prompt. The session
  // ends up as one append of the whole prompt, bit for bit.
  auto m = make_synthetic_model("tiny", 32, Quant::f32);
  Scheduler sched(SchedulerOptions{.prefill_chunk = 64,
                                   .fill_rows = 8,
                                   .background_max_wait = size_t(1) << 40,
                                   .threaded = false});
  DecodeSession branch(m, 64, 1);
  branch.append(ids(4, 1));
  SessionGenerateOptions o;
  o.max_new_tokens = 30;
  o.stop_ids = {kNever};
  Slot slot;
  sched.generate(branch, o, slot.fn());
  ASSERT_TRUE(sched.drive());  // admitted, first token
  DecodeSession bg(m, 64, 1), alone(m, 64, 1);
  const std::vector<int32_t> prompt = ids(30, 5);
  int ended = 0;
  std::exception_ptr error;
  auto done = [&](std::exception_ptr e) {
    ++ended;
    error = e;
  };
  const SchedulerStats st0 = sched.stats();
  sched.append_async(bg, std::span(prompt).first(20), Priority::background, done);
  EXPECT_EQ(sched.stats().passes, st0.passes);  // queued only
  EXPECT_EQ(ended, 0);
  ASSERT_TRUE(sched.drive());
  EXPECT_EQ(sched.stats().background_rows, 7u);
  EXPECT_EQ(ended, 0);
  sched.expedite(bg);
  ASSERT_TRUE(sched.drive());
  EXPECT_EQ(sched.stats().prompt_rows - st0.prompt_rows, 20u);
  EXPECT_EQ(sched.stats().background_rows, 7u);  // the 13 went as normal rows
  EXPECT_EQ(ended, 1);
  EXPECT_FALSE(error);
  sched.append_async(bg, std::span(prompt).subspan(20), Priority::normal, done);
  ASSERT_TRUE(sched.drive());
  EXPECT_EQ(ended, 2);
  sched.append_async(bg, {}, Priority::normal, done);  // nothing to run: done at once
  EXPECT_EQ(ended, 3);
  alone.append(prompt);
  EXPECT_EQ(bg.pos(), alone.pos());
  EXPECT_EQ(0, std::memcmp(bg.logits().data(), alone.logits().data(),
                           bg.logits().size() * sizeof(float)));
  // A prompt the session cannot hold is refused on the caller, before anything is queued.
  DecodeSession small(m, 8, 1);
  EXPECT_THROW(sched.append_async(small, ids(9, 2), Priority::normal, done), Error);
  EXPECT_EQ(ended, 3);
  // drop(): a queued prompt ends at the next pass with the rows it had run (7 of its room), and
  // done says canceled; jobs of other sessions are not touched.
  DecodeSession dropped(m, 64, 1), kept(m, 64, 1);
  sched.append_async(dropped, std::span(prompt).first(20), Priority::background, done);
  sched.append_async(kept, std::span(prompt).first(3), Priority::normal, done);
  ASSERT_TRUE(sched.drive());  // 3 normal rows of kept, then 4 background ones of dropped
  EXPECT_EQ(ended, 4);
  EXPECT_EQ(dropped.pos(), 4u);
  sched.drop(dropped);
  sched.drop(kept);  // nothing of it is queued: no effect
  ASSERT_TRUE(sched.drive());
  EXPECT_EQ(ended, 5);
  ASSERT_TRUE(error);
  try {
    std::rethrow_exception(error);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::canceled);
  }
  EXPECT_EQ(dropped.pos(), 4u);
  EXPECT_EQ(kept.pos(), 3u);
  while (sched.drive()) {
  }
  EXPECT_EQ(slot.wait().tokens.size(), 30u);
}
