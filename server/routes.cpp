// Routing, authentication, rate limits and the operational endpoints (routes.h). The job routes
// are in routes_jobs.cpp, the OpenAI-compatible ones in routes_openai.cpp.
#include "routes.h"

#include <chrono>

#include "api_error.h"
#include "crypto.h"
#include "web_page.h"

namespace stepaudio::server {

using nlohmann::json;

namespace {

const char kOpenApi[] =
#include "openapi.inc"
    ;

double now_s() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

bool is_job_path(const std::string& path, std::string* id, std::string* rest) {
  static const std::string prefix = "/v1/jobs/";
  if (path.rfind(prefix, 0) != 0) return false;
  const std::string tail = path.substr(prefix.size());
  const size_t slash = tail.find('/');
  *id = tail.substr(0, slash);
  *rest = slash == std::string::npos ? "" : tail.substr(slash);
  return !id->empty();
}

}  // namespace

HttpResponse error_answer(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const ApiError& e) {
    return json_error(e.status, e.code, e.what(), e.retry_after_s);
  } catch (const StoreError& e) {
    return json_error(503, "store_unavailable", e.what(), 5);
  } catch (const std::exception& e) {
    return json_error(500, "internal", e.what());
  } catch (...) {
    return json_error(500, "internal", "unknown error");
  }
}

std::string Routes::route_label(const std::string& method, const std::string& path) {
  static const char* kFixed[] = {"/",
                                 "/healthz",
                                 "/readyz",
                                 "/metrics",
                                 "/openapi.json",
                                 "/v1/jobs",
                                 "/transcribe-and-summarize",
                                 "/v1/models",
                                 "/v1/audio/transcriptions",
                                 "/v1/chat/completions"};
  for (const char* p : kFixed)
    if (path == p) return method + " " + p;
  std::string id, rest;
  if (is_job_path(path, &id, &rest)) {
    if (rest.empty()) return method + " /v1/jobs/{id}";
    if (rest == "/events") return method + " /v1/jobs/{id}/events";
  }
  return "other";
}

bool Routes::authenticate(Exchange& ex, Caller& caller) {
  if (!c_.keys && !c_.jwt) {
    caller.id = "";
    caller.webhook_secret = c_.options.webhook_secret;
    return true;
  }
  const std::string auth = ex.request().header("authorization");
  std::string token;
  if (auth.size() > 7 && (auth.rfind("Bearer ", 0) == 0 || auth.rfind("bearer ", 0) == 0))
    token = auth.substr(7);
  if (!token.empty()) {
    if (c_.keys) {
      c_.keys->maybe_reload();
      if (auto k = c_.keys->authenticate(token)) {
        caller = *k;
        return true;
      }
    }
    if (c_.jwt && std::count(token.begin(), token.end(), '.') == 2) {
      std::string why;
      if (auto j = c_.jwt->verify(token, int64_t(now_s()), &why)) {
        caller = *j;
        // A server secret when there is one: a JWKS is public, so a secret derived from it alone
        // could be computed by anyone.
        if (!c_.options.webhook_secret.empty())
          caller.webhook_secret =
              hmac_sha256_hex(c_.options.webhook_secret, "stepaudio-webhook-v1:" + caller.id);
        return true;
      }
    }
  }
  HttpResponse r = json_error(401, "unauthorized",
                              token.empty() ? "missing API key: send Authorization: Bearer <key>"
                                            : "invalid API key or token");
  r.headers.emplace_back("WWW-Authenticate", "Bearer");
  ex.reply(std::move(r));
  return false;
}

