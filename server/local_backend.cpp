// LocalBackend (backend.h): the loaded engine behind the slots of SlotBackend (slot_backend.h).
// The slots' model work goes through one shared Scheduler: one thread computes, the slots'
// generated answers decode in one batch (a step reads each weight once for all of them), a
// slot's prefill rides in the same passes in bounded pieces and its encoder pauses for them, so a
// new request never stalls the others' decoding for long. On a 2-core machine the compute threads are the
// scheduler's; the slots only orchestrate (and decode audio).
#include <optional>

#include "slot_backend.h"
#include "stepaudio/chat.h"
#include "stepaudio/pipeline.h"
#include "stepaudio/scheduler.h"

namespace stepaudio::server {
namespace {

class LocalBackend : public SlotBackend {
 public:
  explicit LocalBackend(const LocalBackendOptions& o)
      : SlotBackend(o.parallel, o.max_queued), o_(o) {
    start([this] { load_then_serve(); });
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

 private:
  void load_then_serve() {
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
    // The scheduler outlives the slots (serve_slots joins them) and every task they run.
    sched_.emplace(SchedulerOptions{});
    serve_slots();
    sched_.reset();
  }

  Understanding understand_task(audio::DecodedAudio pcm, const InferenceTask& t) override {
    TaskOptions opts = t.options;
    opts.threads = o_.threads;
    opts.scheduler = &*sched_;
    return understand(*engine_, std::move(pcm), opts, t.on_progress, &t.cancel);
  }

  ChatResult complete_chat(ChatTask& t) override {
    ChatOptions opts = t.options;
    opts.threads = o_.threads;
    opts.scheduler = &*sched_;
    return chat(*engine_, std::move(t.messages), opts, t.on_delta, &t.cancel);
  }

  const LocalBackendOptions o_;
  const std::string quant_ = o_.model_path.ends_with(".gguf") ? "gguf" : o_.quant;
  std::shared_ptr<const Engine> engine_;
  std::optional<Scheduler> sched_;  // while the slots serve
  std::string model_id_, load_error_;
  std::atomic<bool> ready_{false};
};

}  // namespace

std::unique_ptr<InferenceBackend> make_local_backend(const LocalBackendOptions& options) {
  return std::make_unique<LocalBackend>(options);
}

}  // namespace stepaudio::server
