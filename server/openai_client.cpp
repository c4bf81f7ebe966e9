// OpenAiCompleter (openai_client.h): libcurl transport, retries and the circuit breaker.
#include "openai_client.h"

#include <curl/curl.h>

#include <chrono>
#include <exception>
#include <mutex>
#include <random>
#include <thread>

#include "json_log.h"
#include "openai_wire.h"
#include "sse.h"
#include "stepaudio/error.h"

namespace stepaudio::server {

using nlohmann::json;

namespace {

void curl_init_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct CurlUrl {
  CURLU* h = curl_url();
  ~CurlUrl() { curl_url_cleanup(h); }
  std::string get(CURLUPart part) const {
    char* s = nullptr;
    if (curl_url_get(h, part, &s, 0) != CURLUE_OK || !s) return {};
    std::string out(s);
    curl_free(s);
    return out;
  }
};

struct Headers {
  curl_slist* list = nullptr;
  ~Headers() { curl_slist_free_all(list); }
  void add(const std::string& h) { list = curl_slist_append(list, h.c_str()); }
};

// An input error the backend found in what we sent: the same error as if we had found it.
Errc errc_for_status(int status) {
  switch (status) {
    case 400:
      return Errc::invalid_argument;
    case 413:
      return Errc::too_long;
    case 415:
      return Errc::unsupported_media;
    case 422:
      return Errc::bad_audio;
    default:
      return Errc::backend_error;
  }
}

bool retryable_status(int status) {
  return status >= 500 || status == 429 || status == 408;
}

double unit_random() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0, 1)(rng);
}

}  // namespace

std::string backend_base_url(const std::string& url) {
  std::string u = url;
  const auto bad = [&](const std::string& why) {
    throw Error(Errc::invalid_argument,
                "--backend \"" + url + "\": " + why + " (expected openai://HOST:PORT[/v1])");
  };
  if (u.rfind("openai://", 0) == 0)
    u = "http://" + u.substr(9);
  else if (u.rfind("http://", 0) != 0 && u.rfind("https://", 0) != 0)
    bad("the scheme must be openai://, http:// or https://");
  CurlUrl p;
  if (curl_url_set(p.h, CURLUPART_URL, u.c_str(), 0) != CURLUE_OK) bad("not a valid URL");
  if (p.get(CURLUPART_HOST).empty()) bad("no host");
  if (!p.get(CURLUPART_USER).empty() || !p.get(CURLUPART_PASSWORD).empty())
    bad("credentials in the URL are not accepted; give the key with --backend-key");
  if (!p.get(CURLUPART_QUERY).empty() || !p.get(CURLUPART_FRAGMENT).empty())
    bad("a query or fragment is not accepted");
  std::string path = p.get(CURLUPART_PATH);
  while (!path.empty() && path.back() == '/') path.pop_back();
  if (!path.ends_with("/v1")) path += "/v1";
  const std::string port = p.get(CURLUPART_PORT);
  std::string host = p.get(CURLUPART_HOST);
  return p.get(CURLUPART_SCHEME) + "://" + host + (port.empty() ? "" : ":" + port) + path;
}

OpenAiCompleter::OpenAiCompleter(RemoteOptions o)
    : o_(std::move(o)),
      base_(backend_base_url(o_.url)),
      breaker_(std::make_unique<CircuitBreaker>(o_.breaker_threshold, o_.breaker_cooldown_s)) {
  curl_init_once();
}

std::string OpenAiCompleter::model_id() const {
  std::lock_guard lk(mu_);
  return model_;
}

void OpenAiCompleter::set_model_id(const std::string& id) {
  std::lock_guard lk(mu_);
  model_ = id;
}

// One HTTP exchange and what came of it.
struct OpenAiCompleter::Attempt {
  CURLcode code = CURLE_OK;
  int status = 0;
  bool sse = false, done = false, delivered = false, stopped = false, canceled = false;
  std::string body;  // a non-SSE answer (JSON, or an error)
  std::string curl_error;
  ChatResult result;
  std::exception_ptr error;  // from parsing or the caller's callback
  CURL* curl = nullptr;
  std::unique_ptr<SseParser> parser;
  const ChatDeltaFn* on_delta = nullptr;
  const std::atomic<bool>*cancel = nullptr, *stop = nullptr;
  bool head_seen = false;

