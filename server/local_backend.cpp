// LocalBackend (backend.h): the loaded engine and up to `parallel` slot threads, each running one
// queued task at a time, in order of arrival. Their model work goes through one shared Scheduler:
// one thread computes, the slots' generated answers decode in one batch (a step reads each weight
// once for all of them), and a slot's encoder and prefill work runs between decode steps in
// bounded pieces, so a new request never stalls the others' decoding for long. On a 2-core
// machine the compute threads are the scheduler's; the slots only orchestrate (and decode audio).
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "backend.h"
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
    {
      std::lock_guard lock(mu_);
      if (stopping_) return false;
      if (!force && queue_.size() >= o_.max_queued) return false;
      queue_.push_back(std::move(task));
    }
    cv_.notify_one();
    return true;
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
    std::deque<std::shared_ptr<InferenceTask>> left;
    {
      std::lock_guard lock(mu_);
      if (stopping_ && !loader_.joinable()) return;
      stopping_ = true;
      for (const auto& t : running_) t->cancel = true;
      left.swap(queue_);
    }
    cv_.notify_all();
    if (loader_.joinable()) loader_.join();  // it joins the slots
    // Waiting tasks are not failed in the store: their jobs stay queued and run after a restart.
    (void)left;
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
      std::shared_ptr<InferenceTask> task;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        task = std::move(queue_.front());
        queue_.pop_front();
        running_.insert(task);
      }
      run(*task, sched);
      std::lock_guard lock(mu_);
      running_.erase(task);
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

  const LocalBackendOptions o_;
  const std::string quant_ = o_.model_path.ends_with(".gguf") ? "gguf" : o_.quant;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<InferenceTask>> queue_;
  std::set<std::shared_ptr<InferenceTask>> running_;
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
