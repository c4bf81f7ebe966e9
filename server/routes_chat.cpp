// POST /v1/chat/completions (routes.h): the chat request (chat_request.h) runs as a raw chat
// generation on the backend (backend.h ChatTask: the same queue, slots and batching scheduler as
// the jobs; no job, no cache), answered as an OpenAI `chat.completion`, or streamed as
// `chat.completion.chunk` Server-Sent Events ending with `data: [DONE]`.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <mutex>

#include "api_error.h"
#include "chat_request.h"
#include "crypto.h"
#include "json_log.h"
#include "routes.h"

namespace stepaudio::server {

using nlohmann::json;

namespace {

bool same_model(std::string a, std::string b) {
  auto lower = [](std::string& s) {
    for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  };
  lower(a);
  lower(b);
  return a == b;
}

json byte_list(const std::string& bytes) {
  json out = json::array();
  for (unsigned char c : bytes) out.push_back(int(c));
  return out;
}

// OpenAI's logprob can not be -inf in JSON: vLLM writes -9999.0 there, and so do we.
double finite_logprob(double lp) {
  return std::isfinite(lp) ? lp : -9999.0;
}

// {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}: `token` is the token's
// text (a partial UTF-8 character as U+FFFD) or, with `as_ids`, "token_id:<id>"; `bytes` the
// exact bytes.
json logprobs_json(const std::vector<ChatTokenLogprob>& entries, bool as_ids) {
  auto token = [as_ids](int32_t id, const std::string& text) {
    return as_ids ? "token_id:" + std::to_string(id) : text;
  };
  json content = json::array();
  for (const ChatTokenLogprob& e : entries) {
    json top = json::array();
    for (const auto& t : e.top)
      top.push_back({{"token", token(t.id, t.text)},
                     {"logprob", finite_logprob(t.logprob)},
                     {"bytes", byte_list(t.bytes)}});
    content.push_back({{"token", token(e.id, e.text)},
                       {"logprob", finite_logprob(e.logprob)},
                       {"bytes", byte_list(e.bytes)},
                       {"top_logprobs", std::move(top)}});
  }
  return {{"content", std::move(content)}};
}

json usage_json(const ChatResult& r) {
  const size_t completion = std::max(r.tokens.size(), r.completion_tokens);
  return {{"prompt_tokens", r.prompt_tokens},
          {"completion_tokens", completion},
          {"total_tokens", r.prompt_tokens + completion},
          {"prompt_tokens_details", {{"audio_tokens", r.audio_tokens}}}};
}

json stop_reason(const ChatResult& r) {
  return r.stop_string.empty() ? json(nullptr) : json(r.stop_string);
}

std::string sse(const json& j) {
  return "data: " + dump_json(j) + "\n\n";
}

// An engine error as the chat answers it: input problems found late (the context is too small
// for the prompt) are 400 like the ones the parser finds.
int chat_status(const Error& e) {
  return e.code() == Errc::invalid_argument ? 400 : status_for(e.code());
}

// One chat request in flight: what its callbacks (scheduler / slot / connection threads) share.
struct ChatCall {
  std::shared_ptr<Exchange> ex;
  std::string id, model;
  int64_t created = 0;
  bool stream = false, include_usage = false, logprobs = false, tokens_as_ids = false;
  // Weak: the task's callbacks hold this call, and the backend holds the task until it ends.
  std::weak_ptr<ChatTask> task;
  std::mutex mu;
  bool started = false;   // the SSE head and the role chunk are out
  bool finished = false;  // answered (or given up): later callbacks do nothing

  json chunk(json choice) const {
    json j = {{"id", id},
              {"object", "chat.completion.chunk"},
              {"created", created},
              {"model", model},
              {"choices", json::array()}};
    if (!choice.is_null()) j["choices"].push_back(std::move(choice));
    if (include_usage) j["usage"] = nullptr;
    return j;
  }
  void cancel() {
    if (auto t = task.lock()) t->cancel = true;
  }
  // Under mu. A client gone (or too slow) cancels the generation.
  void send(const json& j) {
    if (!ex->send(sse(j))) cancel();
  }
  void start_stream() {
    if (started) return;
    started = true;
    ex->start_stream(200, "text/event-stream; charset=utf-8");
    send(chunk({{"index", 0},
                {"delta", {{"role", "assistant"}, {"content", ""}}},
                {"logprobs", nullptr},
                {"finish_reason", nullptr}}));
  }

  void delta(const ChatDelta& d) {
    std::lock_guard lock(mu);
    if (finished || !stream) return;
    start_stream();
    send(chunk({{"index", 0},
                {"delta", {{"content", d.text}}},
                {"logprobs", logprobs ? logprobs_json(d.logprobs, tokens_as_ids) : json(nullptr)},
                {"finish_reason", nullptr}}));
  }

