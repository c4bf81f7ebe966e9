// Scheduler (include/stepaudio/scheduler.h): one thread, one BatchDecoder, a FIFO of work items
// and a FIFO of prompt jobs. The loop alternates: one pass (admit new branches; their decode
// rows and up to prefill_chunk prompt rows in one model::Session::forward_mixed), then one queued
// item. An item that pauses (run_yielding) takes a pass at each pause point.
#include "stepaudio/scheduler.h"

#include <algorithm>
#include <optional>

#include "model/batch_branch.h"
#include "stepaudio/error.h"
#include "util/log.h"

namespace stepaudio {

// Rows waiting for passes: a prompt to append (split into pieces as the budget allows) or a token
// tree to score (one piece). Its fields past `n` change on the scheduler's thread only.
struct Scheduler::Job {
  DecodeSession::Impl* s = nullptr;
  std::vector<int32_t> ids;        // appended: the ids (the session's history grows by them)
  std::vector<float> x;            // appended: [n][hidden] (scored: the plan's rows)
  size_t n = 0;                    // rows
  std::optional<ScorePlan> plan;   // scored: the candidates' trie
  size_t done = 0;                 // rows already run
  std::vector<float> tree_logits;  // scored: [n][vocab]
  std::vector<ContinuationScore> scores;
  std::exception_ptr error;
  bool ended = false;
  bool background = false;  // Priority::background
  bool dropped = false;     // append_async's, by drop(): ends at the next pass
  size_t waited = 0;        // passes run since it was queued without a row of it (background)
  AppendDoneFn on_done;     // append_async: called once it has ended; the scheduler owns it
};

namespace {
// Runs a decode step's end: a DoneFn that throws (they must not) loses only its own branch.
void guard_done_fns(const std::function<void()>& step) {
  try {
    step();
  } catch (const std::exception& e) {
    SA_WARN("scheduler: a branch's completion callback threw: %s", e.what());
  } catch (...) {
    SA_WARN("scheduler: a branch's completion callback threw");
  }
}
}  // namespace

Scheduler::Scheduler(const SchedulerOptions& o)
    : prefill_chunk_(std::max<size_t>(1, o.prefill_chunk)),
      fill_rows_(o.fill_rows),
      background_max_wait_(o.background_max_wait),
      yield_interval_(o.yield_interval_ms),
      share_passes_(o.share_passes),
      threaded_(o.threaded),
      decoder_(o.max_batch) {
  if (threaded_) thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  if (!threaded_) return;
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

bool Scheduler::on_thread() const {
  return !threaded_ || std::this_thread::get_id() == thread_.get_id();
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return stats_;
}

void Scheduler::finish_job(Job& job, std::exception_ptr error) {
  std::unique_ptr<Job> owned;  // append_async's: freed after its callback, outside the lock
  {
    std::lock_guard<std::mutex> lk(mu_);
    job.error = error;
    job.ended = true;
    ++stats_.work_items;
    std::erase(jobs_, &job);
    if (job.on_done) {
      auto it = std::find_if(detached_.begin(), detached_.end(),
                             [&](const auto& j) { return j.get() == &job; });
      owned = std::move(*it);
      detached_.erase(it);
    }
    done_cv_.notify_all();
  }
  if (owned) guard_done_fns([&] { owned->on_done(error); });
}

void Scheduler::turn() {
  const bool decode = !in_step_;  // inside a DoneFn the decoder is mid-step: prompt rows only
  if (decode) {
    std::vector<Add> adds;
    {
      std::lock_guard<std::mutex> lk(mu_);
      adds.swap(adds_);
    }
    for (Add& a : adds) {
      try {
        decoder_.add(*a.session, a.options, a.done);
        decoder_.branches_.back()->owner = a.owner;
      } catch (...) {
        if (a.done) a.done({}, std::current_exception());
      }
    }
  }
  const bool stepping = decode && decoder_.active() > 0;
  // The pass's model: the branches', else the first job's. A job of another model fails alone.
  const Model* model = stepping ? decoder_.branches_.front()->s->model.get() : nullptr;
  struct Piece {
    Job* job;
    size_t from, n;
  };
  std::vector<Piece> pieces;
  std::vector<Job*> foreign, dropped;
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (Job* j : jobs_) {
      if (j->dropped) {
        dropped.push_back(j);
        continue;
      }
      if (!model) model = j->s->model.get();
      if (j->s->model.get() != model) foreign.push_back(j);
    }
  }
  for (Job* j : dropped)
    finish_job(*j, std::make_exception_ptr(Error(Errc::canceled, "scheduler: append dropped")));
  for (Job* j : foreign)
    finish_job(*j, std::make_exception_ptr(
                       Error(Errc::invalid_argument, "scheduler: sessions of different models")));
  if (!model) return;
  // Shared passes only where no row's numbers depend on the others (see the header).
  const bool shared = share_passes_ && model::rows_independent_of_batch(*model);
  {
    std::lock_guard<std::mutex> lk(mu_);
    // Normal jobs first come, first served; then background ones into the room left below
    // fill_rows (all of prefill_chunk when the pass has nothing else).
    auto normal = [&](const Job* j) { return counts_as_normal(*j, shared); };
    size_t budget = prefill_chunk_;
    for (Job* j : jobs_) {
      if (!normal(j)) continue;
      if (budget == 0) break;
      const size_t take = j->plan ? j->n : std::min(j->n - j->done, budget);
      if (take > budget && !pieces.empty()) break;  // a tree is never split: next pass
      pieces.push_back({j, j->done, take});
      budget -= std::min(budget, take);
    }
    // The room: nothing else, a whole chunk; a pass below fill_rows, up to it (nearly free: the
    // pass reads the weights anyway). A batch that fills the GEMV alone keeps every pass at the
    // cost of its rows for a while (a busy server): pieces of fill_rows go now, as cheap as
    // later. A pass filled by normal prompt rows has no room (decode passes follow them).
    const size_t decode_rows = stepping ? decoder_.active() : 0;
    const size_t rows = decode_rows + (prefill_chunk_ - budget);
    size_t room = rows == 0                   ? prefill_chunk_
                  : rows < fill_rows_         ? fill_rows_ - rows
                  : decode_rows >= fill_rows_ ? fill_rows_
                                              : 0;
    for (Job* j : jobs_) {
      if (normal(j)) continue;
      if (room == 0) {
        ++j->waited;
        continue;
      }
      // A tree goes whole into any room (its rows are few: a label set's inner nodes).
      const size_t take = j->plan ? j->n : std::min(j->n - j->done, room);
      pieces.push_back({j, j->done, take});
      room -= std::min(room, take);
    }
  }
  if (stepping || !pieces.empty()) last_pass_ = std::chrono::steady_clock::now();
  if (!shared && pieces.size() > 1) pieces.erase(pieces.begin() + 1, pieces.end());
  if (stepping) {  // counted before the step: its DoneFns may wake a caller that reads the stats
    const size_t rows = decoder_.active();
    std::lock_guard<std::mutex> lk(mu_);
    ++stats_.steps;
    stats_.step_rows += rows;
    stats_.max_rows = std::max(stats_.max_rows, rows);
    stats_.shared_steps += shared && !pieces.empty();
    stats_.passes += !shared;  // the separate decode step below
  }
  if (!shared) {
    if (stepping) {
      in_step_ = true;
      guard_done_fns([&] { decoder_.step(); });
      in_step_ = false;
    }
  }
  // This turn's own decode step in the shared pass. in_step_ stays set from begin_step (it runs
  // the on_token callbacks) until end_step's DoneFns have run: work they submit runs prompt
  // passes only, never a nested step.
  const bool own_step = shared && stepping;
  std::vector<BatchDecoder::Branch*> go;
  auto close_step = [&](std::exception_ptr pass_error) {
    for (BatchDecoder::Branch* b : go)
      if (pass_error) b->error = pass_error;
    guard_done_fns([&] { decoder_.end_step(go); });
    in_step_ = false;
  };
  if (own_step) {
    in_step_ = true;
    go = decoder_.begin_step();
  }
  if (go.empty() && pieces.empty()) {
    if (own_step) close_step(nullptr);  // branches that ended without a token to run
    return;
  }
  // One pass: the decode rows, then the prompt pieces.
  const size_t H = model->cfg.text.hidden, V = model->cfg.text.vocab;
  std::vector<float> xd(go.size() * H);
  std::vector<model::Session::Rows> rows;
  std::exception_ptr pass_error;
  size_t prompt_rows = 0;
  const auto pass_start = std::chrono::steady_clock::now();
  try {
    for (size_t i = 0; i < go.size(); ++i) rows.push_back(go[i]->rows(xd.data() + i * H));
    for (const Piece& p : pieces) {
      Job& j = *p.job;
      float* logits = nullptr;
      if (j.plan) {
        j.tree_logits.resize(j.n * V);
        logits = j.tree_logits.data();
      } else if (p.from + p.n == j.n) {  // the last piece: the logits after the prompt
        j.s->logits.resize(V);
        logits = j.s->logits.data();
      }
      const float* x = j.plan ? j.plan->x().data() : j.x.data();
      rows.push_back(
          {&j.s->session, x + p.from * H, p.n, j.plan ? j.plan->parent().data() : nullptr, logits});
      prompt_rows += p.n;
    }
    model::Session::forward_mixed(rows);
  } catch (...) {
    pass_error = std::current_exception();
  }
  // STEPAUDIO_LOG=debug: one line per pass, the timeline of a request's model work.
  SA_DEBUG("scheduler: pass of %zu decode + %zu prompt rows (%zu jobs) in %.1f ms", go.size(),
           prompt_rows, pieces.size(),
           std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - pass_start)
               .count());
  {
    std::lock_guard<std::mutex> lk(mu_);
    stats_.prompt_rows += prompt_rows;
    for (const Piece& p : pieces) stats_.background_rows += p.job->background ? p.n : 0;
    ++stats_.passes;
  }
  for (const Piece& p : pieces) {
    Job& j = *p.job;
    if (pass_error) {
      finish_job(j, pass_error);
      continue;
    }
    if (!j.plan)
      j.s->history.insert(j.s->history.end(), j.ids.begin() + p.from, j.ids.begin() + p.from + p.n);
    j.done += p.n;
    if (j.done < j.n) continue;
    std::exception_ptr e;
    if (j.plan) {
      try {
        j.scores = j.plan->scores(j.s->logits, j.tree_logits.data());
      } catch (...) {
        e = std::current_exception();
      }
    }
    finish_job(j, e);
  }
  if (own_step) close_step(pass_error);
}