  bool halted() {
    if (cancel && cancel->load()) canceled = true;
    if (stop && stop->load()) stopped = true;
    return canceled || stopped;
  }
  void event(const std::string& data) {
    if (data == "[DONE]") {
      done = true;
      return;
    }
    const json j = json::parse(data, nullptr, false);
    if (j.is_discarded())
      throw Error(Errc::backend_error, "the inference backend sent an event that is not JSON");
    ChatDelta d = apply_chat_chunk(j, result);
    if (d.text.empty() && d.logprobs.empty()) return;
    delivered = true;
    if (on_delta && *on_delta) (*on_delta)(d);
  }
  size_t write(const char* p, size_t n) {
    if (!head_seen) {
      head_seen = true;
      long st = 0;
      curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &st);
      status = int(st);
      char* ct = nullptr;
      curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &ct);
      sse = status == 200 && ct && std::string_view(ct).starts_with("text/event-stream");
      if (sse) parser = std::make_unique<SseParser>([this](const std::string& d) { event(d); });
    }
    if (!sse) {
      if (body.size() < (64u << 20)) body.append(p, n);
      return n;
    }
    try {
      parser->feed(std::string_view(p, n));
    } catch (...) {
      error = std::current_exception();
      return 0;  // aborts the transfer
    }
    if (parser->pending() > (16u << 20)) return 0;
    return halted() ? 0 : n;
  }
};

void OpenAiCompleter::attempt(Attempt& a, const std::string& body, const ChatDeltaFn& on_delta,
                              const std::atomic<bool>* cancel,
                              const std::atomic<bool>* stop) const {
  std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) throw Error(Errc::internal, "curl_easy_init failed");
  a.curl = curl.get();
  a.on_delta = &on_delta;
  a.cancel = cancel;
  a.stop = stop;
  Headers h;
  h.add("Content-Type: application/json");
  h.add("Accept: text/event-stream, application/json");
  if (!o_.key.empty()) h.add("Authorization: Bearer " + o_.key);
  char errbuf[CURL_ERROR_SIZE] = {0};
  const std::string url = base_ + "/chat/completions";
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h.list);
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.size()));
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_PROXY, "");  // an operator-given address: never a proxy
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, long(o_.connect_timeout_s * 1000));
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, long(std::max(1.0, o_.idle_timeout_s)));
  curl_easy_setopt(
      c, CURLOPT_WRITEFUNCTION, +[](char* p, size_t, size_t n, void* self) {
        return static_cast<Attempt*>(self)->write(p, n);
      });
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &a);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(
      c, CURLOPT_XFERINFOFUNCTION,
      +[](void* self, curl_off_t, curl_off_t, curl_off_t, curl_off_t) -> int {
        return static_cast<Attempt*>(self)->halted() ? 1 : 0;
      });
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &a);
  a.code = curl_easy_perform(c);
  a.curl_error = errbuf[0] ? errbuf : curl_easy_strerror(a.code);
  if (!a.head_seen) {
    long st = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    a.status = int(st);
  }
}

