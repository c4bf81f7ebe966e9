// server/crypto.h and server/auth.h against independent references: FIPS 180-2 and RFC 4231
// vectors, values computed with Python's hashlib/hmac, and JWTs built by
// tests/unit/data/auth/make_jwt_fixtures.py with the openssl CLI (never by the code under test).
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "server/auth.h"
#include "server/crypto.h"

namespace stepaudio::server {

// Reads RateLimiter's private map size (auth.h befriends this).
struct RateLimiterTestPeer {
  static size_t buckets(RateLimiter& r) {
    std::lock_guard lock(r.mu_);
    return r.buckets_.size();
  }
};

namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

// ---- crypto ---------------------------------------------------------------------------------

TEST(ServerCrypto, Sha256FipsVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 h;  // incremental, and reusable after hex_digest
  h.update("a", 1);
  h.update("bc", 2);
  EXPECT_EQ(h.hex_digest(), sha256_hex("abc"));
  EXPECT_EQ(h.hex_digest(), sha256_hex(""));
}

TEST(ServerCrypto, HmacSha256Rfc4231) {
  EXPECT_EQ(hmac_sha256_hex(std::string(20, '\x0b'), "Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(hmac_sha256_hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  const std::string key6(131, '\xaa');  // longer than a block: hashed first
  const char* msg6 = "Test Using Larger Than Block-Size Key - Hash Key First";
  EXPECT_EQ(hmac_sha256_hex(key6, msg6),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  const std::string raw = hmac_sha256(key6, msg6);
  ASSERT_EQ(raw.size(), 32u);
  EXPECT_EQ(to_hex(reinterpret_cast<const unsigned char*>(raw.data()), raw.size()),
            hmac_sha256_hex(key6, msg6));
  // python3 -c 'import hmac,hashlib; print(hmac.new(b"", b"", hashlib.sha256).hexdigest())'
  EXPECT_EQ(hmac_sha256_hex("", ""),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

TEST(ServerCrypto, ConstantTimeEqualAndRandom) {
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_TRUE(constant_time_equal("", ""));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "abcd"));
  const std::string a = random_hex(16), b = random_hex(16);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(a, b);
}

// python3 -c 'import hmac,hashlib; print(hmac.new(b"whsec_test",
//   b"1750000000." + b"{\"job\":\"j1\",\"status\":\"succeeded\"}", hashlib.sha256).hexdigest())'
constexpr const char* kHookSecret = "whsec_test";
constexpr const char* kHookBody = R"({"job":"j1","status":"succeeded"})";
constexpr const char* kHookMac = "8ae7fdfeef0a65a4786377c41f9f278b44cefbfa17e4b3942b14b9c9fbb2c765";

TEST(ServerCrypto, WebhookSignatureMatchesPython) {
  const std::string header = webhook_signature_header(kHookSecret, 1750000000, kHookBody);
  EXPECT_EQ(header, std::string("t=1750000000,v1=") + kHookMac);
  EXPECT_TRUE(verify_webhook_signature(kHookSecret, header, kHookBody, 1750000000));
  EXPECT_TRUE(verify_webhook_signature(kHookSecret, header, kHookBody, 1750000300));
  EXPECT_TRUE(verify_webhook_signature(kHookSecret, header, kHookBody, 1749999700));
}

TEST(ServerCrypto, WebhookSignatureRejects) {
  const std::string header = webhook_signature_header(kHookSecret, 1750000000, kHookBody);
  const int64_t now = 1750000010;
  std::string tampered = kHookBody;
  tampered[3] = 'X';
  EXPECT_FALSE(verify_webhook_signature(kHookSecret, header, tampered, now));
  EXPECT_FALSE(verify_webhook_signature("whsec_other", header, kHookBody, now));
  EXPECT_FALSE(verify_webhook_signature(kHookSecret, header, kHookBody, 1750000301));  // stale
  EXPECT_FALSE(verify_webhook_signature(kHookSecret, header, kHookBody, 1749999699));  // future
  EXPECT_FALSE(verify_webhook_signature(kHookSecret, header, kHookBody, now, 5));
  const std::string mac = std::string("v1=") + kHookMac;
  EXPECT_FALSE(verify_webhook_signature(kHookSecret, mac, kHookBody, now));  // no t
  EXPECT_FALSE(verify_webhook_signature(kHookSecret, "t=1750000000", kHookBody, now));
  EXPECT_FALSE(verify_webhook_signature(kHookSecret, "t=-5," + mac, kHookBody, now));
  EXPECT_FALSE(
      verify_webhook_signature(kHookSecret, "t=1750000000,t=1750000000," + mac, kHookBody, now));
  EXPECT_FALSE(verify_webhook_signature(kHookSecret, "", kHookBody, now));
  EXPECT_FALSE(verify_webhook_signature(kHookSecret, ",,,=,", kHookBody, now));
}

TEST(ServerCrypto, WebhookSignatureToleratesExtraEntries) {
  // Unknown schemes, several v1 values (secret rotation), spaces and uppercase hex.
  std::string upper = kHookMac;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const std::string header =
      "t=1750000000, v0=abc, v1=" + std::string(64, '0') + ",v1=" + upper + ",scheme=x";
  EXPECT_TRUE(verify_webhook_signature(kHookSecret, header, kHookBody, 1750000000));
}

// ---- KeyRing --------------------------------------------------------------------------------

// python3: d = hashlib.sha256(key).digest(); "key_" + d.hex()[:16];
//          hmac.new(d, b"stepaudio-webhook-v1", hashlib.sha256).hexdigest()
constexpr const char* kAlphaId = "key_38055e9de2389636";
constexpr const char* kAlphaHook =
    "939d563a7ababafb03b956d44ddb94b20330475acb92ef6182c686849b575c73";
constexpr const char* kBetaId = "key_de39db72013b4b0b";  // key "sk_live_beta#1"
constexpr const char* kGammaId = "key_b591dc07baf91cf2";
constexpr const char* kGammaDigestUpper =
    "B591DC07BAF91CF271CDC783FE5C973A129D2105E2D8D7FB6174B4AD38E2CE2B";

class KeyRingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("stepaudio_keyring_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    path_ = (dir_ / "keys.txt").string();
  }
  void TearDown() override { fs::remove_all(dir_); }
  // Writes the file and moves its mtime forward, so a rewrite within one filesystem timestamp
  // tick is still seen as a change.
  void write(const std::string& text) {
    std::ofstream(path_, std::ios::binary | std::ios::trunc) << text;
    fs::last_write_time(path_, fs::file_time_type::clock::now() + std::chrono::seconds(++bumps_));
  }
  fs::path dir_;
  std::string path_;
  int bumps_ = 0;
};

TEST_F(KeyRingTest, PlainHashedAndComments) {
  write(
      "# API keys\n"
      "\n"
      "   sk_live_alpha   \n"
      "sk_live_beta#1   # '#' inside a key is kept; after whitespace it starts a comment\n"
      "\tsha256:" +
      std::string(kGammaDigestUpper) + "\r\n");
  KeyRing ring(path_);
  EXPECT_EQ(ring.size(), 3u);
  auto alpha = ring.authenticate("sk_live_alpha");
  ASSERT_TRUE(alpha);
  EXPECT_EQ(alpha->id, kAlphaId);
  EXPECT_EQ(alpha->webhook_secret, kAlphaHook);
  ASSERT_TRUE(ring.authenticate("sk_live_beta#1"));
  EXPECT_EQ(ring.authenticate("sk_live_beta#1")->id, kBetaId);
  ASSERT_TRUE(ring.authenticate("sk_live_gamma"));
  EXPECT_EQ(ring.authenticate("sk_live_gamma")->id, kGammaId);
  EXPECT_FALSE(ring.authenticate("sk_live_beta"));
  EXPECT_FALSE(ring.authenticate("sk_live_alpha "));
  EXPECT_FALSE(ring.authenticate(""));
  EXPECT_FALSE(ring.authenticate(std::string("sha256:") + kGammaDigestUpper));
}

TEST_F(KeyRingTest, EmptyFileIsValid) {
  write("# nobody yet\n\n");
  KeyRing ring(path_);
  EXPECT_EQ(ring.size(), 0u);
  EXPECT_FALSE(ring.authenticate("sk_live_alpha"));
}

TEST_F(KeyRingTest, MalformedLinesNameFileAndLineButNotTheKey) {
  const std::pair<std::string, std::string> cases[] = {
      {"sk_live_alpha\n\nsha256:abc123secretish\n", ":3:"},
      {"sha256:" + std::string(63, 'a') + "g\n", ":1:"},  // 64 chars, one not hex
      {"# c\nsk_live secretpart\n", ":2:"},               // whitespace inside a key
  };
  for (const auto& [text, where] : cases) {
    write(text);
    try {
      KeyRing ring(path_);
      ADD_FAILURE() << "accepted malformed file";
    } catch (const std::runtime_error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(path_ + where), std::string::npos) << msg;
      EXPECT_EQ(msg.find("secret"), std::string::npos) << msg;
      EXPECT_EQ(msg.find("aaaa"), std::string::npos) << msg;
    }
  }
  EXPECT_THROW(KeyRing((dir_ / "missing.txt").string()), std::runtime_error);
}

TEST_F(KeyRingTest, ReloadRevokesKey) {
  write("sk_live_alpha\nsk_live_beta#1\n");
  KeyRing ring(path_);
  ASSERT_TRUE(ring.authenticate("sk_live_beta#1"));
  write("sk_live_alpha\n");
  EXPECT_FALSE(ring.maybe_reload(std::chrono::hours(1)));  // throttled: just loaded
  EXPECT_TRUE(ring.maybe_reload(milliseconds(0)));
  EXPECT_FALSE(ring.authenticate("sk_live_beta#1"));
  EXPECT_TRUE(ring.authenticate("sk_live_alpha"));
  EXPECT_FALSE(ring.maybe_reload(milliseconds(0)));  // unchanged file
  EXPECT_EQ(ring.size(), 1u);
}

TEST_F(KeyRingTest, MalformedOrDeletedFileKeepsOldKeys) {
  write("sk_live_alpha\n");
  KeyRing ring(path_);
  write("sk_live_gamma\nsha256:nothex_topsecret\n");
  ::testing::internal::CaptureStderr();
  EXPECT_FALSE(ring.maybe_reload(milliseconds(0)));
  EXPECT_FALSE(ring.maybe_reload(milliseconds(0)));  // same bad file: reported once
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_NE(err.find(path_ + ":2:"), std::string::npos) << err;
  EXPECT_EQ(err.find("topsecret"), std::string::npos) << err;
  EXPECT_TRUE(ring.authenticate("sk_live_alpha"));
  EXPECT_FALSE(ring.authenticate("sk_live_gamma"));

  write("sk_live_gamma\n");  // fixed: picked up
  EXPECT_TRUE(ring.maybe_reload(milliseconds(0)));
  EXPECT_TRUE(ring.authenticate("sk_live_gamma"));
  fs::remove(path_);
  EXPECT_FALSE(ring.maybe_reload(milliseconds(0)));
  EXPECT_TRUE(ring.authenticate("sk_live_gamma"));
}

TEST_F(KeyRingTest, ConcurrentAuthenticateAndReload) {
  write("sk_live_alpha\n");
  KeyRing ring(path_);
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < 3; ++i)
    readers.emplace_back([&] {
      while (!stop)
        if (!ring.authenticate("sk_live_alpha")) ++failures;
    });
  for (int i = 0; i < 50; ++i) {
    write(i % 2 ? "sk_live_alpha\n" : "sk_live_alpha\nsk_live_gamma\n");
    ring.maybe_reload(milliseconds(0));
  }
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(failures, 0);
}

// ---- JwtVerifier ----------------------------------------------------------------------------

const std::string kAuthData = std::string(STEPAUDIO_SOURCE_DIR) + "/tests/unit/data/auth/";
constexpr const char* kHsSecret = "test-hs256-secret-0123456789abcdef";  // make_jwt_fixtures.py

class JwtTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::ifstream in(kAuthData + "tokens.json");
    ASSERT_TRUE(in) << "missing fixture " << kAuthData << "tokens.json";
    fixtures_ = nlohmann::json::parse(in);
  }
  static std::string token(const std::string& name) { return fixtures_["tokens"][name]; }
  static std::string expected(const std::string& name) { return fixtures_["expected"][name]; }
  static int64_t now() { return fixtures_["now_s"]; }
  static JwtOptions options(bool hs, const std::string& jwks) {
    JwtOptions o;
    if (hs) o.hs256_secret = kHsSecret;
    if (!jwks.empty()) o.jwks_file = kAuthData + jwks;
    o.audience = "authenticated";
    o.issuer = "https://example.supabase.co/auth/v1";
    return o;
  }
  // The reason a token is refused ("" when accepted).
  static std::string refusal(const JwtVerifier& v, const std::string& tok, int64_t at = 0) {
    std::string why;
    auto c = v.verify(tok, at ? at : now(), &why);
    return c ? "" : why.empty() ? "(no reason)" : why;
  }
  // The token with one character of its signature changed.
  static std::string flip_signature(std::string tok) {
    size_t i = tok.rfind('.') + 5;
    tok[i] = tok[i] == 'A' ? 'B' : 'A';
    return tok;
  }
  static nlohmann::json fixtures_;
};
nlohmann::json JwtTest::fixtures_;

