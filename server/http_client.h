// Outbound HTTP for hostile URLs (audio_url, webhooks) through libcurl. Each hop's host is
// resolved once, every answer is checked with the AddressPolicy, and libcurl connects to that
// checked address only (CURLOPT_RESOLVE pin + an opensocket check), so DNS rebinding cannot swap
// it. Redirects are followed by hand (at most max_redirects), each re-checked. http/https only,
// proxies from the environment ignored, bytes and wall time capped: reading stops as soon as a cap
// is hit.
// Thread-safety: safe_request may run on any number of threads at once (one curl easy handle per
// call; curl_global_init is done once, thread-safely).
#pragma once

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "net_policy.h"

namespace stepaudio::server {

struct FetchLimits {
  size_t max_bytes = 100u << 20;  // response body cap
  double timeout_s = 60;          // wall time of the whole request, redirects included
  double connect_timeout_s = 10;
  int max_redirects = 3;
};

// code: "invalid_url" (unparsable, not http/https, credentials in URL), "forbidden_url" (an
// address the policy refuses, also after a redirect), "dns_failed", "too_large" (over max_bytes),
// "timeout", "too_many_redirects", "fetch_failed" (connection error, or a non-2xx answer when the
// caller asked for 2xx), "canceled".
class FetchError : public std::runtime_error {
 public:
  FetchError(std::string code, const std::string& message)
      : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

struct OutboundRequest {
  std::string method = "GET";  // GET or POST
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // POST body
};

struct OutboundResponse {
  int status = 0;
  std::string content_type;
  std::string body;
  std::string final_url;  // after redirects
};

// Performs the request. Redirects (301/302/303/307/308) are followed for GET only; a POST
// answered with a redirect returns that answer as is. Throws FetchError. A redirect to another
// origin (scheme, host, port) drops Authorization, Cookie and Proxy-Authorization headers; a method
// other than GET/POST or a header with CR, LF or NUL is FetchError "fetch_failed".
OutboundResponse safe_request(const OutboundRequest& request, const AddressPolicy& policy,
                              const FetchLimits& limits, const std::atomic<bool>* cancel = nullptr);

// GET that requires a 2xx answer (else FetchError "fetch_failed" naming the status).
OutboundResponse fetch_url(const std::string& url, const AddressPolicy& policy,
                           const FetchLimits& limits, const std::atomic<bool>* cancel = nullptr);

}  // namespace stepaudio::server
