// safe_request / fetch_url (http_client.h): libcurl with every door to internal networks shut.
// One hop = parse the URL (CURLU, the same parser curl itself uses, so we judge exactly what curl
// will fetch), resolve the host ourselves, refuse the hop if any answer is refused, then make curl
// connect to the first answer only (CURLOPT_RESOLVE) and re-check the socket address it is about
// to connect to (opensocket callback). Redirects are hops of their own.
#include "http_client.h"

#include <curl/curl.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>

namespace stepaudio::server {
namespace {

using Clock = std::chrono::steady_clock;

// A transfer slower than this for this long is treated as a timeout: a trickling server must not
// hold a worker for the whole wall budget when the budget is generous.
constexpr long kLowSpeedBytesPerS = 1024;
constexpr long kLowSpeedTimeS = 30;

struct EasyDeleter {
  void operator()(CURL* h) const { curl_easy_cleanup(h); }
};
struct UrlDeleter {
  void operator()(CURLU* h) const { curl_url_cleanup(h); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
struct CurlStrDeleter {
  void operator()(char* s) const { curl_free(s); }
};
struct AddrinfoDeleter {
  void operator()(addrinfo* a) const { freeaddrinfo(a); }
};
using EasyPtr = std::unique_ptr<CURL, EasyDeleter>;
using UrlPtr = std::unique_ptr<CURLU, UrlDeleter>;
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

void ensure_curl_global_init() {
  static std::once_flag once;
  // curl_global_init is not thread-safe and must run once before any handle exists.
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      throw FetchError("fetch_failed", "curl_global_init failed");  // call_once retries later
  });
}

// Appends one header line; slist_append copies the string. Throws on allocation failure.
void append_header(SlistPtr& list, const std::string& line) {
  curl_slist* next = curl_slist_append(list.get(), line.c_str());
  if (!next) throw FetchError("fetch_failed", "out of memory");
  list.release();  // `next` now owns the old nodes
  list.reset(next);
}

// A URL part, or "" when absent.
std::string url_part(CURLU* url, CURLUPart part, unsigned flags = 0) {
  char* raw = nullptr;
  if (curl_url_get(url, part, &raw, flags) != CURLUE_OK || !raw) return "";
  std::unique_ptr<char, CurlStrDeleter> owned(raw);
  return raw;
}

struct Target {
  UrlPtr url;
  std::string text;    // normalized URL
  std::string scheme;  // "http" or "https"
  std::string host;    // without IPv6 brackets
  std::string port;
};

// Validates an already-set CURLU: http/https, no credentials, no IPv6 zone.
Target check_target(UrlPtr url) {
  Target t;
  t.text = url_part(url.get(), CURLUPART_URL);
  t.scheme = url_part(url.get(), CURLUPART_SCHEME);
  if (t.scheme != "http" && t.scheme != "https")
    throw FetchError("invalid_url", "only http and https URLs are allowed: " + t.text);
  // Credentials would be sent to whichever host the URL names (also after a redirect).
  char* raw = nullptr;
  for (CURLUPart part : {CURLUPART_USER, CURLUPART_PASSWORD}) {
    if (curl_url_get(url.get(), part, &raw, 0) == CURLUE_OK) {
      curl_free(raw);
      throw FetchError("invalid_url", "credentials in URL are not allowed");
    }
  }
  if (!url_part(url.get(), CURLUPART_ZONEID).empty())
    throw FetchError("invalid_url", "IPv6 zone ids are not allowed in URLs");
  t.host = url_part(url.get(), CURLUPART_HOST);
  if (t.host.size() >= 2 && t.host.front() == '[' && t.host.back() == ']')
    t.host = t.host.substr(1, t.host.size() - 2);
  t.port = url_part(url.get(), CURLUPART_PORT, CURLU_DEFAULT_PORT);
  if (t.host.empty() || t.port.empty()) throw FetchError("invalid_url", "URL without host");
  t.url = std::move(url);
  return t;
}

// `base` non-null: `text` may be relative to it (a Location header).
Target parse_target(const std::string& text, CURLU* base) {
  UrlPtr url(base ? curl_url_dup(base) : curl_url());
  if (!url) throw FetchError("fetch_failed", "out of memory");
  const CURLUcode rc = curl_url_set(url.get(), CURLUPART_URL, text.c_str(), 0);
  if (rc != CURLUE_OK)
    throw FetchError("invalid_url", "bad URL '" + text + "': " + curl_url_strerror(rc));
  return check_target(std::move(url));
}

// Resolves the host, checks every answer, returns the numeric address to pin.
std::string resolve_checked(const Target& t, const AddressPolicy& policy, bool* is_v6) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* raw = nullptr;
  const int rc = getaddrinfo(t.host.c_str(), nullptr, &hints, &raw);
  std::unique_ptr<addrinfo, AddrinfoDeleter> answers(raw);
  if (rc != 0 || !raw)
    throw FetchError("dns_failed", "cannot resolve " + t.host + ": " + gai_strerror(rc));
  // All answers, not just the one we use: a name that maps to anything internal is hostile.
  for (const addrinfo* a = raw; a; a = a->ai_next) {
    const std::string why = policy.refusal(a->ai_addr);
    if (!why.empty()) throw FetchError("forbidden_url", t.host + ": " + why);
  }
  char buf[NI_MAXHOST] = {};
  if (getnameinfo(raw->ai_addr, raw->ai_addrlen, buf, sizeof buf, nullptr, 0, NI_NUMERICHOST))
    throw FetchError("dns_failed", "cannot format the address of " + t.host);
  *is_v6 = raw->ai_family == AF_INET6;
  return buf;
}

// State shared with curl's callbacks for one hop.
struct Transfer {
  const AddressPolicy* policy = nullptr;
  const std::atomic<bool>* cancel = nullptr;
  size_t max_bytes = 0;
  std::string body;
  // Set by a callback that aborted the transfer; wins over curl's own error code.
  std::string abort_code, abort_message;