void Scheduler::execute(Item& item) {
  try {
    item.fn();
  } catch (...) {
    item.error = std::current_exception();
  }
  std::lock_guard<std::mutex> lk(mu_);
  ++stats_.work_items;
  item.done = true;
}

void Scheduler::loop() {
  for (;;) {
    Item* item = nullptr;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] {
        return stop_ || !adds_.empty() || !work_.empty() || !jobs_.empty() || decoder_.active();
      });
      if (stop_ && adds_.empty() && work_.empty() && jobs_.empty() && !decoder_.active()) return;
      if (!work_.empty()) {
        item = work_.front();
        work_.pop_front();
      }
    }
    turn();
    if (item) {
      execute(*item);
      done_cv_.notify_all();
    }
  }
}

void Scheduler::run(const std::function<void()>& fn) {
  if (on_thread()) return fn();
  Item item{fn, nullptr, false};
  {
    std::lock_guard<std::mutex> lk(mu_);
    work_.push_back(&item);
  }
  cv_.notify_all();
  std::unique_lock<std::mutex> lk(mu_);
  done_cv_.wait(lk, [&] { return item.done; });
  if (item.error) std::rethrow_exception(item.error);
}

bool Scheduler::counts_as_normal(const Job& j, bool shared) const {
  // Unshared passes have no room to fill: background is normal there.
  return !shared || !j.background || j.waited >= background_max_wait_;
}

