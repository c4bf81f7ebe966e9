// BaselineClient (eval_baseline.h): OpenAI's transcription request over libcurl, with bounded
// retries. The baseline is a server the user chose, so no address policy applies (unlike
// audio_url fetching in the server); proxies from the environment apply except for loopback.
#include "eval_baseline.h"

#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "stepaudio/error.h"

namespace stepaudio::cli {
namespace {

struct EasyDeleter {
  void operator()(CURL* h) const { curl_easy_cleanup(h); }
};
struct MimeDeleter {
  void operator()(curl_mime* m) const { curl_mime_free(m); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
struct UrlDeleter {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};
struct CurlStrDeleter {
  void operator()(char* s) const { curl_free(s); }
};
using EasyPtr = std::unique_ptr<CURL, EasyDeleter>;

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      throw Error(Errc::internal, "curl_global_init failed");
  });
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* body = static_cast<std::string*>(user);
  if (body->size() > (16u << 20)) return 0;  // a transcription answer is small: stop runaways
  body->append(data, size * n);
  return size * n;
}

// Loopback never goes through a proxy (a test's local server, a local Whisper server).
void set_common(CURL* h, const std::string& url, double timeout_s) {
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, long(std::min(timeout_s, 10.0) * 1000));
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, long(timeout_s * 1000));
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  static const std::string no_proxy = [] {
    std::string v = "localhost,127.0.0.1,::1";
    for (const char* name : {"NO_PROXY", "no_proxy"})
      if (const char* e = std::getenv(name); e && *e) return v + "," + e;
    return v;
  }();
  curl_easy_setopt(h, CURLOPT_NOPROXY, no_proxy.c_str());
}

bool is_connect_failure(CURLcode rc) {
  return rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
         rc == CURLE_COULDNT_RESOLVE_PROXY || rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR ||
         rc == CURLE_GOT_NOTHING;
}

// The error message of an answer in OpenAI's shape ({"error": {"message"}}), else its start.
std::string answer_message(const std::string& body) {
  auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("error") && j["error"].is_object() &&
      j["error"].value("message", "") != "")
    return j["error"].value("message", "");
  std::string s = body.substr(0, 200);
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s.empty() ? "(empty answer)" : s;
}

}  // namespace

std::string transcription_endpoint(const std::string& url) {
  std::string rest;
  std::string scheme;
  for (const char* s : {"openai://", "http://", "https://"}) {
    if (url.rfind(s, 0) == 0) {
      scheme = std::string(s) == "https://" ? "https://" : "http://";
      rest = url.substr(std::string(s).size());
    }
  }
  if (scheme.empty())
    throw Error(Errc::invalid_argument,
                "--compare must be openai://HOST[:PORT][/v1], http://... or "
                "https://..., not '" +
                    url + "'");
  std::string base = scheme + rest;
  while (!base.empty() && base.back() == '/') base.pop_back();
  global_init();
  std::unique_ptr<CURLU, UrlDeleter> u(curl_url());
  char* host = nullptr;
  if (!u || curl_url_set(u.get(), CURLUPART_URL, base.c_str(), 0) != CURLUE_OK ||
      curl_url_get(u.get(), CURLUPART_HOST, &host, 0) != CURLUE_OK || !host)
    throw Error(Errc::invalid_argument, "--compare: not a valid URL: '" + url + "'");
  std::unique_ptr<char, CurlStrDeleter> owned(host);
  const bool has_v1 = base.size() >= 3 && base.compare(base.size() - 3, 3, "/v1") == 0;
  return base + (has_v1 ? "/audio/transcriptions" : "/v1/audio/transcriptions");
}

BaselineClient::BaselineClient(BaselineOptions options)
    : options_(std::move(options)), endpoint_(transcription_endpoint(options_.url)) {}

void BaselineClient::check_reachable() const {
  EasyPtr h(curl_easy_init());
  if (!h) throw Error(Errc::internal, "curl_easy_init failed");
  set_common(h.get(), endpoint_, std::min(options_.timeout_s, 10.0));
  curl_easy_setopt(h.get(), CURLOPT_CONNECT_ONLY, 1L);
  const CURLcode rc = curl_easy_perform(h.get());
  if (rc != CURLE_OK)
    throw Error(Errc::io, "the baseline " + options_.url + " (" + endpoint_ +
                              ") is unreachable: " + curl_easy_strerror(rc));
}