  bool canceled() const { return cancel && cancel->load(std::memory_order_relaxed); }
  void abort(const char* code, const std::string& message) {
    if (!abort_code.empty()) return;  // the first reason is the real one
    abort_code = code;
    abort_message = message;
  }
};

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t len = size * n;
  if (t->canceled()) {
    t->abort("canceled", "request canceled");
    return 0;  // any count other than len makes curl stop with CURLE_WRITE_ERROR
  }
  if (len > t->max_bytes - t->body.size()) {
    t->abort("too_large", "response body over " + std::to_string(t->max_bytes) + " bytes");
    return 0;
  }
  t->body.append(data, len);
  return len;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (!t->canceled()) return 0;
  t->abort("canceled", "request canceled");
  return 1;
}

// Defense in depth: the pin should make this the checked address, but if curl ever picked
// another one (a pin that did not match, a future curl change), it is checked again here.
curl_socket_t on_open_socket(void* user, curlsocktype, curl_sockaddr* addr) {
  auto* t = static_cast<Transfer*>(user);
  const std::string why = t->policy->refusal(&addr->addr);
  if (!why.empty()) {
    t->abort("forbidden_url", why);
    return CURL_SOCKET_BAD;
  }
  return socket(addr->family, addr->socktype, addr->protocol);
}

std::string response_header(CURL* h, const char* name) {
  curl_header* out = nullptr;
  if (curl_easy_header(h, name, 0, CURLH_HEADER, -1, &out) != CURLHE_OK || !out) return "";
  return out->value;
}

struct HopResult {
  int status = 0;
  std::string content_type, location, body;
};

