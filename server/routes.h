// The HTTP API (docs/API.md) on top of the JobManager: routing, authentication and rate limits,
// input parsing, and the answers. Handlers run on the connection's strand and never block it:
// fetching, decoding and store commits go to the blocking pool (`offload`).
// Thread-safety: handle() may be called from any I/O thread at once.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "auth.h"
#include "http_server.h"
#include "job_manager.h"
#include "json_log.h"
#include "metrics.h"
#include "server.h"

namespace stepaudio::server {

struct RouteContext {
  const ServeOptions& options;
  JobManager& jobs;
  Metrics& metrics;
  KeyRing* keys = nullptr;     // null: no API keys configured
  JwtVerifier* jwt = nullptr;  // null: JWTs not accepted
  RateLimit& limiter;
  std::function<void(std::function<void()>)> offload;  // runs work on the blocking pool
  std::function<size_t()> connections;                 // open HTTP connections (for /metrics)
};

class Routes {
 public:
  explicit Routes(RouteContext ctx) : c_(std::move(ctx)) {}
  void handle(std::shared_ptr<Exchange> ex);
  // The route pattern of a path (a fixed set: metrics labels never come from user input).
  static std::string route_label(const std::string& method, const std::string& path);

 private:
  bool authenticate(Exchange& ex, Caller& caller);
  void seed(std::shared_ptr<Exchange> ex, Caller caller);        // POST /transcribe-and-summarize
  void create_job(std::shared_ptr<Exchange> ex, Caller caller);  // POST /v1/jobs
  void list_jobs(Exchange& ex, const Caller& caller);
  void get_job(Exchange& ex, const Caller& caller, const std::string& id);
  void delete_job(Exchange& ex, const Caller& caller, const std::string& id);
  void events(std::shared_ptr<Exchange> ex, const Caller& caller, const std::string& id);
  // Passes the job's events after `after` to on_event in order, stored ones first, then live
  // ones, until on_event returns true (then the stream ends) or the client leaves.
  void follow(std::shared_ptr<Exchange> ex, const std::string& id, int64_t after,
              std::function<bool(const JobEvent&)> on_event);
  void transcriptions(std::shared_ptr<Exchange> ex, Caller caller);  // OpenAI
  void chat_completions(std::shared_ptr<Exchange> ex);               // OpenAI / vLLM chat
  void models(Exchange& ex);
  void ready(Exchange& ex);
  // Submits on the blocking pool, then calls done(job) on the pool thread; errors are answered.
  void submit_then(std::shared_ptr<Exchange> ex, SubmitRequest req,
                   std::function<void(const JobRecord&)> done);
  // Answers when the job finishes, or after `timeout_s` with on_timeout(); a client that leaves
  // cancels the job when `cancel_on_close`.
  void wait_for(std::shared_ptr<Exchange> ex, const JobRecord& job, double timeout_s,
                bool cancel_on_close, std::function<void(const JobRecord&)> on_finished,
                std::function<void()> on_timeout);

  RouteContext c_;
};

inline HttpResponse json_ok(const nlohmann::json& body, int status = 200) {
  return json_text(status, dump_json(body));
}

// The one place where an exception becomes the JSON error shape (ApiError as it says, a store
// failure 503, anything else 500).
HttpResponse error_answer(std::exception_ptr error);

// A JSON body, nested at most 32 levels; throws ApiError(400, invalid_json) otherwise.
nlohmann::json parse_json_limited(const std::string& body);

// Parses a submission body (JSON - flat or the hosted plan's {"input": {...}} -, multipart with a
// `file` part, or raw audio) into a SubmitRequest. Throws ApiError (400, 413, 415).
SubmitRequest parse_submission(const HttpRequest& req);
// The request's Idempotency-Key header ("" when absent); throws ApiError(400) when malformed.
std::string idempotency_key(const HttpRequest& req);

}  // namespace stepaudio::server