TEST_F(JwtTest, Hs256) {
  JwtVerifier v(options(true, ""));
  std::string why;
  auto c = v.verify(token("hs256_valid"), now(), &why);
  ASSERT_TRUE(c) << why;
  EXPECT_EQ(c->id, "jwt_user-123");
  EXPECT_EQ(c->webhook_secret, expected("webhook_hs256"));
  EXPECT_EQ(refusal(v, token("hs256_aud_array")), "");
  EXPECT_EQ(refusal(v, token("hs256_expired")), "expired");
  EXPECT_EQ(refusal(v, token("hs256_expired"), 1700000000 + 29), "");  // within leeway
  EXPECT_EQ(refusal(v, token("hs256_expired"), 1700000000 + 30), "expired");
  EXPECT_EQ(refusal(v, token("hs256_nbf_future")), "not yet valid");
  EXPECT_EQ(refusal(v, token("hs256_nbf_future"), 4000000000 - 30), "");
  EXPECT_EQ(refusal(v, token("hs256_wrong_aud")), "wrong audience");
  EXPECT_EQ(refusal(v, token("hs256_wrong_iss")), "wrong issuer");
  EXPECT_EQ(refusal(v, token("hs256_no_sub")), "missing sub");
  EXPECT_EQ(refusal(v, token("hs256_no_exp")), "missing exp");
  EXPECT_EQ(refusal(v, token("hs256_wrong_secret")), "bad signature");
  EXPECT_EQ(refusal(v, flip_signature(token("hs256_valid"))), "bad signature");
  // Without aud/iss requirements the wrong values are not checked.
  JwtOptions lax = options(true, "");
  lax.audience.clear();
  lax.issuer.clear();
  EXPECT_EQ(refusal(JwtVerifier(lax), token("hs256_wrong_aud")), "");
}

