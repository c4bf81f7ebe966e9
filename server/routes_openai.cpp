// The OpenAI-compatible transcription endpoint (routes.h): POST /v1/audio/transcriptions with the
// fields the official SDKs send (multipart `file`, `model`, `language`, `prompt`,
// `response_format`, `stream`), answered in their formats, or streamed as
// transcript.text.delta / transcript.text.done Server-Sent Events.
#include <cmath>

#include "api_error.h"
#include "json_log.h"
#include "multipart.h"
#include "routes.h"
#include "transcript_formats.h"

namespace stepaudio::server {

using nlohmann::json;

namespace {

TranscriptDoc doc_of(const json& result) {
  TranscriptDoc d;
  d.text = result.value("transcription", "");
  d.language = result.value("language", "");
  if (d.language == "und") d.language = "";
  d.duration_s = result.value("duration_s", 0.0);
  for (const auto& s : result.value("segments", json::array())) {
    TimedText t;
    t.start = s.value("start", 0.0);
    t.end = s.value("end", 0.0);
    t.text = s.value("text", "");
    const double c = s.value("confidence", 0.0);
    t.avg_logprob = c > 0 ? std::log(c) : -100.0;
    d.segments.push_back(std::move(t));
  }
  return d;
}

HttpResponse formatted(const JobRecord& job, const std::string& format) {
  if (job.status != JobStatus::succeeded)
    return json_error(status_for_code(job.error_code), job.error_code, job.error_message);
  const TranscriptDoc d = doc_of(json::parse(job.result_json));
  HttpResponse r;
  if (format == "text") {
    r.content_type = "text/plain; charset=utf-8";
    r.body = d.text;
  } else if (format == "srt") {
    r.content_type = "application/x-subrip; charset=utf-8";
    r.body = to_srt(d);
  } else if (format == "vtt") {
    r.content_type = "text/vtt; charset=utf-8";
    r.body = to_vtt(d);
  } else if (format == "verbose_json") {
    r.body = to_openai_verbose_json(d);
  } else {
    r.body = to_openai_json(d);
  }
  return r;
}

std::string sse_data(const json& j) {
  return "data: " + dump_json(j) + "\n\n";
}

}  // namespace

void Routes::transcriptions(std::shared_ptr<Exchange> ex, Caller caller) {
  const HttpRequest& req = ex->request();
  auto boundary = multipart_boundary(req.header("content-type"));
  if (!boundary)
    throw ApiError(415, "unsupported_media",
                   "send multipart/form-data with a `file` part (the OpenAI transcription API)");
  std::vector<MultipartPart> parts;
  try {
    parts = parse_multipart(req.body, *boundary);
  } catch (const MultipartError& e) {
    throw ApiError(400, "bad_multipart", e.what());
  }
  SubmitRequest sr;
  sr.caller = std::move(caller);
  sr.idempotency_key = idempotency_key(req);
  sr.options.task = Task::transcribe;
  std::string format = "json";
  bool stream = false, have_file = false;
  for (const auto& p : parts) {
    const std::string v(p.data);
    if (p.name == "file") {
      sr.audio = v;
      have_file = true;
    } else if (p.name == "response_format") {
      format = v;
    } else if (p.name == "stream") {
      stream = v == "true" || v == "1";
    } else if (p.name == "language") {
      // A hint in OpenAI's API; our transcription detects the language itself. Validated only.
      if (!v.empty() &&
          (v.size() != 2 || !std::islower(uint8_t(v[0])) || !std::islower(uint8_t(v[1]))))
        throw ApiError(400, "invalid_argument", "language must be an ISO 639-1 code");
    }
    // model (any name: one model is served), prompt and temperature are accepted and not used.
  }
  if (!have_file || sr.audio.empty()) throw ApiError(400, "invalid_argument", "missing `file`");
  if (format != "json" && format != "text" && format != "verbose_json" && format != "srt" &&
      format != "vtt")
    throw ApiError(400, "invalid_argument",
                   "response_format must be json, text, verbose_json, srt or vtt");

  submit_then(ex, std::move(sr), [this, ex, format, stream](const JobRecord& job) {
    if (!stream) {
      if (is_terminal(job.status)) return ex->reply(formatted(job, format));
      return wait_for(
          ex, job, c_.options.openai_timeout_s, /*cancel_on_close=*/true,
          [ex, format](const JobRecord& done) { ex->reply(formatted(done, format)); },
          [ex] { ex->reply(json_error(504, "timeout", "the transcription took too long")); });
    }
    ex->start_stream(200, "text/event-stream");
    auto streamed = std::make_shared<bool>(false);
    ex->on_close([this, id = job.id, owner = job.owner] { c_.jobs.cancel(id, owner); });
    follow(ex, job.id, 0, [ex, streamed](const JobEvent& e) {
      if (e.type == "partial") {
        const std::string text = json::parse(e.data).value("text", "");
        *streamed = true;
        return !ex->send(sse_data({{"type", "transcript.text.delta"}, {"delta", text}}));
      }
      if (e.type == "result") {
        const std::string text = json::parse(e.data).value("transcription", "");
        if (!*streamed && !text.empty())  // a cached answer: the whole text as one delta
          ex->send(sse_data({{"type", "transcript.text.delta"}, {"delta", text}}));
        ex->send(sse_data({{"type", "transcript.text.done"}, {"text", text}}));
        return true;
      }
      if (e.type == "error" || e.type == "canceled") {
        ex->send(sse_data({{"type", "error"}, {"error", json::parse(e.data)["error"]}}));
        return true;
      }
      return false;
    });
  });
}

}  // namespace stepaudio::server
