// Hashes, MACs and webhook signatures (crypto.h). Every primitive comes from OpenSSL; this file
// only adapts it to strings and parses the webhook header.
#include "crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <charconv>
#include <optional>
#include <stdexcept>
#include <vector>

namespace stepaudio::server {
namespace {

struct MdCtxFree {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

// OpenSSL treats a null key pointer as "reuse the previous key" in some paths, and an empty
// string_view may carry a null data(); always hand it a real (possibly empty) buffer.
const unsigned char* bytes_of(std::string_view s) {
  static const unsigned char kEmpty[1] = {0};
  return s.empty() ? kEmpty : reinterpret_cast<const unsigned char*>(s.data());
}

std::string_view trim_spaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Strict unsigned decimal: no sign, no spaces, no trailing junk, no overflow.
bool parse_timestamp(std::string_view s, int64_t* out) {
  if (s.empty() || s.size() > 19) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace

std::string to_hex(const unsigned char* data, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out(2 * n, '\0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 0xf];
  }
  return out;
}

std::string sha256_hex(std::string_view data) {
  Sha256 h;
  h.update(data.data(), data.size());
  return h.hex_digest();
}

std::string hmac_sha256(std::string_view key, std::string_view message) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), bytes_of(key), static_cast<int>(key.size()), bytes_of(message),
           message.size(), mac, &len) == nullptr)
    throw std::runtime_error("HMAC-SHA256 failed");
  return std::string(reinterpret_cast<const char*>(mac), len);
}

std::string hmac_sha256_hex(std::string_view key, std::string_view message) {
  std::string mac = hmac_sha256(key, message);
  return to_hex(reinterpret_cast<const unsigned char*>(mac.data()), mac.size());
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  // The length is not secret (digests and MACs have fixed sizes); the contents are.
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(bytes_of(a), bytes_of(b), a.size()) == 0;
}

std::string random_hex(size_t n_bytes) {
  std::vector<unsigned char> buf(n_bytes);
  if (n_bytes > 0 && RAND_bytes(buf.data(), static_cast<int>(n_bytes)) != 1)
    throw std::runtime_error("RAND_bytes failed");
  return to_hex(buf.data(), buf.size());
}

struct Sha256::Impl {
  MdCtxPtr ctx{EVP_MD_CTX_new()};
  void init() {
    if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
      throw std::runtime_error("EVP_DigestInit_ex(sha256) failed");
  }
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  impl_->init();
}
Sha256::~Sha256() = default;

void Sha256::update(const void* data, size_t n) {
  if (n == 0) return;
  if (EVP_DigestUpdate(impl_->ctx.get(), data, n) != 1)
    throw std::runtime_error("EVP_DigestUpdate failed");
}

std::string encode_base64(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');  // EVP_EncodeBlock writes a final NUL
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes_of(data),
                                int(data.size()));
  out.resize(size_t(n));
  return out;
}

std::string sha256_base64(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(bytes_of(data), data.size(), md, &len, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("EVP_Digest(sha256) failed");
  return encode_base64(std::string_view(reinterpret_cast<const char*>(md), len));
}

std::optional<std::string> decode_base64(std::string_view text) {
  // OpenSSL decodes; this pass only normalizes what EVP_DecodeBlock does not accept (whitespace,
  // the URL-safe alphabet, missing padding) and refuses what it would decode silently (data after
  // '=', a lone final symbol, padding that does not complete the group).
  std::string clean;
  clean.reserve(text.size() + 3);
  size_t padding = 0;
  for (char c : text) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') {
      ++padding;
      continue;
    }
    const bool symbol = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                        (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '-' || c == '_';
    if (!symbol || padding) return std::nullopt;
    clean += c == '-' ? '+' : c == '_' ? '/' : c;
  }
  const size_t symbols = clean.size();
  if (symbols % 4 == 1 || padding > 2 || (padding && (symbols + padding) % 4 != 0))
    return std::nullopt;
  const size_t missing = (4 - symbols % 4) % 4;
  clean.append(missing, '=');
  std::string out(clean.size() / 4 * 3, '\0');
  const int n =
      EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(clean.data()), int(clean.size()));
  if (n < 0) return std::nullopt;
  out.resize(size_t(n) - missing);  // EVP_DecodeBlock counts the bytes of '=' as zeros
  return out;
}

std::string Sha256::hex_digest() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(impl_->ctx.get(), md, &len) != 1)
    throw std::runtime_error("EVP_DigestFinal_ex failed");
  impl_->init();  // a finished context cannot be updated; start a fresh, empty stream
  return to_hex(md, len);
}

std::string webhook_signature_header(std::string_view secret, int64_t unix_seconds,
                                     std::string_view body) {
  std::string t = std::to_string(unix_seconds);
  std::string signed_payload = t + "." + std::string(body);
  return "t=" + t + ",v1=" + hmac_sha256_hex(secret, signed_payload);
}

bool verify_webhook_signature(std::string_view secret, std::string_view header,
                              std::string_view body, int64_t now_s, int64_t tolerance_s) {
  // Entries are "k=v" separated by commas. Unknown keys are skipped so a future scheme (v2=...)
  // can be sent alongside v1; several v1 entries let a sender sign with old and new secrets
  // during a rotation.
  std::string_view t_text;
  bool have_t = false;
  std::vector<std::string_view> v1s;
  while (true) {
    size_t comma = header.find(',');
    std::string_view entry = trim_spaces(header.substr(0, comma));
    size_t eq = entry.find('=');
    if (eq != std::string_view::npos) {
      std::string_view k = entry.substr(0, eq), v = entry.substr(eq + 1);
      if (k == "t") {
        if (have_t) return false;  // two timestamps: ambiguous which one was signed
        have_t = true;
        t_text = v;
      } else if (k == "v1") {
        v1s.push_back(v);
      }
    }
    if (comma == std::string_view::npos) break;
    header.remove_prefix(comma + 1);
  }
  int64_t t = 0;
  if (!have_t || v1s.empty() || !parse_timestamp(t_text, &t) || tolerance_s < 0) return false;
  // 128-bit difference: neither side can overflow whatever now_s the caller passes.
  __int128 diff = static_cast<__int128>(now_s) - t;
  if (diff < 0) diff = -diff;
  if (diff > tolerance_s) return false;

  // Sign the exact timestamp text received: re-formatting it could differ (leading zeros).
  std::string expected = hmac_sha256_hex(secret, std::string(t_text) + "." + std::string(body));
  bool ok = false;
  for (std::string_view v : v1s) {
    // Lowercasing the candidate touches only attacker-supplied bytes, so it leaks nothing.
    std::string cand(v);
    for (char& c : cand)
      if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
    ok |= constant_time_equal(expected, cand);  // no early exit across candidates
  }
  return ok;
}

}  // namespace stepaudio::server
