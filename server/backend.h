// The engine behind the service, as a small interface: submit a task (or a chat generation),
// hear its progress, cancel it. LocalBackend (the loaded engine, up to `parallel` requests at once
// in one continuous-batching Scheduler) is the default; RemoteBackend (remote_backend.cpp, a
// gateway node's `serve --backend URL`) runs the same tasks against a remote OpenAI-compatible
// server. Thread-safety: every method may be called from any thread. Callbacks run on the backend's
// worker thread: they must be quick and must not call back into the backend.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "openai_client.h"
#include "stepaudio/audio.h"
#include "stepaudio/chat.h"
#include "stepaudio/error.h"
#include "stepaudio/tasks.h"

namespace stepaudio::server {

struct InferenceTask {
  std::string job_id;
  // The recording as uploaded or fetched: decoded when the task starts, so a waiting task holds
  // compressed bytes, not PCM (a queue of long recordings stays small).
  std::string audio_bytes;
  audio::DecodeOptions decode;
  TaskOptions options;
  std::atomic<bool> cancel{false};  // polled by the engine between tokens
  std::function<void()> on_start;   // the worker took the task
  std::function<void(const TaskProgress&)> on_progress;
  std::function<void(Understanding)> on_success;
  std::function<void(const Error&)> on_error;  // Errc::canceled when canceled
};

// A raw chat generation (POST /v1/chat/completions): the messages straight through the model
// (stepaudio/chat.h), no pipeline, no cache, no job. It waits in the same FIFO as the tasks (and
// counts against max_queued), runs on a slot like them, and its model work goes through the same
// scheduler, so it decodes in one batch with them.
struct ChatTask {
  std::vector<ChatMessage> messages;  // audio parts already decoded to 16 kHz (the route did it)
  ChatOptions options;                // scheduler and threads are the backend's
  std::atomic<bool> cancel{false};    // polled between stages and before each token
  std::function<void(const ChatDelta&)> on_delta;  // on the scheduler's thread
  std::function<void(ChatResult)> on_success;
  std::function<void(const Error&)> on_error;  // Errc::canceled when canceled
};

class InferenceBackend {
 public:
  virtual ~InferenceBackend() = default;
  virtual bool ready() const = 0;              // the model is loaded
  virtual std::string load_error() const = 0;  // non-empty: loading failed, the backend never
                                               // becomes ready
  virtual std::string model_id() const = 0;
  // Why it is not ready yet (load_error() empty): what a 503 not_ready says.
  virtual std::string not_ready_reason() const { return "the model is still loading"; }
  virtual std::string quant() const = 0;  // "bf16", "q4", ...
  // Queues the task (FIFO). Returns false when `max_queued` tasks are already waiting, unless
  // `force` (jobs recovered after a restart were acknowledged before: they always get in).
  virtual bool submit(std::shared_ptr<InferenceTask> task, bool force = false) = 0;
  // Queues a chat generation behind the waiting tasks; false when `max_queued` are waiting.
  virtual bool submit_chat(std::shared_ptr<ChatTask> task) = 0;
  virtual size_t queued() const = 0;   // waiting, not running
  virtual bool busy() const = 0;       // a task is running
  virtual size_t running() const = 0;  // tasks running now (<= parallel)
  virtual void stop() = 0;             // cancels the running task, fails the waiting ones, joins
};

struct LocalBackendOptions {
  std::string model_path;
  std::string quant = "bf16";  // f32|bf16|q8|q4 (ignored for .gguf files)
  int threads = 0;             // engine threads; 0 = all cores
  size_t max_queued = 64;
  // Requests run at once. Their model work shares one Scheduler (include/stepaudio/scheduler.h):
  // their answers decode in one batch (each weight read once per step for all of them) and a new
  // request's prefill alternates with the others' decode steps. 1: one request at a time.
  size_t parallel = 4;
};

// Loads the model on its own thread (the server answers /healthz meanwhile) and then runs up to
// `parallel` tasks at once, each on a slot thread, their model work on the shared scheduler.
std::unique_ptr<InferenceBackend> make_local_backend(const LocalBackendOptions& options);

struct RemoteBackendOptions {
  RemoteOptions remote;  // the remote server (openai_client.h)
  size_t max_queued = 64;
  size_t parallel = 4;  // requests in flight at once (the remote batches them)
};

// Probes the remote (GET /v1/models) on its own thread until it answers, then serves tasks over
// it: ready() from then on; the breaker (openai_client.h) fails calls fast while it is down.
std::unique_ptr<InferenceBackend> make_remote_backend(const RemoteBackendOptions& options);

}  // namespace stepaudio::server
