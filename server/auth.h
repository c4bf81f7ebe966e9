// Who is calling: API keys from a file (DESIGN.md §6: one key per line, the key itself or
// "sha256:<hex>", '#' comments), held only as SHA-256 digests, reloaded when the file changes so
// a key can be revoked without a restart; optional Supabase JWTs (HS256 with a shared secret, or
// RS256/ES256 with keys from a JWKS file) verified with cjose; per-caller token buckets.
// Thread-safety: every class here is safe to use from any number of threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace stepaudio::server {

struct Caller {
  std::string id;              // stable, not secret: "key_" + first 16 hex of the key's SHA-256,
                               // or "jwt_" + the token's `sub`
  std::string webhook_secret;  // hex HMAC-SHA256(key = sha256 digest bytes of the API key,
                               // "stepaudio-webhook-v1"); the caller can compute it from its key
};

class KeyRing {
 public:
  // Reads the file; throws std::runtime_error naming the file and line for a malformed line
  // (e.g. "sha256:" followed by anything but 64 hex digits) or an unreadable file.
  explicit KeyRing(std::string path);
  // The caller for a presented key (constant-time digest comparison), or nullopt.
  std::optional<Caller> authenticate(const std::string& key) const;
  // Re-reads the file if its mtime or size changed (at most once per `min_interval`); a file that
  // became malformed keeps the previous keys (and logs why). Returns true when it reloaded.
  bool maybe_reload(std::chrono::milliseconds min_interval = std::chrono::milliseconds(1000));
  size_t size() const;

 private:
  void load();
  std::string path_;
  mutable std::shared_mutex mu_;
  std::vector<std::string> digests_;  // raw 32-byte SHA-256 of each key
  int64_t mtime_ns_ = 0, size_ = -1;
  std::chrono::steady_clock::time_point last_check_{};
};

struct JwtOptions {
  std::string hs256_secret;  // Supabase's JWT secret (HS256); or:
  std::string jwks_file;     // a JWKS JSON file (RS256 / ES256 keys, matched by "kid")
  std::string audience;      // required "aud" when non-empty (Supabase: "authenticated")
  std::string issuer;        // required "iss" when non-empty
  int64_t leeway_s = 30;     // clock skew allowed on exp / nbf
};

class JwtVerifier {
 public:
  // Throws std::runtime_error for an unreadable/malformed JWKS file or an empty configuration.
  explicit JwtVerifier(const JwtOptions& options);
  ~JwtVerifier();
  // The caller for a valid token (signature, alg in {HS256, RS256, ES256} as configured - never
  // "none" -, exp, nbf, aud, iss), else nullopt with *why set ("expired", "bad signature", ...).
  std::optional<Caller> verify(const std::string& token, int64_t now_s, std::string* why) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Token buckets per caller id: `rate` tokens per second, up to `burst`. rate <= 0: unlimited.
// Takes one token; false when empty, with *retry_after_s = seconds until one is available (>= 1,
// rounded up, for the Retry-After header). Implementations: RateLimiter (this process's
// buckets) and, for several nodes sharing the buckets, make_redis_rate_limit
// (redis_rate_limit.cpp).
class RateLimit {
 public:
  virtual ~RateLimit() = default;
  virtual bool take(const std::string& caller, double now_s, int* retry_after_s) = 0;
};

class RateLimiter final : public RateLimit {
 public:
  RateLimiter(double rate, double burst);
  // Buckets idle for long are dropped (bounded memory).
  bool take(const std::string& caller, double now_s, int* retry_after_s) override;

 private:
  struct Bucket {
    double tokens, last_s;
  };
  double rate_, burst_;
  std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;
  double last_prune_s_ = 0;
  friend struct RateLimiterTestPeer;  // the unit test checks that pruning bounds buckets_
};

}  // namespace stepaudio::server