BaselineResult BaselineClient::transcribe(const std::string& path,
                                          const std::string& language) const {
  BaselineResult r;
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  if (in) ss << in.rdbuf();
  if (!in || in.bad() || !std::filesystem::is_regular_file(path)) {
    r.error_code = "io_error";
    r.error_message = "cannot read " + path;
    return r;
  }
  const std::string audio = ss.str();
  const std::string filename = std::filesystem::path(path).filename().string();
  for (int attempt = 0; attempt <= options_.max_retries; ++attempt) {
    r.attempts = attempt + 1;
    EasyPtr h(curl_easy_init());
    std::unique_ptr<curl_mime, MimeDeleter> mime(h ? curl_mime_init(h.get()) : nullptr);
    if (!h || !mime) {
      r.error_code = "internal";
      r.error_message = "curl_easy_init failed";
      return r;
    }
    auto add = [&](const char* name, const std::string& value, const char* file = nullptr) {
      curl_mimepart* part = curl_mime_addpart(mime.get());
      curl_mime_name(part, name);
      curl_mime_data(part, value.data(), value.size());
      if (file) {
        curl_mime_filename(part, file);
        curl_mime_type(part, "application/octet-stream");
      }
    };
    add("file", audio, filename.c_str());
    add("model", options_.model);
    add("response_format", "json");
    if (!language.empty()) add("language", language);
    std::unique_ptr<curl_slist, SlistDeleter> headers;
    if (!options_.key.empty())
      headers.reset(curl_slist_append(nullptr, ("Authorization: Bearer " + options_.key).c_str()));
    set_common(h.get(), endpoint_, options_.timeout_s);
    curl_easy_setopt(h.get(), CURLOPT_MIMEPOST, mime.get());
    if (headers) curl_easy_setopt(h.get(), CURLOPT_HTTPHEADER, headers.get());
    std::string body;
    curl_easy_setopt(h.get(), CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h.get(), CURLOPT_WRITEDATA, &body);
    const auto t0 = std::chrono::steady_clock::now();
    const CURLcode rc = curl_easy_perform(h.get());
    r.wall_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    long status = 0;
    curl_easy_getinfo(h.get(), CURLINFO_RESPONSE_CODE, &status);
    double retry_after_s = 0;
    if (rc != CURLE_OK) {
      r.unreachable = is_connect_failure(rc);
      r.error_code = rc == CURLE_OPERATION_TIMEDOUT ? "timeout" : "unreachable";
      r.error_message = endpoint_ + ": " + curl_easy_strerror(rc);
      if (!r.unreachable) return r;  // a timeout already took the whole budget: no retry
    } else if (status >= 200 && status < 300) {
      auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
      if (j.is_object() && j.contains("text") && j["text"].is_string()) {
        r.ok = true;
        r.unreachable = false;
        r.text = j["text"].get<std::string>();
        return r;
      }
      r.error_code = "bad_response";
      r.error_message = "answer without a \"text\" string: " + answer_message(body);
      return r;
    } else {
      r.unreachable = false;
      r.error_code = "http_" + std::to_string(status);
      r.error_message = answer_message(body);
      if (status != 429 && status < 500) return r;  // the request itself is refused: no retry
      curl_header* ra = nullptr;
      if (curl_easy_header(h.get(), "Retry-After", 0, CURLH_HEADER, -1, &ra) == CURLHE_OK && ra)
        retry_after_s = std::clamp(std::atof(ra->value), 0.0, 30.0);
    }
    if (attempt == options_.max_retries) break;
    // Exponential backoff 0.5, 1, 2 ... s (at most 8), or the server's Retry-After (at most 30).
    const double wait_s = std::max(retry_after_s, std::min(8.0, 0.5 * double(1 << attempt)));
    std::this_thread::sleep_for(std::chrono::duration<double>(wait_s));
  }
  return r;
}

}  // namespace stepaudio::cli
