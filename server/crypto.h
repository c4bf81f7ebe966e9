// Hashes and MACs the service needs, all through OpenSSL's EVP/HMAC (never hand-rolled), plus a
// random id. Thread-safety: free functions, reentrant; Sha256 is one stream per object.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace stepaudio::server {

std::string to_hex(const unsigned char* data, size_t n);
std::string sha256_hex(std::string_view data);
// Standard base64 (RFC 4648 §4, with padding) through OpenSSL.
std::string encode_base64(std::string_view data);
// Base64 (RFC 4648 §4, or the URL-safe alphabet of §5), padding optional, ASCII whitespace
// skipped; nullopt for any other character, misplaced padding or a truncated final group.
std::optional<std::string> decode_base64(std::string_view text);
// Standard base64 (with padding) of the raw SHA-256: a Content-Security-Policy 'sha256-...' source.
std::string sha256_base64(std::string_view data);
// Raw 32-byte HMAC-SHA256, and its lowercase hex.
std::string hmac_sha256(std::string_view key, std::string_view message);
std::string hmac_sha256_hex(std::string_view key, std::string_view message);
// Constant-time comparison (CRYPTO_memcmp) of two strings; false on length mismatch.
bool constant_time_equal(std::string_view a, std::string_view b);
// n random bytes from RAND_bytes as lowercase hex (2n characters).
std::string random_hex(size_t n_bytes);

// Incremental SHA-256 (the cache key hashes decoded PCM as it is produced).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t n);
  std::string hex_digest();  // finishes the stream; the object then starts a new, empty one

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Webhook signatures (docs/API.md "Webhooks"): the header value
// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>".
std::string webhook_signature_header(std::string_view secret, int64_t unix_seconds,
                                     std::string_view body);
// Verifies such a header against a body within `tolerance_s` of now_s; false otherwise.
bool verify_webhook_signature(std::string_view secret, std::string_view header,
                              std::string_view body, int64_t now_s, int64_t tolerance_s = 300);

}  // namespace stepaudio::server