void Routes::handle(std::shared_ptr<Exchange> ex) {
  const HttpRequest& req = ex->request();
  const std::string& m = req.method;
  const std::string& p = req.path;
  if (p == "/healthz" && (m == "GET" || m == "HEAD")) return ex->reply(json_ok({{"status", "ok"}}));
  // The web page is open (it asks for the key itself) and takes no rate-limit token.
  if (p == "/" && (m == "GET" || m == "HEAD")) return ex->reply(web_page_response());

  Caller caller;
  if (!authenticate(*ex, caller)) return;
  int retry = 0;
  const bool probe = m == "GET" && (p == "/readyz" || p == "/metrics");  // never rate-limited
  if (!probe && !c_.limiter.take(caller.id, now_s(), &retry))
    return ex->reply(json_error(429, "rate_limited", "too many requests for this key", retry));

  try {
    std::string id, rest;
    if (p == "/readyz" && m == "GET") return ready(*ex);
    if (p == "/metrics" && m == "GET") {
      c_.metrics.set("stepaudio_queue_depth", {}, double(c_.jobs.pending()));
      if (auto shared = c_.jobs.shared_queue_depth())
        c_.metrics.set("stepaudio_shared_queue_depth", {}, double(*shared));
      c_.metrics.set("stepaudio_backend_queued", {}, double(c_.jobs.backend().queued()));
      c_.metrics.set("stepaudio_backend_running", {}, double(c_.jobs.backend().running()));
      if (c_.connections)
        c_.metrics.set("stepaudio_http_connections", {}, double(c_.connections()));
      try {
        const auto counts = c_.jobs.store().count_by_status();
        for (size_t s = 0; s < counts.size(); ++s)
          c_.metrics.set("stepaudio_jobs", {{"state", job_status_name(JobStatus(s))}},
                         double(counts[s]));
      } catch (const StoreError&) {
      }
      HttpResponse r;
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      r.body = c_.metrics.render();
      return ex->reply(std::move(r));
    }
    if (p == "/openapi.json" && m == "GET") {
      HttpResponse r;
      r.body = kOpenApi;
      return ex->reply(std::move(r));
    }
    if (p == "/transcribe-and-summarize" && m == "POST") return seed(ex, caller);
    if (p == "/v1/jobs" && m == "POST") return create_job(ex, caller);
    if (p == "/v1/jobs" && m == "GET") return list_jobs(*ex, caller);
    if (p == "/v1/audio/transcriptions" && m == "POST") return transcriptions(ex, caller);
    if (p == "/v1/chat/completions" && m == "POST") return chat_completions(ex);
    if (p == "/v1/models" && m == "GET") return models(*ex);
    if (is_job_path(p, &id, &rest)) {
      if (rest.empty() && m == "GET") return get_job(*ex, caller, id);
      if (rest.empty() && m == "DELETE") return delete_job(*ex, caller, id);
      if (rest == "/events" && m == "GET") return events(ex, caller, id);
    }
    if (route_label(m, p) == "other" && route_label("GET", p) == "other" &&
        route_label("POST", p) == "other" && route_label("DELETE", p) == "other")
      return ex->reply(json_error(404, "not_found", "no such endpoint: " + p));
    return ex->reply(json_error(405, "method_not_allowed", m + " is not allowed on " + p));
  } catch (...) {
    ex->reply(error_answer(std::current_exception()));
  }
}

void Routes::ready(Exchange& ex) {
  auto& backend = c_.jobs.backend();
  const bool store_ok = c_.jobs.store().writable();
  if (backend.ready() && store_ok)
    return ex.reply(json_ok({{"status", "ready"},
                             {"model", backend.model_id()},
                             {"quant", backend.quant()},
                             {"queue", c_.jobs.pending()}}));
  std::string why = !store_ok ? "the job store is not writable"
                    : !backend.load_error().empty()
                        ? "the model failed to load: " + backend.load_error()
                        : backend.not_ready_reason();
  ex.reply(json_error(503, "not_ready", why, backend.load_error().empty() ? 5 : 0));
}

void Routes::models(Exchange& ex) {
  auto& b = c_.jobs.backend();
  json data = json::array();
  if (b.ready())
    data.push_back(
        {{"id", b.model_id()}, {"object", "model"}, {"created", 0}, {"owned_by", "stepaudio"}});
  ex.reply(json_ok({{"object", "list"}, {"data", data}}));
}

void Routes::submit_then(std::shared_ptr<Exchange> ex, SubmitRequest req,
                         std::function<void(const JobRecord&)> done) {
  c_.offload([this, ex, req = std::move(req), done = std::move(done)] {
    if (ex->closed()) return;  // the client left while it waited for a pool thread
    try {
      done(c_.jobs.submit(req));
    } catch (...) {
      ex->reply(error_answer(std::current_exception()));
    }
  });
}

void Routes::wait_for(std::shared_ptr<Exchange> ex, const JobRecord& job, double timeout_s,
                      bool cancel_on_close, std::function<void(const JobRecord&)> on_finished,
                      std::function<void()> on_timeout) {
  struct State {
    std::atomic<bool> done{false};
    std::atomic<uint64_t> token{0};
  };
  auto st = std::make_shared<State>();
  const std::string id = job.id, owner = job.owner;
  auto finish = [this, st, id, on_finished, on_timeout](bool timed_out) {
    if (st->done.exchange(true)) return;
    if (st->token) c_.jobs.unsubscribe(id, st->token);
    if (timed_out) return on_timeout();
    if (auto rec = c_.jobs.store().get_job(id)) on_finished(*rec);
  };
  st->token = c_.jobs.subscribe(id, [finish](const JobEvent& e) {
    if (e.type == "result" || e.type == "error" || e.type == "canceled") finish(false);
  });
  if (st->done) c_.jobs.unsubscribe(id, st->token);
  ex->after(timeout_s, [finish] { finish(true); });
  if (cancel_on_close)
    ex->on_close([this, st, id, owner] {
      if (st->done.exchange(true)) return;
      c_.jobs.unsubscribe(id, st->token);
      c_.jobs.cancel(id, owner);  // nobody is waiting for it any more
    });
  // It may have finished before we subscribed.
  if (auto rec = c_.jobs.store().get_job(id); rec && is_terminal(rec->status)) finish(false);
}

}  // namespace stepaudio::server