TEST_F(JwtTest, Hs256VerifierRefusesOtherAlgorithms) {
  JwtVerifier v(options(true, ""));
  EXPECT_EQ(refusal(v, token("alg_none")), "algorithm not allowed");
  EXPECT_EQ(refusal(v, token("rs256_valid")), "algorithm not allowed");
  EXPECT_EQ(refusal(v, token("es256_valid")), "algorithm not allowed");
}

TEST_F(JwtTest, JwksRs256AndEs256) {
  JwtVerifier v(options(false, "jwks.json"));
  for (const char* name : {"rs256_valid", "es256_valid"}) {
    std::string why;
    auto c = v.verify(token(name), now(), &why);
    ASSERT_TRUE(c) << name << ": " << why;
    EXPECT_EQ(c->id, "jwt_user-123");
    EXPECT_EQ(c->webhook_secret, expected("webhook_jwks"));
    EXPECT_EQ(refusal(v, flip_signature(token(name))), "bad signature") << name;
  }
  EXPECT_EQ(refusal(v, token("rs256_no_sub")), "missing sub");
  EXPECT_EQ(refusal(v, token("rs256_unknown_kid")), "unknown kid");
  EXPECT_EQ(refusal(v, token("es256_nokid")), "token has no kid");  // two keys: ambiguous
  EXPECT_EQ(refusal(v, token("rs256_with_ec_kid")), "algorithm does not match key");
  EXPECT_EQ(refusal(v, token("es256_with_rsa_kid")), "algorithm does not match key");
}

