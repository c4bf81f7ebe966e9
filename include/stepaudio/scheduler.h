// Continuous batching: the model work of several requests on one thread, in shared decoder passes.
//
// A server answers several requests at once, but decode is bound by reading the weights: four
// requests decoding side by side would each read every weight per token. A Scheduler runs every
// model computation of the requests that share it on one thread, in decoder passes that serve
// many sessions at once: every generating branch advances by one token per pass (BatchDecoder),
// and prompt rows waiting to be appended (append()) or scored (score()) ride in the same pass, up
// to `prefill_chunk` of them, so a pass reads each weight once for the decode rows of every branch
// and a prefill piece together (chunked prefill with piggybacked decodes: the decode rows cost
// their arithmetic only, not another pass over the weights). A long prompt is cut into pieces, one
// per pass, so it never stalls the others' decoding for more than one piece. An encoder (which
// shares no weights with the decoder) pauses after every block (run_yielding) for a pass when
// prompt rows are waiting or the batch has not stepped for `yield_interval_ms`: a decode-only
// pass costs a whole read of the weights for a few rows, so taking one after every 50 ms block
// would multiply an encode's cost by five while others decode. Work may carry an owner tag (one
// request's): an encoder's pauses take no pass for its owner's own branches, whose tokens ride
// in the prompt passes the owner runs next (a long recording alone took ~3 decode-only passes
// per 25 s chunk for its earlier chunks' transcripts). A request arriving while others
// decode joins at the next pass, and a finished branch leaves it at once. Shared passes need rows
// whose results do not depend on how many rows a pass has (model::rows_independent_of_batch:
// --quant f32/bf16, q8/q4 with int8 activations); otherwise decode steps (at most max_batch rows)
// and prompt pieces run in passes of their own, as numbers must not depend on what else ran.
//
//   stepaudio::Scheduler sched;                       // one per model, shared by the workers
//   options.scheduler = &sched;                       // TaskOptions: understand() routes its work
//   std::thread a([&] { understand(engine, pcm_a, options); });
//   std::thread b([&] { understand(engine, pcm_b, options); });   // decodes batched with a's
//
// Background work (Priority::background): rows that nothing waits for soon, e.g. a question
// whose answer has no tokens to generate after it. A decode pass of a few rows is bound by
// reading the weights, so rows added to it up to the batched GEMV's width (fill_rows) cost
// well under a row of a full prompt pass (docs/PERF.md, session 19). Background rows go after
// every normal job into that room only; into pieces of fill_rows per pass where the decode rows
// alone fill the GEMV (a busy server: no cheaper room will come); into a whole chunk when nothing
// else runs; and as normal rows once they have waited `background_max_wait` passes.
//
// Inline mode (threaded = false): no thread of its own; the work runs on the caller and the
// batch advances inside the caller's waits (drive()). understand() uses one of these per request
// when no scheduler is given, so its own branches (transcript, tone, reason, summary, chunks)
// still decode together.
//
// Thread-safety: run(), append(), score() and generate() may be called from any thread (an inline
// scheduler: from its one caller only). Work submitted from the scheduler's own thread (e.g. from
// a DoneFn) runs at once. The sessions handed in must stay alive and untouched until their work
// has run / their DoneFn was called.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "stepaudio/session.h"

