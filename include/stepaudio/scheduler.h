// Continuous batching: the model work of several requests on one thread, decode steps batched.
//
// A server answers several requests at once, but decode is bound by reading the weights: four
// requests decoding side by side would each read every weight per token. A Scheduler runs every
// model computation of the requests that share it on one thread: all their generating branches
// advance together in one batched decoder pass per step (BatchDecoder), and the other work
// (encoding, prefills, label scoring) runs between steps. A prefill is cut into pieces of at most
// `prefill_chunk` rows with a decode step between pieces, and an encoder takes a decode step after
// every block (run_yielding), so a long prompt or a new recording never stalls the other requests'
// decoding for more than one piece or block; a request arriving while others decode joins the
// batch at the next step boundary, and a finished branch leaves it at once.
//
//   stepaudio::Scheduler sched;                       // one per model, shared by the workers
//   options.scheduler = &sched;                       // TaskOptions: understand() routes its work
//   std::thread a([&] { understand(engine, pcm_a, options); });
//   std::thread b([&] { understand(engine, pcm_b, options); });   // decodes batched with a's
//
// Inline mode (threaded = false): no thread of its own; the work runs on the caller and the
// batch advances inside the caller's waits (drive()). understand() uses one of these per request
// when no scheduler is given, so its own branches (transcript, tone, reason, summary, chunks)
// still decode together.
//
// Thread-safety: run(), append() and generate() may be called from any thread (an inline
// scheduler: from its one caller only). Work submitted from the scheduler's own thread (e.g. from
// a DoneFn) runs at once, inline. The sessions handed in must stay alive and untouched until their
// work has run / their DoneFn was called.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "stepaudio/session.h"

namespace stepaudio {

struct SchedulerOptions {
  size_t max_batch = 8;        // branches per decoder pass (ops::kGemvMaxRows: one weight read)
  size_t prefill_chunk = 128;  // rows per prefill piece (a decode step of the batch between)
  bool threaded = true;        // false: inline mode (see above)
};

struct SchedulerStats {
  size_t steps = 0;          // decode steps taken
  size_t step_rows = 0;      // branch-steps in them (step_rows / steps = mean batch)
  size_t max_rows = 0;       // the largest batch seen
  size_t work_items = 0;     // run() / append() pieces executed
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
  // encode_audio's between_blocks), each of which takes one decode step of the batch.
  void run_yielding(const std::function<void(const std::function<void()>& yield)>& fn);
  // session.append(ids, audio) in pieces of at most prefill_chunk rows with a decode step of the
  // batch between pieces (the result equals one append: see DecodeSession::append). Returns when
  // every piece has run.
  void append(DecodeSession& session, std::span<const int32_t> ids,
              const std::vector<AudioEmbedding>& audio = {});
  // Adds a branch to the batch at the next step boundary and returns at once; `done` is called on
  // the scheduler's thread (inline: inside drive()) when the branch ends, also for what
  // BatchDecoder::add rejects (then with that error and an empty result).
  void generate(DecodeSession& session, const SessionGenerateOptions& options,
                BatchDecoder::DoneFn done);

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
  void loop();
  void turn();  // admit new branches, then one decode step (on the scheduler's thread)
  void execute(Item& item);
  bool on_thread() const;

  const size_t prefill_chunk_;
  const bool threaded_;
  BatchDecoder decoder_;  // used on the scheduler's thread only
  bool in_step_ = false;  // a DoneFn is running inside decoder_.step(): no nested steps
  mutable std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::deque<Item*> work_;
  struct Add {
    DecodeSession* session;
    SessionGenerateOptions options;
    BatchDecoder::DoneFn done;
  };
  std::vector<Add> adds_;
  bool stop_ = false;
  SchedulerStats stats_;
  std::thread thread_;  // last: started once everything above exists
};

}  // namespace stepaudio