TEST_F(JwtTest, JwksRefusesNoneAndAlgConfusion) {
  JwtVerifier v(options(false, "jwks.json"));
  EXPECT_EQ(refusal(v, token("alg_none")), "algorithm not allowed");
  EXPECT_EQ(refusal(v, token("alg_none_kid")), "algorithm not allowed");
  // HS256 keyed with the published RSA public key must never verify against that key.
  EXPECT_EQ(refusal(v, token("hs256_confusion")), "algorithm not allowed");
  EXPECT_EQ(refusal(v, token("hs256_confusion_nokid")), "algorithm not allowed");
  EXPECT_EQ(refusal(v, token("hs256_valid")), "algorithm not allowed");
  // With a secret configured too, an HS256 token is checked against the secret only.
  JwtVerifier both(options(true, "jwks.json"));
  EXPECT_EQ(refusal(both, token("hs256_confusion")), "bad signature");
  EXPECT_EQ(refusal(both, token("hs256_valid")), "");
  EXPECT_EQ(refusal(both, token("rs256_valid")), "");
}

TEST_F(JwtTest, SingleKeyJwksAcceptsTokenWithoutKid) {
  JwtVerifier v(options(false, "jwks_single.json"));
  std::string why;
  auto c = v.verify(token("es256_nokid"), now(), &why);
  ASSERT_TRUE(c) << why;
  EXPECT_EQ(c->webhook_secret, expected("webhook_jwks_single"));
  EXPECT_EQ(refusal(v, token("es256_valid")), "unknown kid");  // kid ec-1 is not in this set
}