namespace stepaudio {

struct SchedulerOptions {
  // Branches per decode pass where passes are not shared (see above; ops::kGemvMaxRows: one
  // weight read); shared passes take every branch.
  size_t max_batch = 8;
  size_t prefill_chunk = 64;  // prompt rows per pass (a decode step of the batch in each)
  // Background rows fill a pass up to this many rows (ops::kGemvMaxRows: the decode GEMV's batch).
  size_t fill_rows = 8;
  size_t background_max_wait = 16;  // passes a background job waits before it counts as normal
  // Longest pause of the batch inside a yielding item (an encoder) when no prompt rows wait;
  // 0: a pass at every pause point.
  unsigned yield_interval_ms = 1000;
  // false: never share a pass (decode steps and prompt pieces each in passes of their own, as
  // before shared passes existed): for comparisons (bench --task --passes separate).
  bool share_passes = true;
  bool threaded = true;  // false: inline mode (see above)
};

struct SchedulerStats {
  size_t steps = 0;            // decode steps taken
  size_t step_rows = 0;        // branch-steps in them (step_rows / steps = mean batch)
  size_t max_rows = 0;         // the largest batch seen
  size_t work_items = 0;       // run() items and append() / score() requests completed
  size_t prompt_rows = 0;      // appended and scored rows run
  size_t background_rows = 0;  // of them, background jobs' (Priority::background)
  size_t shared_steps = 0;     // decode steps that rode in a pass with prompt rows
  size_t passes = 0;           // turns that ran the decoder (a separate decode step counts one)
};

// One session's prompt for Scheduler::append (ids and audio as DecodeSession::append).
struct AppendRequest {
  DecodeSession* session = nullptr;
  std::span<const int32_t> ids;
  const std::vector<AudioEmbedding>* audio = nullptr;  // null: none
};
// One session's candidates for Scheduler::score (as DecodeSession::score).
struct ScoreRequest {
  DecodeSession* session = nullptr;
  const std::vector<std::vector<int32_t>>* candidates = nullptr;
};

enum class Priority {
  normal,      // first come, first served, up to prefill_chunk rows per pass
  background,  // only the room a pass has left below fill_rows (see above)
};

class Scheduler {
 public:
  explicit Scheduler(const SchedulerOptions& options = {});
  // Finishes every queued item and branch, then stops the thread.
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Runs fn between decode steps and returns when it has run, rethrowing what it threw.
  void run(const std::function<void()>& fn);
  // The same for long work that can pause: fn gets a yield() to call at its pause points (e.g.
  // encode_audio's between_blocks), each of which takes a pass when normal prompt rows wait (not
  // background ones alone) or the batch has paused for yield_interval_ms.
  // With an owner, only branches of other owners (or of none) count as paused.
  void run_yielding(const std::function<void(const std::function<void()>& yield)>& fn,
                    const void* owner = nullptr);
  // session.append(ids, audio) through the passes: in pieces of at most prefill_chunk rows, each
  // in a pass with a decode step of the batch. The state and logits afterwards are those of one
  // DecodeSession::append, bit for bit, wherever rows do not depend on the batch (see above).
  // Returns when every piece has run. Checks the prompt first (what DecodeSession::append rejects
  // is thrown here and nothing runs).
  void append(DecodeSession& session, std::span<const int32_t> ids,
              const std::vector<AudioEmbedding>& audio = {}, Priority priority = Priority::normal);
  // Several sessions' prompts at once (distinct sessions): they share passes where they fit, so
  // a request's independent questions cost the passes of their rows, not one pass each. Returns
  // when all have run; the first error is rethrown after every request has ended.
  void append(std::span<const AppendRequest> requests, Priority priority = Priority::normal);
  // The same without waiting: the prompt is checked and queued (after the jobs already waiting),
  // then this returns; `done` is called on the scheduler's thread (inline: inside drive()) once
  // every piece has run, with the error if one failed (at once, on the caller, for no ids). The
  // session must stay alive and untouched until then. For prompts that nothing waits for yet (a
  // summary's text, growing as a recording's transcripts come in), usually with
  // Priority::background.
  using AppendDoneFn = std::function<void(std::exception_ptr error)>;
  void append_async(DecodeSession& session, std::span<const int32_t> ids, Priority priority,
                    AppendDoneFn done);
  // The background rows of `session` still waiting count as normal from now on (someone waits
  // for them now): they go first come, first served, in pieces of prefill_chunk.
  void expedite(const DecodeSession& session);
  // append_async's jobs for `session` that have not ended end at the next pass without their
  // remaining rows: `done` gets Errc::canceled, and the session holds a prefix of the ids (one
  // to discard: a request that is canceled or fails, so it need not wait for those rows).
  void drop(const DecodeSession& session);
  // session.score(candidates) as rows of a pass (one request's tree is never split).
  std::vector<ContinuationScore> score(DecodeSession& session,
                                       const std::vector<std::vector<int32_t>>& candidates,
                                       Priority priority = Priority::normal);
  std::vector<std::vector<ContinuationScore>> score(std::span<const ScoreRequest> requests,
                                                    Priority priority = Priority::normal);
  // Adds a branch to the batch at the next step boundary and returns at once; `done` is called on
  // the scheduler's thread (inline: inside drive()) when the branch ends, also for what
  // BatchDecoder::add rejects (then with that error and an empty result). `owner` tags the branch
  // for run_yielding (null: nobody's, always served at pauses).
  void generate(DecodeSession& session, const SessionGenerateOptions& options,
                BatchDecoder::DoneFn done, const void* owner = nullptr);

  // Inline mode: admits the branches generate() added and takes one decode step; false when no
  // branch was active (nothing to do). Threaded mode: throws Error(invalid_argument).
  bool drive();
  bool threaded() const { return threaded_; }
  SchedulerStats stats() const;

 private:
  struct Item {
    std::function<void()> fn;
    std::exception_ptr error;
    bool done = false;
  };
  struct Job;  // prompt rows waiting for passes (scheduler.cpp)
  void loop();
  void turn();  // one pass: admit new branches, a decode step, prompt rows (scheduler's thread)
  void execute(Item& item);
  bool on_thread() const;
  // Queues the jobs and returns when all have ended (on the scheduler's thread: runs passes
  // itself until then); rethrows the first job's error.
  void submit(std::vector<std::unique_ptr<Job>>& jobs, Priority priority);
  void finish_job(Job& job, std::exception_ptr error);
  // Whether a branch not tagged `owner` is in the batch or waiting to join (scheduler thread, mu_
  // held).
  bool others_decoding(const void* owner) const;
  // Whether a job takes rows as a normal one (mu_ held): not background, or waited its limit,
  // or passes are not shared (no room to fill).
  bool counts_as_normal(const Job& job, bool shared) const;

  const size_t prefill_chunk_, fill_rows_, background_max_wait_;
  const std::chrono::milliseconds yield_interval_;
  const bool share_passes_;
  const bool threaded_;
  std::chrono::steady_clock::time_point last_pass_;  // scheduler's thread only
  BatchDecoder decoder_;                             // used on the scheduler's thread only
  bool in_step_ = false;  // a DoneFn is running inside a decode step: no nested steps
  mutable std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::deque<Item*> work_;
  std::deque<Job*> jobs_;
  // append_async's jobs until they end (an inline scheduler destroyed first drops them unrun).
  std::vector<std::unique_ptr<Job>> detached_;
  struct Add {
    DecodeSession* session;
    SessionGenerateOptions options;
    BatchDecoder::DoneFn done;
    const void* owner;
  };
  std::vector<Add> adds_;
  bool stop_ = false;
  SchedulerStats stats_;
  std::thread thread_;  // last: started once everything above exists
};

}  // namespace stepaudio
