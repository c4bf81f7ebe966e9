// API keys, JWTs and rate limits (auth.h). Signatures and digests come from OpenSSL and cjose;
// this file decides which key may verify which token and what a valid token must claim.
#include "auth.h"

#include <cjose/cjose.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "crypto.h"

namespace stepaudio::server {
namespace {

constexpr const char* kWebhookLabel = "stepaudio-webhook-v1";
constexpr size_t kMaxTokenBytes = 16 * 1024;
constexpr size_t kMaxSubBytes = 256;

std::string sha256_raw(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("EVP_Digest(sha256) failed");
  return std::string(reinterpret_cast<const char*>(md), len);
}

std::string hex_of(const std::string& raw) {
  return to_hex(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot read");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw std::runtime_error(path + ": read error");
  return ss.str();
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v';
}

// One key file into raw digests. Messages name path:line and the reason, never the line's text:
// a typo'd key is still a secret, and these messages end up in logs.
std::vector<std::string> parse_key_file(const std::string& path, const std::string& text) {
  std::vector<std::string> digests;
  std::istringstream in(text);
  std::string line;
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    auto fail = [&](const char* why) {
      return std::runtime_error(path + ":" + std::to_string(line_no) + ": " + why);
    };
    // '#' opens a comment at the start of the line or after whitespace; elsewhere it is part of
    // the key (so keys may contain '#').
    for (size_t i = 0; i < line.size(); ++i) {
      if (line[i] == '#' && (i == 0 || is_space(line[i - 1]))) {
        line.resize(i);
        break;
      }
    }
    size_t b = 0, e = line.size();
    while (b < e && is_space(line[b])) ++b;
    while (e > b && is_space(line[e - 1])) --e;
    std::string_view key(line.data() + b, e - b);
    if (key.empty()) continue;
    for (char c : key) {
      auto u = static_cast<unsigned char>(c);
      if (u <= 0x20 || u == 0x7f) throw fail("key contains whitespace or a control character");
    }
    constexpr std::string_view kPrefix = "sha256:";
    if (key.substr(0, kPrefix.size()) == kPrefix) {
      std::string_view hex = key.substr(kPrefix.size());
      if (hex.size() != 64) throw fail("\"sha256:\" must be followed by 64 hex digits");
      std::string raw(32, '\0');
      for (size_t i = 0; i < 32; ++i) {
        int hi = OPENSSL_hexchar2int(hex[2 * i]), lo = OPENSSL_hexchar2int(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) throw fail("\"sha256:\" must be followed by 64 hex digits");
        raw[i] = static_cast<char>(hi << 4 | lo);
      }
      digests.push_back(std::move(raw));
    } else {
      digests.push_back(sha256_raw(key));
    }
  }
  std::sort(digests.begin(), digests.end());
  digests.erase(std::unique(digests.begin(), digests.end()), digests.end());
  return digests;
}

// (mtime in ns, size) of a file, or false when it cannot be stat'ed.
bool file_stamp(const std::string& path, int64_t* mtime_ns, int64_t* size) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return false;
  *mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  *size = static_cast<int64_t>(st.st_size);
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// KeyRing

KeyRing::KeyRing(std::string path) : path_(std::move(path)) {
  load();
}

void KeyRing::load() {
  // Stat before reading: if the file changes in between, the next maybe_reload sees a newer
  // stamp than the one recorded and reads it again, rather than missing the change.
  int64_t mtime_ns = 0, size = -1;
  if (!file_stamp(path_, &mtime_ns, &size)) throw std::runtime_error(path_ + ": cannot stat");
  std::vector<std::string> digests = parse_key_file(path_, read_file(path_));
  std::unique_lock lock(mu_);
  digests_ = std::move(digests);
  mtime_ns_ = mtime_ns;
  size_ = size;
  last_check_ = std::chrono::steady_clock::now();
}

std::optional<Caller> KeyRing::authenticate(const std::string& key) const {
  if (key.empty()) return std::nullopt;
  const std::string digest = sha256_raw(key);
  bool found = false;
  {
    std::shared_lock lock(mu_);
    // Compare against every digest without stopping at a match, so timing does not reveal which
    // entry (or whether an early one) matched.
    for (const std::string& d : digests_) found |= CRYPTO_memcmp(d.data(), digest.data(), 32) == 0;
  }
  if (!found) return std::nullopt;
  Caller c;
  c.id = "key_" + hex_of(digest).substr(0, 16);
  c.webhook_secret = hmac_sha256_hex(digest, kWebhookLabel);
  return c;
}

bool KeyRing::maybe_reload(std::chrono::milliseconds min_interval) {
  const auto now = std::chrono::steady_clock::now();
  int64_t old_mtime = 0, old_size = -1;
  size_t old_count = 0;
  {
    std::unique_lock lock(mu_);
    if (now - last_check_ < min_interval) return false;
    last_check_ = now;
    old_mtime = mtime_ns_;
    old_size = size_;
    old_count = digests_.size();
  }
  int64_t mtime_ns = 0, size = -1;
  // A deleted (or momentarily missing, mid-rename) file keeps the current keys: revoking every
  // key is done by emptying the file, not by removing it.
  if (!file_stamp(path_, &mtime_ns, &size)) return false;
  if (mtime_ns == old_mtime && size == old_size) return false;
  std::vector<std::string> digests;
  try {
    digests = parse_key_file(path_, read_file(path_));
  } catch (const std::exception& e) {
    // Remember the bad file's stamp so it is reported once, not at every check; fixing the file
    // changes the stamp again.
    std::unique_lock lock(mu_);
    mtime_ns_ = mtime_ns;
    size_ = size;
    std::fprintf(stderr, "stepaudio: key file not reloaded, keeping %zu previous keys: %s\n",
                 old_count, e.what());
    return false;
  }
  std::unique_lock lock(mu_);
  digests_ = std::move(digests);
  mtime_ns_ = mtime_ns;
  size_ = size;
  return true;
}

size_t KeyRing::size() const {
  std::shared_lock lock(mu_);
  return digests_.size();
}

// ---------------------------------------------------------------------------------------------
// JwtVerifier

namespace {

template <auto Release>
struct Releaser {
  template <typename T>
  void operator()(T* p) const {
    Release(p);
  }
};
using JwkPtr = std::unique_ptr<cjose_jwk_t, Releaser<cjose_jwk_release>>;
using JwsPtr = std::unique_ptr<cjose_jws_t, Releaser<cjose_jws_release>>;

struct JwksKey {
  std::string kid;  // "" when the JWK has none
  std::string alg;  // the JWK's optional "alg"; when set, tokens must use exactly it
  JwkPtr jwk;
  cjose_jwk_kty_t kty;
};

// The protected header as JSON, decoded here (not by cjose) so "none" and unknown algorithms are
// refused with a clear reason before cjose sees the token.
std::optional<nlohmann::json> decode_header(const std::string& token) {
  size_t dot = token.find('.');
  if (dot == std::string::npos || dot == 0) return std::nullopt;
  uint8_t* raw = nullptr;
  size_t raw_len = 0;
  cjose_err err;
  if (!cjose_base64url_decode(token.data(), dot, &raw, &raw_len, &err)) return std::nullopt;
  std::string text(reinterpret_cast<const char*>(raw), raw_len);
  cjose_get_dealloc()(raw);
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  return j;
}

bool fail(std::string* why, const char* reason) {
  if (why) *why = reason;
  return false;
}

std::optional<Caller> refuse(std::string* why, const char* reason) {
  fail(why, reason);
  return std::nullopt;
}

}  // namespace

struct JwtVerifier::Impl {
  JwtOptions opt;
  JwkPtr hs_key;              // set when opt.hs256_secret is non-empty
  std::vector<JwksKey> keys;  // from opt.jwks_file
  std::string webhook_key;    // HMAC key for Caller.webhook_secret