TEST_F(JwtTest, MalformedInputs) {
  JwtVerifier v(options(true, "jwks.json"));
  for (const char* t : {"", "abc", "a.b", "..", "...", "e30.e30.", "!!!.e30.x"})
    EXPECT_NE(refusal(v, t), "") << t;
  std::string big = token("hs256_valid");
  big.insert(big.find('.') + 1, std::string(16 * 1024, 'A'));
  EXPECT_EQ(refusal(v, big), "token too large");
  EXPECT_FALSE(v.verify(token("hs256_expired"), now(), nullptr));  // why may be null
}

TEST_F(JwtTest, ConfigurationErrors) {
  EXPECT_THROW(JwtVerifier(JwtOptions{}), std::runtime_error);
  EXPECT_THROW(JwtVerifier(options(false, "does_not_exist.json")), std::runtime_error);
  const fs::path bad = fs::path(::testing::TempDir()) / "stepaudio_bad_jwks.json";
  for (const char* text : {"{", "{\"keys\": 3}", "{\"keys\": []}",
                           "{\"keys\": [{\"kty\": \"RSA\", \"n\": \"!!\", \"e\": \"AQAB\"}]}",
                           "{\"keys\": [{\"kty\": \"RSA\", \"kid\": 7}]}",
                           "{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2VjcmV0\"}]}"}) {
    std::ofstream(bad, std::ios::trunc) << text;
    JwtOptions o;
    o.jwks_file = bad.string();
    EXPECT_THROW(JwtVerifier{o}, std::runtime_error) << text;
  }
  fs::remove(bad);
}

// ---- RateLimiter ----------------------------------------------------------------------------

TEST(ServerRateLimiter, BurstThenRetryAfter) {
  RateLimiter r(/*rate=*/0.1, /*burst=*/2);
  int retry = -1;
  EXPECT_TRUE(r.take("a", 1000, &retry));
  EXPECT_TRUE(r.take("a", 1000, &retry));
  EXPECT_FALSE(r.take("a", 1000, &retry));
  EXPECT_EQ(retry, 10);  // one token at 0.1/s
  EXPECT_FALSE(r.take("a", 1005, &retry));
  EXPECT_EQ(retry, 5);
  EXPECT_TRUE(r.take("b", 1005, &retry));  // callers are independent
  EXPECT_TRUE(r.take("a", 1010, &retry));
  EXPECT_FALSE(r.take("a", 1010, &retry));
  EXPECT_EQ(retry, 10);

  RateLimiter fast(2, 3);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(fast.take("a", 50, &retry));
  EXPECT_FALSE(fast.take("a", 50, &retry));
  EXPECT_EQ(retry, 1);  // 0.5 s rounds up, and never below 1
}

TEST(ServerRateLimiter, RefillsOverTime) {
  RateLimiter r(1, 5);
  int retry = 0;
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(r.take("a", 0, &retry));
  EXPECT_FALSE(r.take("a", 0, &retry));
  EXPECT_TRUE(r.take("a", 2.5, &retry));
  EXPECT_TRUE(r.take("a", 2.5, &retry));
  EXPECT_FALSE(r.take("a", 2.5, &retry));
  EXPECT_EQ(retry, 1);
  EXPECT_FALSE(r.take("a", 1.0, &retry));  // clock going backwards: no refill
  int ok = 0;
  for (int i = 0; i < 10; ++i) ok += r.take("a", 1000, &retry);
  EXPECT_EQ(ok, 5);  // refill caps at burst
  RateLimiter unlimited(0, 0);
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(unlimited.take("a", 0, &retry));
}

TEST(ServerRateLimiter, PruningBoundsMemory) {
  RateLimiter r(1, 5);  // a bucket may be dropped after 5 s + 60 s idle
  int retry = 0;
  size_t peak = 0;
  // 100k distinct callers, 100 new ones per simulated second.
  for (int i = 0; i < 100000; ++i) {
    ASSERT_TRUE(r.take("caller-" + std::to_string(i), i / 100.0, &retry));
    peak = std::max(peak, RateLimiterTestPeer::buckets(r));
  }
  EXPECT_LE(peak, 100u * (65 + 10 + 1));  // idle limit + prune period, per second of callers
  // A caller returning after its bucket was dropped starts full again, as it would have anyway.
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(r.take("caller-0", 2000, &retry));
  EXPECT_FALSE(r.take("caller-0", 2000, &retry));
}

}  // namespace
}  // namespace stepaudio::server
