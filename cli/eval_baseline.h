// The baseline of `stepaudio eval --compare`: any OpenAI-compatible transcription endpoint (OpenAI
// itself, a Whisper server, vLLM, another `stepaudio serve`), called with the multipart request of
// OpenAI's API: POST {base}/v1/audio/transcriptions with file, model, response_format=json and the
// language when known. libcurl, one easy handle per request.
// Thread-safety: a BaselineClient is immutable after construction; transcribe() may run on several
// threads at once.
#pragma once

#include <string>

namespace stepaudio::cli {

struct BaselineOptions {
  std::string url;  // openai://HOST[:PORT][/PATH] (plain HTTP) or http(s)://HOST[:PORT][/PATH]
  std::string key;  // sent as "Authorization: Bearer KEY" when not empty
  std::string model = "whisper-1";
  double timeout_s = 300;  // one request, upload and answer included
  int max_retries = 3;     // on connection failures, 429 and 5xx, with backoff
};

struct BaselineResult {
  bool ok = false;
  std::string text;
  std::string error_code, error_message;  // when !ok
  bool unreachable = false;               // the last attempt could not connect
  double wall_ms = 0;                     // the last attempt, upload to answer
  int attempts = 0;
};

class BaselineClient {
 public:
  // Throws Error(invalid_argument) for a URL that is not openai://, http:// or https:// with a
  // host.
  explicit BaselineClient(BaselineOptions options);
  // Opens a connection to the endpoint's host (no request). Throws Error(io) naming the URL and the
  // reason when it cannot: a down baseline fails the run before any model is loaded.
  void check_reachable() const;
  // `language`: an ISO 639-1 code or "" (not sent). Never throws for network or HTTP errors: they
  // are the item's error.
  BaselineResult transcribe(const std::string& path, const std::string& language) const;
  const std::string& endpoint() const { return endpoint_; }

 private:
  BaselineOptions options_;
  std::string endpoint_;  // the full transcription URL
};

// "openai://h:8080" -> "http://h:8080/v1/audio/transcriptions", "https://api.openai.com/v1" ->
// "https://api.openai.com/v1/audio/transcriptions". Throws Error(invalid_argument).
std::string transcription_endpoint(const std::string& url);

}  // namespace stepaudio::cli