  void success(const ChatResult& r) {
    std::lock_guard lock(mu);
    if (finished) return;
    finished = true;
    if (!stream) {
      json choice = {
          {"index", 0},
          {"message", {{"role", "assistant"}, {"content", r.text}}},
          {"logprobs", logprobs ? logprobs_json(r.logprobs, tokens_as_ids) : json(nullptr)},
          {"finish_reason", r.finish_reason},
          {"stop_reason", stop_reason(r)}};
      ex->reply(json_ok({{"id", id},
                         {"object", "chat.completion"},
                         {"created", created},
                         {"model", model},
                         {"choices", json::array({std::move(choice)})},
                         {"usage", usage_json(r)}}));
      return;
    }
    start_stream();
    send(chunk({{"index", 0},
                {"delta", json::object()},
                {"logprobs", nullptr},
                {"finish_reason", r.finish_reason},
                {"stop_reason", stop_reason(r)}}));
    if (include_usage) {
      json last = chunk(nullptr);
      last["usage"] = usage_json(r);
      send(last);
    }
    ex->send("data: [DONE]\n\n");
    ex->end();
  }

  void failure(int status, const std::string& code, const std::string& message) {
    std::lock_guard lock(mu);
    if (finished) return;
    finished = true;
    cancel();
    if (!started) return ex->reply(json_error(status, code, message));
    // Mid-stream: the OpenAI SDKs raise an error for a data line holding "error".
    ex->send(sse({{"error", {{"code", code}, {"message", message}}}}));
    ex->send("data: [DONE]\n\n");
    ex->end();
  }
};

}  // namespace

void Routes::chat_completions(std::shared_ptr<Exchange> ex) {
  // Parsing decodes base64 and audio: on the blocking pool, never on an I/O thread.
  c_.offload([this, ex] {
    if (ex->closed()) return;
    try {
      InferenceBackend& backend = c_.jobs.backend();
      if (!backend.ready()) {
        const std::string err = backend.load_error();
        throw ApiError(
            503, "not_ready",
            err.empty() ? backend.not_ready_reason() : "the model failed to load: " + err,
            err.empty() ? 5 : 0);
      }
      ChatLimits limits;
      limits.max_audio_seconds = c_.jobs.config().max_audio_seconds;
      ChatCompletionRequest req = parse_chat_request(ex->request(), limits);
      if (!req.model.empty() && !same_model(req.model, backend.model_id()))
        throw ApiError(404, "model_not_found",
                       "no model \"" + req.model + "\": this server serves \"" +
                           backend.model_id() + "\" (GET /v1/models)");

      auto call = std::make_shared<ChatCall>();
      call->ex = ex;
      call->id = "chatcmpl-" + random_hex(12);
      call->model = backend.model_id();
      call->created = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
      call->stream = req.stream;
      call->include_usage = req.include_usage;
      call->logprobs = req.options.logprobs;
      call->tokens_as_ids = req.tokens_as_ids;
      auto task = std::make_shared<ChatTask>();
      call->task = task;
      task->messages = std::move(req.messages);
      task->options = std::move(req.options);
      std::weak_ptr<ChatCall> weak = call;
      task->on_delta = [call](const ChatDelta& d) { call->delta(d); };
      task->on_success = [this, call, seconds = req.audio_seconds](ChatResult r) {
        c_.metrics.inc("stepaudio_tokens_generated_total", {},
                       double(std::max(r.tokens.size(), r.completion_tokens)));
        c_.metrics.inc("stepaudio_audio_seconds_processed_total", {}, seconds);
        call->success(r);
      };
      task->on_error = [call](const Error& e) {
        call->failure(chat_status(e), e.code_name(), e.what());
      };
      ex->on_close([weak] {
        if (auto c = weak.lock()) c->cancel();  // nobody is listening any more
      });
      // Until the answer (or the stream) starts: --openai-timeout, as the transcription waits.
      ex->after(c_.options.openai_timeout_s, [weak] {
        if (auto c = weak.lock())
          c->failure(504, "timeout", "the chat completion took too long to start");
      });
      if (!backend.submit_chat(task)) {
        const int retry = int(std::max<size_t>(1, c_.options.service.max_queue / 4));
        throw ApiError(429, "queue_full", "the inference queue is full; retry later", retry);
      }
      c_.metrics.inc("stepaudio_audio_seconds_received_total", {}, req.audio_seconds);
    } catch (...) {
      ex->reply(error_answer(std::current_exception()));
    }
  });
}

}  // namespace stepaudio::server