bool Scheduler::others_decoding(const void* owner) const {
  // A null owner owns nothing: every branch is another's.
  const auto other = [owner](const void* tag) { return !owner || tag != owner; };
  for (const auto& b : decoder_.branches_)
    if (other(b->owner)) return true;
  for (const Add& a : adds_)
    if (other(a.owner)) return true;
  return false;
}

void Scheduler::run_yielding(const std::function<void(const std::function<void()>&)>& fn,
                             const void* owner) {
  run([&] {
    fn([this, owner] {
      bool waiting, others;
      {
        std::lock_guard<std::mutex> lk(mu_);
        // Background rows alone do not pause an encoder: a pass taken for them would cost a
        // whole read of the weights for the few rows of its room.
        waiting = std::any_of(jobs_.begin(), jobs_.end(), [&](const Job* j) {
          return !j->background || j->dropped ||  // (the model's check walks every layer)
                 counts_as_normal(*j,
                                  share_passes_ && model::rows_independent_of_batch(*j->s->model));
        });
        others = others_decoding(owner);
      }
      if (waiting || (others && std::chrono::steady_clock::now() - last_pass_ >= yield_interval_))
        turn();
    });
  });
}

void Scheduler::submit(std::vector<std::unique_ptr<Job>>& jobs, Priority priority) {
  if (jobs.empty()) return;
  for (auto& j : jobs) j->background = priority == Priority::background;
  auto all_ended = [&] {
    for (const auto& j : jobs)
      if (!j->ended) return false;
    return true;
  };
  if (on_thread()) {  // run the passes here, these jobs first
    {
      std::lock_guard<std::mutex> lk(mu_);
      for (size_t i = jobs.size(); i-- > 0;) jobs_.push_front(jobs[i].get());
    }
    while (!all_ended()) turn();
  } else {
    {
      std::lock_guard<std::mutex> lk(mu_);
      for (auto& j : jobs) jobs_.push_back(j.get());
    }
    cv_.notify_all();
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, all_ended);
  }
  for (const auto& j : jobs)
    if (j->error) std::rethrow_exception(j->error);
}