#define SET(option, value)                                                     \
  do {                                                                         \
    if (curl_easy_setopt(h, option, value) != CURLE_OK)                        \
      throw FetchError("fetch_failed", "curl_easy_setopt " #option " failed"); \
  } while (0)

// One request to `t`, no redirect following, finished by `deadline`.
HopResult perform_hop(const Target& t, const OutboundRequest& request, const AddressPolicy& policy,
                      const FetchLimits& limits, Clock::time_point deadline,
                      const std::atomic<bool>* cancel) {
  bool is_v6 = false;
  const std::string address = resolve_checked(t, policy, &is_v6);
  // Measured after the lookup, which has no timeout of its own, so it counts against the budget.
  const double remaining_s = std::chrono::duration<double>(deadline - Clock::now()).count();
  if (remaining_s <= 0) throw FetchError("timeout", "time budget spent before " + t.text);

  EasyPtr easy(curl_easy_init());
  if (!easy) throw FetchError("fetch_failed", "curl_easy_init failed");
  CURL* h = easy.get();
  Transfer transfer;
  transfer.policy = &policy;
  transfer.cancel = cancel;
  transfer.max_bytes = limits.max_bytes;
  char errbuf[CURL_ERROR_SIZE] = {};

  // An IPv6 literal host is connected to as is (no name lookup to pin, and curl's RESOLVE syntax
  // has no room for it); the opensocket check still applies.
  SlistPtr resolve;
  if (t.host.find(':') == std::string::npos)
    append_header(resolve, t.host + ":" + t.port + ":" + (is_v6 ? "[" + address + "]" : address));
  SlistPtr headers;
  for (const auto& [name, value] : request.headers) {
    // CR/LF would let a value smuggle extra headers or a second request; NUL would cut it short.
    if ((name + value).find_first_of(std::string("\r\n\0", 3)) != std::string::npos || name.empty())
      throw FetchError("fetch_failed", "bad request header '" + name + "'");
    append_header(headers, name + ": " + value);
  }
  append_header(headers, "Expect:");  // no 100-continue round trip for POST bodies

  SET(CURLOPT_CURLU, t.url.get());
  SET(CURLOPT_RESOLVE, resolve.get());
  SET(CURLOPT_HTTPHEADER, headers.get());
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_FOLLOWLOCATION, 0L);
  SET(CURLOPT_PROXY, "");     // never a proxy from http_proxy / ALL_PROXY...
  SET(CURLOPT_NOPROXY, "*");  // ...whatever the environment says
  SET(CURLOPT_NOSIGNAL, 1L);  // worker threads: no SIGALRM for timeouts
  SET(CURLOPT_ERRORBUFFER, errbuf);
  const long total_ms = std::max(1L, static_cast<long>(remaining_s * 1000));
  SET(CURLOPT_TIMEOUT_MS, total_ms);
  SET(CURLOPT_CONNECTTIMEOUT_MS,
      std::min(total_ms, std::max(1L, static_cast<long>(limits.connect_timeout_s * 1000))));
  SET(CURLOPT_LOW_SPEED_LIMIT, kLowSpeedBytesPerS);
  SET(CURLOPT_LOW_SPEED_TIME, kLowSpeedTimeS);
  // Refuses early when Content-Length already says too much; the write callback covers the rest.
  SET(CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(limits.max_bytes));
  SET(CURLOPT_WRITEFUNCTION, on_body);
  SET(CURLOPT_WRITEDATA, &transfer);
  SET(CURLOPT_NOPROGRESS, 0L);
  SET(CURLOPT_XFERINFOFUNCTION, on_progress);
  SET(CURLOPT_XFERINFODATA, &transfer);
  SET(CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
  SET(CURLOPT_OPENSOCKETDATA, &transfer);
  if (request.method == "POST") {
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_POSTFIELDS, request.body.data());
    SET(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
  } else {
    SET(CURLOPT_HTTPGET, 1L);
  }

  const CURLcode rc = curl_easy_perform(h);
  if (!transfer.abort_code.empty()) throw FetchError(transfer.abort_code, transfer.abort_message);
  if (rc != CURLE_OK) {
    const std::string what = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    if (rc == CURLE_OPERATION_TIMEDOUT) throw FetchError("timeout", what);
    if (rc == CURLE_FILESIZE_EXCEEDED) throw FetchError("too_large", what);
    if (rc == CURLE_ABORTED_BY_CALLBACK) throw FetchError("canceled", what);
    throw FetchError("fetch_failed", what);
  }
  HopResult out;
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  out.status = static_cast<int>(status);
  out.content_type = response_header(h, "Content-Type");
  out.location = response_header(h, "Location");
  out.body = std::move(transfer.body);
  return out;
}

#undef SET

// Credentials the caller meant for one origin must not follow a redirect to another one (what
// curl and browsers do too).
void drop_credentials(std::vector<std::pair<std::string, std::string>>* headers) {
  std::erase_if(*headers, [](const auto& h) {
    std::string name = h.first;
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return name == "authorization" || name == "cookie" || name == "proxy-authorization";
  });
}

bool same_origin(const Target& a, const Target& b) {
  return a.scheme == b.scheme && a.host == b.host && a.port == b.port;
}

bool is_redirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

}  // namespace

OutboundResponse safe_request(const OutboundRequest& request, const AddressPolicy& policy,
                              const FetchLimits& limits, const std::atomic<bool>* cancel) {
  if (request.method != "GET" && request.method != "POST")
    throw FetchError("fetch_failed", "unsupported method " + request.method);
  ensure_curl_global_init();
  const Clock::time_point deadline =
      Clock::now() +
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(limits.timeout_s));
  Target target = parse_target(request.url, nullptr);
  OutboundRequest hop_request = request;  // headers may lose credentials along the way
  for (int redirects = 0;; ++redirects) {
    if (cancel && cancel->load()) throw FetchError("canceled", "request canceled");
    HopResult hop = perform_hop(target, hop_request, policy, limits, deadline, cancel);
    // POST answers come back as they are: re-sending a body to another URL is the caller's call.
    if (request.method != "GET" || !is_redirect(hop.status) || hop.location.empty()) {
      return OutboundResponse{hop.status, std::move(hop.content_type), std::move(hop.body),
                              std::move(target.text)};
    }
    if (redirects >= limits.max_redirects)
      throw FetchError("too_many_redirects",
                       "more than " + std::to_string(limits.max_redirects) + " redirects");
    Target next = parse_target(hop.location, target.url.get());  // relative Location resolves
    if (!same_origin(target, next)) drop_credentials(&hop_request.headers);
    target = std::move(next);
  }
}

OutboundResponse fetch_url(const std::string& url, const AddressPolicy& policy,
                           const FetchLimits& limits, const std::atomic<bool>* cancel) {
  OutboundRequest request;
  request.url = url;
  OutboundResponse response = safe_request(request, policy, limits, cancel);
  if (response.status < 200 || response.status > 299)
    throw FetchError("fetch_failed", "HTTP status " + std::to_string(response.status) + " from " +
                                         response.final_url);
  return response;
}

}  // namespace stepaudio::server