  void load_jwks(const std::string& text);
  const JwksKey* find_key(const char* kid, std::string* why) const;
  bool check_claims(const nlohmann::json& c, int64_t now_s, std::string* why) const;
};

void JwtVerifier::Impl::load_jwks(const std::string& text) {
  const std::string& path = opt.jwks_file;
  nlohmann::json doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object() || !doc.contains("keys") || !doc["keys"].is_array())
    throw std::runtime_error(path + ": not a JWKS (want {\"keys\": [...]})");
  for (const nlohmann::json& k : doc["keys"]) {
    if (!k.is_object()) throw std::runtime_error(path + ": a key is not a JSON object");
    std::string kid = k.value("kid", std::string());
    // Keys meant for encryption, or that this server cannot verify with (an oct secret would allow
    // HS256 with a published key; curves other than P-256 are not ES256), are skipped rather
    // than failing the whole set: a provider's JWKS may legitimately carry them.
    const std::string kty = k.value("kty", std::string());
    if (k.value("use", std::string("sig")) != "sig" || (kty != "RSA" && kty != "EC") ||
        (kty == "EC" && k.value("crv", std::string()) != "P-256")) {
      std::fprintf(stderr, "stepaudio: %s: skipping key \"%s\" (not an RSA/P-256 signing key)\n",
                   path.c_str(), kid.c_str());
      continue;
    }
    const std::string json = k.dump();
    cjose_err err;
    JwkPtr jwk(cjose_jwk_import(json.data(), json.size(), &err));
    if (!jwk)
      throw std::runtime_error(path + ": key \"" + kid + "\" rejected by cjose: " + err.message);
    const cjose_jwk_kty_t t = cjose_jwk_get_kty(jwk.get(), &err);
    for (const JwksKey& other : keys)
      if (other.kid == kid) throw std::runtime_error(path + ": duplicate kid \"" + kid + "\"");
    keys.push_back({kid, k.value("alg", std::string()), std::move(jwk), t});
  }
  if (keys.empty()) throw std::runtime_error(path + ": no usable RS256/ES256 key");
}

const JwksKey* JwtVerifier::Impl::find_key(const char* kid, std::string* why) const {
  if (kid == nullptr) {
    // Without a kid the choice is only unambiguous with a single key.
    if (keys.size() == 1) return &keys[0];
    fail(why, "token has no kid");
    return nullptr;
  }
  for (const JwksKey& k : keys)
    if (k.kid == kid) return &k;
  fail(why, "unknown kid");
  return nullptr;
}

bool JwtVerifier::Impl::check_claims(const nlohmann::json& c, int64_t now_s,
                                     std::string* why) const {
  if (!c.is_object()) return fail(why, "malformed claims");
  const double now = static_cast<double>(now_s), leeway = static_cast<double>(opt.leeway_s);
  // exp is required: a token that never expires cannot be revoked by anything we control.
  if (!c.contains("exp") || !c["exp"].is_number()) return fail(why, "missing exp");
  if (now >= c["exp"].get<double>() + leeway) return fail(why, "expired");
  if (c.contains("nbf")) {
    if (!c["nbf"].is_number()) return fail(why, "malformed nbf");
    if (now + leeway < c["nbf"].get<double>()) return fail(why, "not yet valid");
  }
  if (!opt.audience.empty()) {
    bool ok = false;
    if (c.contains("aud")) {
      const nlohmann::json& aud = c["aud"];
      if (aud.is_string()) ok = aud.get<std::string>() == opt.audience;
      if (aud.is_array())
        for (const nlohmann::json& a : aud)
          ok |= a.is_string() && a.get<std::string>() == opt.audience;
    }
    if (!ok) return fail(why, "wrong audience");
  }
  if (!opt.issuer.empty()) {
    if (!c.contains("iss") || !c["iss"].is_string() || c["iss"].get<std::string>() != opt.issuer)
      return fail(why, "wrong issuer");
  }
  if (!c.contains("sub") || !c["sub"].is_string() || c["sub"].get<std::string>().empty())
    return fail(why, "missing sub");
  // sub becomes part of Caller.id, which lands in logs, metrics and storage keys.
  const std::string sub = c["sub"].get<std::string>();
  if (sub.size() > kMaxSubBytes) return fail(why, "sub too long");
  for (char ch : sub)
    if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) return fail(why, "malformed sub");
  return true;
}

