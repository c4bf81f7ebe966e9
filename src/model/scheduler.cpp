// Scheduler (include/stepaudio/scheduler.h): one thread, one BatchDecoder, a FIFO of work items.
// The loop alternates: admit new branches and take one decode step, then run one queued item.
// A prefill item calls turn() between its pieces, so the batch keeps stepping during it.
#include "stepaudio/scheduler.h"

#include "stepaudio/error.h"
#include "util/log.h"

namespace stepaudio {

Scheduler::Scheduler(const SchedulerOptions& o)
    : prefill_chunk_(o.prefill_chunk), threaded_(o.threaded), decoder_(o.max_batch) {
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

void Scheduler::turn() {
  if (in_step_) return;  // inside a DoneFn of the step in progress
  std::vector<Add> adds;
  {
    std::lock_guard<std::mutex> lk(mu_);
    adds.swap(adds_);
  }
  for (Add& a : adds) {
    try {
      decoder_.add(*a.session, a.options, a.done);
    } catch (...) {
      if (a.done) a.done({}, std::current_exception());
    }
  }
  const size_t rows = decoder_.active();
  if (rows == 0) return;
  {  // counted before the step: its DoneFns may wake a caller that reads the stats
    std::lock_guard<std::mutex> lk(mu_);
    ++stats_.steps;
    stats_.step_rows += rows;
    stats_.max_rows = std::max(stats_.max_rows, rows);
  }
  in_step_ = true;
  try {
    decoder_.step();
  } catch (const std::exception& e) {  // a DoneFn threw (they must not); its branch is gone
    SA_WARN("scheduler: a branch's completion callback threw: %s", e.what());
  } catch (...) {
    SA_WARN("scheduler: a branch's completion callback threw");
  }
  in_step_ = false;
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
      cv_.wait(lk, [&] { return stop_ || !adds_.empty() || !work_.empty() || decoder_.active(); });
      if (stop_ && adds_.empty() && work_.empty() && !decoder_.active()) return;
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

void Scheduler::run_yielding(const std::function<void(const std::function<void()>&)>& fn) {
  run([&] { fn([this] { turn(); }); });
}

void Scheduler::append(DecodeSession& s, std::span<const int32_t> ids,
                       const std::vector<AudioEmbedding>& audio) {
  run([&] { s.append(ids, audio, prefill_chunk_, [this] { turn(); }); });
}

void Scheduler::generate(DecodeSession& s, const SessionGenerateOptions& o,
                         BatchDecoder::DoneFn done) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    adds_.push_back({&s, o, std::move(done)});
  }
  if (threaded_) cv_.notify_all();
}

bool Scheduler::drive() {
  if (threaded_) throw Error(Errc::invalid_argument, "drive() is for inline schedulers");
  bool any;
  {
    std::lock_guard<std::mutex> lk(mu_);
    any = !adds_.empty() || decoder_.active() > 0;
  }
  if (any) turn();
  return any;
}

}  // namespace stepaudio