void Scheduler::append(DecodeSession& s, std::span<const int32_t> ids,
                       const std::vector<AudioEmbedding>& audio, Priority priority) {
  const AppendRequest one{&s, ids, &audio};
  append(std::span<const AppendRequest>(&one, 1), priority);
}

void Scheduler::append(std::span<const AppendRequest> requests, Priority priority) {
  std::vector<std::unique_ptr<Job>> jobs;
  static const std::vector<AudioEmbedding> kNoAudio;
  for (const AppendRequest& r : requests) {
    if (!r.session) throw Error(Errc::invalid_argument, "append: a request without a session");
    for (const auto& j : jobs)
      if (j->s == r.session->impl_.get())
        throw Error(Errc::invalid_argument, "append: a session twice");
    if (r.ids.empty()) continue;
    auto j = std::make_unique<Job>();
    j->s = r.session->impl_.get();
    j->x = j->s->prompt_rows(r.ids, r.audio ? *r.audio : kNoAudio);  // checked here, on the caller
    j->ids.assign(r.ids.begin(), r.ids.end());
    j->n = r.ids.size();
    jobs.push_back(std::move(j));
  }
  submit(jobs, priority);
}

void Scheduler::append_async(DecodeSession& s, std::span<const int32_t> ids, Priority priority,
                             AppendDoneFn done) {
  if (!done) throw Error(Errc::invalid_argument, "append_async: no done callback");
  if (ids.empty()) return done(nullptr);
  auto j = std::make_unique<Job>();
  j->s = s.impl_.get();
  static const std::vector<AudioEmbedding> kNoAudio;
  j->x = j->s->prompt_rows(ids, kNoAudio);  // checked here, on the caller
  j->ids.assign(ids.begin(), ids.end());
  j->n = ids.size();
  j->background = priority == Priority::background;
  j->on_done = std::move(done);
  {
    std::lock_guard<std::mutex> lk(mu_);
    jobs_.push_back(j.get());
    detached_.push_back(std::move(j));
  }
  if (threaded_) cv_.notify_all();
}

void Scheduler::expedite(const DecodeSession& s) {
  std::lock_guard<std::mutex> lk(mu_);
  for (Job* j : jobs_)
    if (j->s == s.impl_.get()) j->background = false;
}

void Scheduler::drop(const DecodeSession& s) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (Job* j : jobs_)
      if (j->s == s.impl_.get() && j->on_done) j->dropped = true;
  }
  if (threaded_) cv_.notify_all();
}

std::vector<ContinuationScore> Scheduler::score(DecodeSession& s,
                                                const std::vector<std::vector<int32_t>>& candidates,
                                                Priority priority) {
  const ScoreRequest one{&s, &candidates};
  return std::move(score(std::span<const ScoreRequest>(&one, 1), priority).front());
}

std::vector<std::vector<ContinuationScore>> Scheduler::score(std::span<const ScoreRequest> requests,
                                                             Priority priority) {
  std::vector<std::unique_ptr<Job>> jobs;
  std::vector<std::vector<ContinuationScore>> out(requests.size());
  std::vector<Job*> of(requests.size(), nullptr);
  for (size_t i = 0; i < requests.size(); ++i) {
    const ScoreRequest& r = requests[i];
    if (!r.session || !r.candidates)
      throw Error(Errc::invalid_argument, "score: a request without a session or candidates");
    for (const auto& j : jobs)
      if (j->s == r.session->impl_.get())
        throw Error(Errc::invalid_argument, "score: a session twice");
    DecodeSession::Impl* s = r.session->impl_.get();
    ScorePlan plan(s->session, s->logits, *r.candidates);
    if (plan.rows() == 0) {  // every candidate is one token (or none): the logits answer
      out[i] = plan.scores(s->logits, nullptr);
      continue;
    }
    auto j = std::make_unique<Job>();
    j->s = s;
    j->n = plan.rows();
    j->plan.emplace(std::move(plan));
    of[i] = j.get();
    jobs.push_back(std::move(j));
  }
  submit(jobs, priority);
  for (size_t i = 0; i < requests.size(); ++i)
    if (of[i]) out[i] = std::move(of[i]->scores);
  return out;
}

void Scheduler::generate(DecodeSession& s, const SessionGenerateOptions& o,
                         BatchDecoder::DoneFn done, const void* owner) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    adds_.push_back({&s, o, std::move(done), owner});
  }
  if (threaded_) cv_.notify_all();
}

bool Scheduler::drive() {
  if (threaded_) throw Error(Errc::invalid_argument, "drive() is for inline schedulers");
  bool any;
  {
    std::lock_guard<std::mutex> lk(mu_);
    any = !adds_.empty() || decoder_.active() > 0 || !jobs_.empty();
  }
  if (any) turn();
  return any;
}

}  // namespace stepaudio