JwtVerifier::JwtVerifier(const JwtOptions& options) : impl_(std::make_unique<Impl>()) {
  impl_->opt = options;
  if (options.hs256_secret.empty() && options.jwks_file.empty())
    throw std::runtime_error("JWT verification needs an HS256 secret or a JWKS file");
  std::string jwks_digest;
  if (!options.jwks_file.empty()) {
    const std::string text = read_file(options.jwks_file);
    try {
      impl_->load_jwks(text);
    } catch (const nlohmann::json::exception& e) {  // e.g. a "kid" that is not a string
      throw std::runtime_error(options.jwks_file + ": " + e.what());
    }
    jwks_digest = sha256_raw(text);
  }
  if (!options.hs256_secret.empty()) {
    cjose_err err;
    const std::string& s = options.hs256_secret;
    impl_->hs_key.reset(
        cjose_jwk_create_oct_spec(reinterpret_cast<const uint8_t*>(s.data()), s.size(), &err));
    if (!impl_->hs_key) throw std::runtime_error(std::string("HS256 key: ") + err.message);
  }
  impl_->webhook_key = options.hs256_secret.empty() ? jwks_digest : options.hs256_secret;
}

JwtVerifier::~JwtVerifier() = default;

std::optional<Caller> JwtVerifier::verify(const std::string& token, int64_t now_s,
                                          std::string* why) const {
  const Impl& im = *impl_;
  if (token.size() > kMaxTokenBytes) return refuse(why, "token too large");
  std::optional<nlohmann::json> hdr = decode_header(token);
  if (!hdr) return refuse(why, "malformed token");
  if (!hdr->contains("alg") || !(*hdr)["alg"].is_string()) return refuse(why, "malformed header");
  const std::string alg = (*hdr)["alg"].get<std::string>();
  // We implement no JWS extensions, so RFC 7515 §4.1.11 requires refusing any "crit".
  if (hdr->contains("crit")) return refuse(why, "unsupported crit header");
  // The algorithm decides the key type, never the other way round: an HS256 token is checked
  // only against the configured shared secret, so a public RSA/EC key can never serve as an
  // HMAC secret (the alg-confusion attack); "none" and anything else is refused outright.
  if (!(alg == "HS256" && im.hs_key) && !((alg == "RS256" || alg == "ES256") && !im.keys.empty()))
    return refuse(why, "algorithm not allowed");

  cjose_err err;
  JwsPtr jws(cjose_jws_import(token.data(), token.size(), &err));
  if (!jws) return refuse(why, "malformed token");
  cjose_header_t* protected_hdr = cjose_jws_get_protected(jws.get());
  const char* cj_alg = cjose_header_get(protected_hdr, CJOSE_HDR_ALG, &err);
  // Our header parse and cjose's must agree (e.g. a duplicated "alg" member could be read
  // differently by two JSON parsers); cjose's reading is what it verifies with.
  if (cj_alg == nullptr || alg != cj_alg) return refuse(why, "malformed header");

  const cjose_jwk_t* key = im.hs_key.get();
  if (alg != "HS256") {
    const JwksKey* k = im.find_key(cjose_header_get(protected_hdr, CJOSE_HDR_KID, &err), why);
    if (k == nullptr) return std::nullopt;
    const cjose_jwk_kty_t want = alg == "RS256" ? CJOSE_JWK_KTY_RSA : CJOSE_JWK_KTY_EC;
    if (k->kty != want || (!k->alg.empty() && k->alg != alg))
      return refuse(why, "algorithm does not match key");
    key = k->jwk.get();
  }
  if (!cjose_jws_verify(jws.get(), key, &err)) return refuse(why, "bad signature");

  uint8_t* payload = nullptr;  // owned by jws
  size_t payload_len = 0;
  if (!cjose_jws_get_plaintext(jws.get(), &payload, &payload_len, &err))
    return refuse(why, "malformed token");
  nlohmann::json claims = nlohmann::json::parse(payload, payload + payload_len, nullptr,
                                                /*allow_exceptions=*/false);
  if (!im.check_claims(claims, now_s, why)) return std::nullopt;
  const std::string sub = claims["sub"].get<std::string>();
  Caller c;
  c.id = "jwt_" + sub;
  c.webhook_secret = hmac_sha256_hex(im.webhook_key, std::string(kWebhookLabel) + ":" + sub);
  return c;
}