ChatResult OpenAiCompleter::complete(const std::vector<ChatMessage>& messages,
                                     const ChatOptions& options, const ChatDeltaFn& on_delta,
                                     const std::atomic<bool>* cancel,
                                     const std::atomic<bool>* stop) const {
  const std::string body = chat_request_json(messages, options, model_id(), true).dump();
  std::string last_problem;
  for (int attempt_no = 0;; ++attempt_no) {
    if (cancel && cancel->load()) throw Error(Errc::canceled, "request canceled");
    // Half-open with the probe out: the calls beside it wait for its verdict rather than fail
    // a request the recovering backend could serve (a job's questions go out together).
    while (breaker_->probe_out()) {
      if (cancel && cancel->load()) throw Error(Errc::canceled, "request canceled");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!breaker_->allow())
      throw Error(Errc::backend_unavailable,
                  "the inference backend is unavailable (circuit breaker open after repeated "
                  "failures; next try in " +
                      std::to_string(int(breaker_->retry_in_s()) + 1) + " s)");
    Attempt a;
    attempt(a, body, on_delta, cancel, stop);
    if (a.error) {
      breaker_->success();  // the backend answered; the answer was bad
      std::rethrow_exception(a.error);
    }
    if (a.canceled) {
      breaker_->abandon();
      throw Error(Errc::canceled, "request canceled");
    }
    if (a.stopped) {  // the caller ended the generation (e.g. the repetition guard)
      breaker_->success();
      a.result.finish_reason = "stop";
      return std::move(a.result);
    }
    if (a.code == CURLE_OK && a.status == 200) {
      if (!a.sse) {
        const json j = json::parse(a.body, nullptr, false);
        if (j.is_discarded())
          throw Error(Errc::backend_error, "the inference backend's answer is not JSON");
        breaker_->success();
        const ChatDelta d = apply_chat_answer(j, a.result);
        if (on_delta && (!d.text.empty() || !d.logprobs.empty())) on_delta(d);
        return std::move(a.result);
      }
      if (a.done || !a.result.finish_reason.empty()) {
        breaker_->success();
        return std::move(a.result);
      }
      last_problem = "the stream ended before the answer did";
    } else if (a.code == CURLE_OK || a.status >= 400) {
      std::string code;
      const std::string msg = error_message(a.body, &code);
      if (!retryable_status(a.status)) {
        breaker_->success();  // it is up, and said no
        throw Error(errc_for_status(a.status), "the inference backend refused the request (HTTP " +
                                                   std::to_string(a.status) +
                                                   (code.empty() ? "" : " " + code) + "): " + msg);
      }
      last_problem = "HTTP " + std::to_string(a.status) + ": " + msg;
    } else {
      last_problem = a.curl_error;
    }
    breaker_->failure();
    log_json("warn", "backend_attempt_failed",
             {{"attempt", attempt_no + 1}, {"problem", last_problem}, {"url", base_}});
    // Text already streamed to the caller cannot be taken back: no retry then.
    if (a.delivered || attempt_no >= o_.retries)
      throw Error(Errc::backend_unavailable, "the inference backend failed (" + last_problem +
                                                 ") after " + std::to_string(attempt_no + 1) +
                                                 " attempt(s)");
    const auto until = std::chrono::steady_clock::now() +
                       std::chrono::duration<double>(o_.backoff.delay_s(attempt_no, unit_random()));
    while (std::chrono::steady_clock::now() < until) {
      if (cancel && cancel->load()) throw Error(Errc::canceled, "request canceled");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
}

std::string OpenAiCompleter::fetch_model_id(double timeout_s) const {
  std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) throw Error(Errc::internal, "curl_easy_init failed");
  CURL* c = curl.get();
  Headers h;
  if (!o_.key.empty()) h.add("Authorization: Bearer " + o_.key);
  std::string body;
  const std::string url = base_ + "/models";
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h.list);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_PROXY, "");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, long(timeout_s * 1000));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, long(timeout_s * 1000));
  curl_easy_setopt(
      c, CURLOPT_WRITEFUNCTION, +[](char* p, size_t, size_t n, void* s) {
        auto* b = static_cast<std::string*>(s);
        if (b->size() > (4u << 20)) return size_t(0);
        b->append(p, n);
        return n;
      });
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  const CURLcode rc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (rc != CURLE_OK)
    throw Error(Errc::backend_unavailable, "the inference backend at " + base_ +
                                               " does not answer: " + curl_easy_strerror(rc));
  if (status != 200)
    throw Error(
        status >= 500 ? Errc::backend_unavailable : Errc::backend_error,
        "GET " + url + " answered HTTP " + std::to_string(status) + ": " + error_message(body));
  const json j = json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("data") && j["data"].is_array() && !j["data"].empty() &&
      j["data"][0].is_object() && j["data"][0].contains("id") && j["data"][0]["id"].is_string())
    return j["data"][0]["id"].get<std::string>();
  throw Error(Errc::backend_error, "GET " + url + " listed no model");
}

}  // namespace stepaudio::server
