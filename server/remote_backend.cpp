// RemoteBackend (backend.h): the InferenceBackend of a gateway node (`serve --backend URL`). The
// node keeps the API, jobs, cache, auth and audio decoding; the model runs on a remote
// OpenAI-compatible chat server reached through OpenAiCompleter (openai_client.h). Tasks run the
// pipeline over the completer (stepaudio/remote.h: the same prompts, guards and combination as a
// local run); chat generations are forwarded as they are. Up to `parallel` requests run at once,
// each on a slot thread (they mostly wait on the network; the remote batches them), in order of
// arrival. Readiness: the remote answered GET /v1/models once (its first model id is ours); a
// prober retries that every half second until it does.
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "backend.h"
#include "json_log.h"
#include "openai_client.h"
#include "stepaudio/remote.h"

namespace stepaudio::server {
namespace {

class RemoteBackend : public InferenceBackend {
 public:
  explicit RemoteBackend(const RemoteBackendOptions& o) : o_(o), completer_(o.remote) {
    prober_ = std::thread([this] { probe_then_serve(); });
  }
  ~RemoteBackend() override { stop(); }

  bool ready() const override { return ready_; }
  std::string load_error() const override { return {}; }  // an unreachable remote may come back
  std::string model_id() const override { return completer_.model_id(); }
  std::string quant() const override { return "remote"; }
  std::string not_ready_reason() const override {
    std::lock_guard lock(mu_);
    return "waiting for the inference backend at " + completer_.base_url() + " to answer" +
           (probe_error_.empty() ? std::string() : " (" + probe_error_ + ")");
  }

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
      if (stopping_ && !prober_.joinable()) return;
      stopping_ = true;
      for (const auto& w : running_) w.cancel() = true;
      left.swap(queue_);
    }
    cv_.notify_all();
    if (prober_.joinable()) prober_.join();  // it joins the slots
    // As LocalBackend: waiting jobs stay queued in the store; a waiting chat ends as canceled.
    for (auto& w : left)
      if (w.chat && w.chat->on_error) w.chat->on_error(Error(Errc::canceled, "the server stopped"));
  }

 private:
  void probe_then_serve() {
    std::string last;
    for (;;) {
      try {
        completer_.set_model_id(completer_.fetch_model_id(2.0));
        break;
      } catch (const std::exception& e) {
        if (last != e.what())
          log_json("warn", "backend_not_ready",
                   {{"url", completer_.base_url()}, {"error", e.what()}});
        last = e.what();
      }
      std::unique_lock lock(mu_);
      probe_error_ = last;
      if (cv_.wait_for(lock, std::chrono::milliseconds(500), [&] { return stopping_; })) return;
    }
    log_json("info", "backend_ready", {{"url", completer_.base_url()}, {"model", model_id()}});
    ready_ = true;
    std::vector<std::thread> slots;
    for (size_t i = 0; i < std::max<size_t>(1, o_.parallel); ++i)
      slots.emplace_back([this] { serve(); });
    for (auto& t : slots) t.join();
  }

  void serve() {
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
      if (w.task) run(*w.task);
      if (w.chat) run_chat(*w.chat);
      std::lock_guard lock(mu_);
      running_.erase(w);
    }
  }

  void run(InferenceTask& t) {
    try {
      if (t.cancel) throw Error(Errc::canceled, "request canceled");
      if (t.on_start) t.on_start();
      audio::DecodedAudio pcm = audio::decode_memory(
          reinterpret_cast<const uint8_t*>(t.audio_bytes.data()), t.audio_bytes.size(), t.decode);
      std::string().swap(t.audio_bytes);
      Understanding u = understand(completer_, std::move(pcm), t.options, t.on_progress, &t.cancel);
      if (t.on_success) t.on_success(std::move(u));
    } catch (const Error& e) {
      if (t.on_error) t.on_error(e);
    } catch (const std::exception& e) {
      if (t.on_error) t.on_error(Error(Errc::internal, e.what()));
    }
  }

  void run_chat(ChatTask& t) {
    try {
      if (t.cancel) throw Error(Errc::canceled, "request canceled");
      ChatResult r = completer_.complete(t.messages, t.options, t.on_delta, &t.cancel);
      if (t.on_success) t.on_success(std::move(r));
    } catch (const Error& e) {
      if (t.on_error) t.on_error(e);
    } catch (const std::exception& e) {
      if (t.on_error) t.on_error(Error(Errc::internal, e.what()));
    }
  }

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

  const RemoteBackendOptions o_;
  OpenAiCompleter completer_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Work> queue_;
  std::set<Work> running_;
  std::atomic<bool> ready_{false};
  bool stopping_ = false;
  std::string probe_error_;  // the last failed probe's error, for not_ready answers
  std::thread prober_;
};

}  // namespace

std::unique_ptr<InferenceBackend> make_remote_backend(const RemoteBackendOptions& options) {
  return std::make_unique<RemoteBackend>(options);
}

}  // namespace stepaudio::server