// ---------------------------------------------------------------------------------------------
// RateLimiter

RateLimiter::RateLimiter(double rate, double burst) : rate_(rate), burst_(std::max(burst, 1.0)) {}

bool RateLimiter::take(const std::string& caller, double now_s, int* retry_after_s) {
  if (rate_ <= 0) return true;
  std::lock_guard lock(mu_);
  // A bucket idle for longer than a full refill is full, exactly like a new one, so dropping it
  // changes no decision; the extra minute avoids churn for callers hovering at the boundary.
  const double idle_limit = burst_ / rate_ + 60;
  if (now_s - last_prune_s_ >= 10) {
    last_prune_s_ = now_s;
    std::erase_if(buckets_, [&](const auto& kv) { return now_s - kv.second.last_s > idle_limit; });
  }
  auto [it, inserted] = buckets_.try_emplace(caller, Bucket{burst_, now_s});
  Bucket& b = it->second;
  if (!inserted && now_s > b.last_s) {
    b.tokens = std::min(burst_, b.tokens + (now_s - b.last_s) * rate_);
    b.last_s = now_s;  // a clock going backwards neither refills nor rewinds the bucket
  }
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return true;
  }
  if (retry_after_s) {
    // The epsilon keeps float noise (e.g. 1.0000000001 s) from adding a whole second.
    const double wait = std::ceil((1 - b.tokens) / rate_ - 1e-9);
    *retry_after_s = static_cast<int>(std::clamp(wait, 1.0, 1e9));
  }
  return false;
}

}  // namespace stepaudio::server
