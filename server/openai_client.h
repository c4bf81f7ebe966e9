// A remote OpenAI-compatible chat server as a ChatCompleter (stepaudio/remote.h): StepFun's vLLM
// server for Step-Audio-2-mini, or another stepaudio node. Every request streams (SSE) so the
// transcript's text reaches progress as it is generated; a request is retried with backoff on
// connection errors, timeouts, 5xx and 429 (never once text was delivered, never on another 4xx),
// and a circuit breaker (resilience.h) fails calls fast while the backend is down. The remote's
// answers map onto our error codes:
//   connection error / timeout / 5xx / 429 after the retries, breaker open -> backend_unavailable
//   400 -> invalid_argument, 413 -> too_long, 415 -> unsupported_media, 422 -> bad_audio
//   401 / 403 / 404 / other 4xx, malformed answers -> backend_error (the gateway's configuration)
// Thread-safety: complete() and fetch_model_id() may run on any number of threads at once (one
// curl handle per attempt).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "resilience.h"
#include "stepaudio/remote.h"

namespace stepaudio::server {

struct RemoteOptions {
  std::string url;  // openai://HOST:PORT[/v1] (or http:// / https://)
  std::string key;  // sent as "Authorization: Bearer <key>" when not empty
  double connect_timeout_s = 5;
  // A stream silent for this long (no byte, not even the first) is a failure (a slow generation
  // keeps sending; the queue of a busy backend may take long before the first byte).
  double idle_timeout_s = 300;
  int retries = 3;  // extra attempts after the first
  Backoff backoff;
  int breaker_threshold = 5;  // consecutive failed attempts that open the breaker
  double breaker_cooldown_s = 10;
};

// "openai://HOST:PORT[/v1]" -> "http://HOST:PORT/v1" (http:// and https:// accepted as they are;
// a path other than /v1 is kept, with /v1 appended when it does not end so). Throws
// Error(invalid_argument) naming what is wrong.
std::string backend_base_url(const std::string& url);

class OpenAiCompleter : public ChatCompleter {
 public:
  explicit OpenAiCompleter(RemoteOptions o);
  std::string model_id() const override;
  void set_model_id(const std::string& id);
  const std::string& base_url() const { return base_; }
  // GET {base}/models: the first model's id (one attempt, no breaker: the readiness probe).
  // Throws Error(backend_unavailable) when the backend does not answer, Error(backend_error)
  // for an answer without a model.
  std::string fetch_model_id(double timeout_s) const;
  ChatResult complete(const std::vector<ChatMessage>& messages, const ChatOptions& options,
                      const ChatDeltaFn& on_delta, const std::atomic<bool>* cancel,
                      const std::atomic<bool>* stop = nullptr) const override;
  CircuitBreaker& breaker() const { return *breaker_; }

 private:
  struct Attempt;
  void attempt(Attempt& a, const std::string& body, const ChatDeltaFn& on_delta,
               const std::atomic<bool>* cancel, const std::atomic<bool>* stop) const;
  RemoteOptions o_;
  std::string base_;
  mutable std::mutex mu_;
  std::string model_;
  std::unique_ptr<CircuitBreaker> breaker_;
};

}  // namespace stepaudio::server
