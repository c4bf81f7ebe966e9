// LocalBackend (backend.h): the loaded engine and up to `parallel` slot threads, each running one
// queued task (or chat generation) at a time, in order of arrival. Their model work goes through
// one shared Scheduler: one thread computes, the slots' generated answers decode in one batch (a
// step reads each weight once for all of them), and a slot's encoder and prefill work runs between
// decode steps in bounded pieces, so a new request never stalls the others' decoding for long. On a
// 2-core machine the compute threads are the scheduler's; the slots only orchestrate (and decode
// audio).
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "backend.h"
#include "stepaudio/chat.h"
#include "stepaudio/pipeline.h"
#include "stepaudio/scheduler.h"

namespace stepaudio::server {
namespace {

class LocalBackend : public InferenceBackend {
 public:
  explicit LocalBackend(const LocalBackendOptions& o) : o_(o) {
    loader_ = std::thread([this] { load(); });
  }
  ~LocalBackend() override { stop(); }

  bool ready() const override { return ready_; }
  std::string load_error() const override {
    std::lock_guard lock(mu_);
    return load_error_;
  }
  std::string model_id() const override {
    std::lock_guard lock(mu_);
    return model_id_;
  }
  std::string quant() const override { return quant_; }

  bool submit(std::shared_ptr<InferenceTask> task, bool force) override {
    return enqueue(Work{std::move(task), nullptr}, force);
  }
  bool submit_chat(std::shared_ptr<ChatTask> task) override {
    return enqueue(Work{nullptr, std::move(task)}, false);
  }
  size_t queued() const override {
    std::lock_guard lock(mu_);
    return queue_.size();
  }
  bool busy() const override { return running() > 0; }
  size_t running() const override {
    std::lock_guard lock(mu_);
    return running_.size();
  }

  void stop() override {
    std::deque<Work> left;
    {
      std::lock_guard lock(mu_);
      if (stopping_ && !loader_.joinable()) return;
      stopping_ = true;
      for (const auto& w : running_) w.cancel() = true;
      left.swap(queue_);
    }
    cv_.notify_all();
    if (loader_.joinable()) loader_.join();  // it joins the slots
    // Waiting tasks are not failed in the store: their jobs stay queued and run after a restart.
    // A waiting chat generation has nothing to resume: it ends as canceled.
    for (auto& w : left)
      if (w.chat && w.chat->on_error) w.chat->on_error(Error(Errc::canceled, "the server stopped"));
  }

 private:
  void load() {
    try {
      LoadOptions lo;
      lo.quant = parse_quant(o_.quant);
      auto engine = load_engine(o_.model_path, lo);
      {
        std::lock_guard lock(mu_);
        engine_ = std::move(engine);
        model_id_ = engine_->model_id;
      }
      ready_ = true;
    } catch (const std::exception& e) {
      std::lock_guard lock(mu_);
      load_error_ = e.what();
      return;
    }
    // The scheduler outlives the slots (joined below) and every task they run.
    Scheduler sched(SchedulerOptions{});
    std::vector<std::thread> slots;
    for (size_t i = 0; i < std::max<size_t>(1, o_.parallel); ++i)
      slots.emplace_back([this, &sched] { serve(sched); });
    for (auto& t : slots) t.join();
  }

  void serve(Scheduler& sched) {
    for (;;) {
      Work w;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        w = std::move(queue_.front());
        queue_.pop_front();
        running_.insert(w);
      }
      if (w.task) run(*w.task, sched);
      if (w.chat) run_chat(*w.chat, sched);
      std::lock_guard lock(mu_);
      running_.erase(w);
    }
  }

  void run(InferenceTask& t, Scheduler& sched) {
    try {
      if (t.cancel) throw Error(Errc::canceled, "request canceled");
      if (t.on_start) t.on_start();
      TaskOptions opts = t.options;
      opts.threads = o_.threads;
      opts.scheduler = &sched;
      audio::DecodedAudio pcm = audio::decode_memory(
          reinterpret_cast<const uint8_t*>(t.audio_bytes.data()), t.audio_bytes.size(), t.decode);
      std::string().swap(t.audio_bytes);
      Understanding u = understand(*engine_, std::move(pcm), opts, t.on_progress, &t.cancel);
      if (t.on_success) t.on_success(std::move(u));
    } catch (const Error& e) {
      if (t.on_error) t.on_error(e);
    } catch (const std::exception& e) {
      if (t.on_error) t.on_error(Error(Errc::internal, e.what()));
    }
  }

  void run_chat(ChatTask& t, Scheduler& sched) {
    try {
      if (t.cancel) throw Error(Errc::canceled, "request canceled");
      ChatOptions opts = t.options;
      opts.threads = o_.threads;
      opts.scheduler = &sched;
      ChatResult r = chat(*engine_, std::move(t.messages), opts, t.on_delta, &t.cancel);
      if (t.on_success) t.on_success(std::move(r));
    } catch (const Error& e) {
      if (t.on_error) t.on_error(e);
    } catch (const std::exception& e) {
      if (t.on_error) t.on_error(Error(Errc::internal, e.what()));
    }
  }

  // One queued item: a pipeline task or a chat generation (exactly one is set).
  struct Work {
    std::shared_ptr<InferenceTask> task;
    std::shared_ptr<ChatTask> chat;
    std::atomic<bool>& cancel() const { return task ? task->cancel : chat->cancel; }
    const void* key() const { return task ? static_cast<const void*>(task.get()) : chat.get(); }
    bool operator<(const Work& other) const { return key() < other.key(); }
  };

  bool enqueue(Work w, bool force) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return false;
      if (!force && queue_.size() >= o_.max_queued) return false;
      queue_.push_back(std::move(w));
    }
    cv_.notify_one();
    return true;
  }

  const LocalBackendOptions o_;
  const std::string quant_ = o_.model_path.ends_with(".gguf") ? "gguf" : o_.quant;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Work> queue_;
  std::set<Work> running_;
  std::shared_ptr<const Engine> engine_;
  std::string model_id_, load_error_;
  std::atomic<bool> ready_{false};
  bool stopping_ = false;
  std::thread loader_;
};

}  // namespace

std::unique_ptr<InferenceBackend> make_local_backend(const LocalBackendOptions& options) {
  return std::make_unique<LocalBackend>(options);
}

}  // namespace stepaudio::server
