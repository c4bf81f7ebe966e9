// The queue-and-slots half every InferenceBackend shares (LocalBackend, RemoteBackend): a bounded
// FIFO of tasks and chat generations, `parallel` slot threads that each run one item at a time in
// order of arrival, cancellation of the running items and the ordered stop. A subclass says how
// an item runs (understand_task / complete_chat) and starts the slots (serve_slots) from its own
// starter thread once it is ready (the model loaded, the remote answered).
// Thread-safety: the InferenceBackend methods may be called from any thread; the run hooks are
// called on slot threads, up to `parallel` at once.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

#include "backend.h"

namespace stepaudio::server {

class SlotBackend : public InferenceBackend {
 public:
  SlotBackend(size_t parallel, size_t max_queued) : parallel_(parallel), max_queued_(max_queued) {}
  // Subclasses call stop() in their own destructor: the slots use their members.
  ~SlotBackend() override;

  bool submit(std::shared_ptr<InferenceTask> task, bool force) override;
  bool submit_chat(std::shared_ptr<ChatTask> task) override;
  size_t queued() const override;
  bool busy() const override { return running() > 0; }
  size_t running() const override;
  // Cancels the running items and joins the starter (which joins the slots). Waiting tasks are not
  // failed in the store: their jobs stay queued and run after a restart. A waiting chat
  // generation has nothing to resume: it ends as canceled.
  void stop() override;

 protected:
  // Runs `starter` on the backend's own thread; it prepares (load, probe) and then calls
  // serve_slots(), which returns once stop() was called.
  void start(std::function<void()> starter);
  void serve_slots();
  // Waits up to `ms` for stop(); true when stopping (a starter's retry pause).
  bool wait_for_stop(int ms);

  // One item on a slot thread. Errors are thrown (Error, or any exception: Errc::internal).
  virtual Understanding understand_task(audio::DecodedAudio pcm, const InferenceTask& task) = 0;
  virtual ChatResult complete_chat(ChatTask& task) = 0;

  mutable std::mutex mu_;  // guards the queue and whatever the subclass keeps beside it

 private:
  // One queued item: a pipeline task or a chat generation (exactly one is set).
  struct Work {
    std::shared_ptr<InferenceTask> task;
    std::shared_ptr<ChatTask> chat;
    std::atomic<bool>& cancel() const { return task ? task->cancel : chat->cancel; }
    const void* key() const { return task ? static_cast<const void*>(task.get()) : chat.get(); }
    bool operator<(const Work& other) const { return key() < other.key(); }
  };
  bool enqueue(Work w, bool force);
  void run_task(InferenceTask& t);
  void run_chat(ChatTask& t);

  const size_t parallel_, max_queued_;
  std::condition_variable cv_;
  std::deque<Work> queue_;
  std::set<Work> running_;
  bool stopping_ = false;
  std::thread starter_;
};

}  // namespace stepaudio::server
