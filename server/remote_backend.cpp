// RemoteBackend (backend.h): the InferenceBackend of a gateway node (`serve --backend URL`). The
// node keeps the API, jobs, cache, auth and audio decoding; the model runs on a remote
// OpenAI-compatible chat server reached through OpenAiCompleter (openai_client.h). Tasks run the
// pipeline over the completer (stepaudio/remote.h: the same prompts, guards and combination as a
// local run); chat generations are forwarded as they are. Up to `parallel` requests run at once,
// each on a slot thread of SlotBackend (they mostly wait on the network; the remote batches them),
// in order of arrival. Readiness: the remote answered GET /v1/models once (its first model id is
// ours); a prober retries that every half second until it does.
#include "json_log.h"
#include "openai_client.h"
#include "slot_backend.h"
#include "stepaudio/remote.h"

namespace stepaudio::server {
namespace {

class RemoteBackend : public SlotBackend {
 public:
  explicit RemoteBackend(const RemoteBackendOptions& o)
      : SlotBackend(o.parallel, o.max_queued), completer_(o.remote) {
    start([this] { probe_then_serve(); });
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
      {
        std::lock_guard lock(mu_);
        probe_error_ = last;
      }
      if (wait_for_stop(500)) return;
    }
    log_json("info", "backend_ready", {{"url", completer_.base_url()}, {"model", model_id()}});
    ready_ = true;
    serve_slots();
  }

  Understanding understand_task(audio::DecodedAudio pcm, const InferenceTask& t) override {
    return understand(completer_, std::move(pcm), t.options, t.on_progress, &t.cancel);
  }

  ChatResult complete_chat(ChatTask& t) override {
    return completer_.complete(t.messages, t.options, t.on_delta, &t.cancel);
  }

  OpenAiCompleter completer_;
  std::atomic<bool> ready_{false};
  std::string probe_error_;  // the last failed probe's error, for not_ready answers (under mu_)
};

}  // namespace

std::unique_ptr<InferenceBackend> make_remote_backend(const RemoteBackendOptions& options) {
  return std::make_unique<RemoteBackend>(options);
}

}  // namespace stepaudio::server
