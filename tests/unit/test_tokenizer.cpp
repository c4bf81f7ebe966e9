// Tokenizer tests that need no shared data: a tiny in-memory byte-level tokenizer, UTF-8 rules,
// streaming decode, added-token permission, and clear errors for bad files.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <random>
#include <thread>

#include "stepaudio/error.h"
#include "stepaudio/tokenizer.h"
#include "text/utf8.h"
#include "tokenizer_fixtures.h"

using namespace stepaudio;
using text::Tokenizer;
namespace fs = std::filesystem;

namespace {

std::shared_ptr<const Tokenizer> tiny() {
  return test::tiny_tokenizer();
}

// Expects `fn` to throw Error(code) whose message contains every one of `parts`.
template <class Fn>
void expect_error(Fn fn, Errc code, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("sa_tok_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  static int& counter() {
    static int c = 0;
    return c;
  }
};

}  // namespace

TEST(TinyTokenizer, MergesAndAddedTokens) {
  auto tok = tiny();
  auto ids = tok->encode("hello world");
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids[0], *tok->token_id("hello"));
  EXPECT_EQ(ids[1], *tok->token_id("Ġwo"));
  EXPECT_EQ(tok->decode(ids), "hello world");
  EXPECT_EQ(tok->eos_id(), 301);
  EXPECT_EQ(tok->first_non_text_id(), 302);  // <audio_start>, the smallest audio/tts control id
  EXPECT_EQ(tok->vocab_size(), 307u);
  EXPECT_TRUE(tok->is_special(301));
  EXPECT_FALSE(tok->is_added(5));
}

TEST(TinyTokenizer, SpecialTokensMatchOnlyWhenAllowed) {
  auto tok = tiny();
  const std::string s = "hi<|EOT|>there";
  auto plain = tok->encode(s, /*allow_special=*/false);
  for (int32_t id : plain) EXPECT_LT(id, 300) << "user text must not produce added tokens";
  EXPECT_EQ(tok->decode(plain), s);
  auto special = tok->encode(s, /*allow_special=*/true);
  EXPECT_EQ(std::count(special.begin(), special.end(), 301), 1);
  EXPECT_EQ(tok->decode(special), s);
  EXPECT_EQ(tok->decode(special, /*skip_special=*/true), "hithere");
  // Leftmost-longest across the trie: "<audio_patch>" wins over nothing shorter; partial is text.
  auto partial = tok->encode("<audio_pat", true);
  for (int32_t id : partial) EXPECT_LT(id, 300);
}

TEST(TinyTokenizer, PiecesJoinAsOneStringButUserPiecesCannotInject) {
  auto tok = tiny();
  const text::TextPiece pieces[] = {{"a<|EO", false}, {"T|>b", true}};
  auto ids = tok->encode(pieces);
  for (int32_t id : ids) EXPECT_LT(id, 300) << "a token spanning pieces must not match";
  EXPECT_EQ(tok->decode(ids), "a<|EOT|>b");
  // Joining matters: "\n" + "\n" is one pre-token ("\n\n"), same as encoding the joined string.
  const text::TextPiece nl[] = {{"x\n", true}, {"\ny", false}};
  EXPECT_EQ(tok->encode(nl), tok->encode("x\n\ny"));
}

TEST(TinyTokenizer, SplitGenerated) {
  auto tok = tiny();
  const std::vector<int32_t> ids = {5, 301, 302, 304, 7, 306};
  auto s = tok->split_generated(ids);
  EXPECT_EQ(s.text, (std::vector<int32_t>{5, 301, 7}));
  EXPECT_EQ(s.other, (std::vector<int32_t>{302, 304, 306}));
}

TEST(Utf8, InvalidInputThrowsWithOffset) {
  auto tok = tiny();
  // A lone surrogate (U+D800 as CESU bytes), a stray continuation byte, an overlong form, a
  // truncated character: all rejected, never silently replaced.
  for (const std::string& bad : {std::string("ab\xED\xA0\x80"), std::string("ab\x80"),
                                 std::string("ab\xC0\xAF"), std::string("ab\xE4\xBD")})
    expect_error([&] { tok->encode(bad); }, Errc::invalid_argument, {"UTF-8", "offset 2"});
}

TEST(Utf8, LossyRepairUsesMaximalSubparts) {
  std::string out;
  text::append_utf8_lossy(out,
                          "a\xE4\xBD"
                          "b\xFF"
                          "c",
                          false);
  EXPECT_EQ(out,
            "a\xEF\xBF\xBD"
            "b\xEF\xBF\xBD"
            "c");
  out.clear();
  EXPECT_EQ(text::append_utf8_lossy(out, "x\xF0\x9F\x98", true), 3u);
  EXPECT_EQ(out, "x");
}

TEST(Utf8, NfcComposes) {
  EXPECT_EQ(text::nfc("cafe\xCC\x81"), "caf\xC3\xA9");  // e + combining acute -> é
  EXPECT_EQ(text::nfc("plain"), "plain");
  EXPECT_EQ(text::nfc("\xE1\x84\x80\xE1\x85\xA1"), "\xEA\xB0\x80");  // L + V jamo -> 가
  // U+11A7 is not a trailing consonant: 꾜 + U+11A7 must stay as is (utf8proc 2.8 drops it).
  EXPECT_EQ(text::nfc("\xEA\xBE\x9C\xE1\x86\xA7y\xCC\x81"), "\xEA\xBE\x9C\xE1\x86\xA7\xC3\xBD");
  EXPECT_EQ(text::nfc(std::string("a\0b", 3)), std::string("a\0b", 3));
}

TEST(StreamDecoder, HoldsBackIncompleteCharacters) {
  auto tok = tiny();
  // Byte tokens of "你😀": each byte is its own token in the tiny vocab.
  const std::string s = "\xE4\xBD\xA0\xF0\x9F\x98\x80!";
  auto ids = tok->encode(s);
  ASSERT_EQ(ids.size(), s.size());
  text::StreamDecoder dec(*tok);
  std::string got;
  std::vector<std::string> pieces;
  for (int32_t id : ids) {
    pieces.push_back(dec.push(id));
    got += pieces.back();
    EXPECT_TRUE(!text::first_invalid_utf8(got)) << "stream output must stay valid UTF-8";
  }
  got += dec.finish();
  EXPECT_EQ(got, s);
  EXPECT_EQ(pieces[0], "");
  EXPECT_EQ(pieces[2], "\xE4\xBD\xA0");
  // A stream that ends mid-character flushes U+FFFD; the non-stream decode does the same.
  text::StreamDecoder cut(*tok);
  EXPECT_EQ(cut.push(std::span<const int32_t>(ids.data(), 2)), "");
  EXPECT_EQ(cut.pending_bytes(), 2u);
  EXPECT_EQ(cut.finish(), "\xEF\xBF\xBD");
  EXPECT_EQ(tok->decode(std::span<const int32_t>(ids.data(), 2)), "\xEF\xBF\xBD");
}

TEST(TinyTokenizer, RandomUnicodeRoundTrips) {
  auto tok = tiny();
  std::mt19937 rng(1234);
  const std::vector<std::pair<uint32_t, uint32_t>> ranges = {
      {0x20, 0x7E},       {0x00, 0x1F},     {0xA0, 0xFF},     {0x300, 0x36F},  {0x4E00, 0x9FFF},
      {0x1F300, 0x1FAFF}, {0xAC00, 0xD7A3}, {0x1100, 0x11FF}, {0x2000, 0x200F}};
  for (int iter = 0; iter < 300; ++iter) {
    std::string s;
    const int len = static_cast<int>(rng() % 40);
    for (int k = 0; k < len; ++k) {
      const auto& r = ranges[rng() % ranges.size()];
      const uint32_t cp = r.first + rng() % (r.second - r.first + 1);
      if (cp < 0x80) {
        s += static_cast<char>(cp);
      } else if (cp < 0x800) {
        s += static_cast<char>(0xC0 | (cp >> 6)), s += static_cast<char>(0x80 | (cp & 0x3F));
      } else if (cp < 0x10000) {
        s += static_cast<char>(0xE0 | (cp >> 12)),
            s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        s += static_cast<char>(0x80 | (cp & 0x3F));
      } else {
        s += static_cast<char>(0xF0 | (cp >> 18)),
            s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)),
            s += static_cast<char>(0x80 | (cp & 0x3F));
      }
    }
    // NFC changes non-NFC input (combining marks after letters, Hangul jamo), so the round trip
    // reproduces NFC(s), which is s itself whenever s was already NFC.
    EXPECT_EQ(tok->decode(tok->encode(s)), text::nfc(s));
  }
}

TEST(TokenizerFiles, BadFilesGiveClearErrors) {
  TempDir dir;
  auto base = test::tiny_tokenizer_json();
  auto write_and_load = [&](const nlohmann::json& j, const std::string& name) {
    const auto p = dir.path / name;
    test::write_text(p, j.dump());
    return [p] { Tokenizer::load(p.string()); };
  };
  {
    auto j = base;
    j["model"].erase("merges");
    expect_error(write_and_load(j, "no_merges.json"), Errc::tokenizer_format,
                 {"no_merges.json", "merges"});
  }
  {
    test::write_text(dir.path / "broken.json", "{\"model\": {\"vocab\": {\"a\": 1,}");
    expect_error([&] { Tokenizer::load((dir.path / "broken.json").string()); },
                 Errc::tokenizer_format, {"broken.json", "malformed JSON"});
  }
  {
    auto j = base;
    j["model"]["vocab"]["zzz"] = 7;  // id 7 already belongs to a byte symbol
    expect_error(write_and_load(j, "dup.json"), Errc::tokenizer_format,
                 {"dup.json", "duplicate id 7"});
  }
  {
    auto j = base;
    j["added_tokens"].push_back({{"id", 999}, {"content", "he"}, {"special", true}});
    expect_error(write_and_load(j, "clash.json"), Errc::tokenizer_format,
                 {"clash.json", "\"he\"", "collides"});
    j = base;
    j["added_tokens"].push_back({{"id", 65}, {"content", "<x>"}, {"special", true}});
    expect_error(write_and_load(j, "clash2.json"), Errc::tokenizer_format,
                 {"clash2.json", "<x>", "collides"});
  }
  {
    auto j = base;
    j["model"]["merges"].push_back("q zz");
    expect_error(write_and_load(j, "merge.json"), Errc::tokenizer_format,
                 {"merge.json", "not in the vocab"});
  }
  {
    auto j = base;
    j["model"]["type"] = "WordPiece";
    expect_error(write_and_load(j, "wp.json"), Errc::tokenizer_format, {"wp.json", "WordPiece"});
  }
  {
    auto j = base;
    j["model"]["vocab"]["Ġ"] = nullptr;
    expect_error(write_and_load(j, "null_id.json"), Errc::tokenizer_format,
                 {"null_id.json", "non-integer id"});
  }
  expect_error([&] { Tokenizer::load((dir.path / "missing.json").string()); }, Errc::io,
               {"missing.json"});
  // The vocab.json + merges.txt form without its merges.
  const fs::path trio = dir.path / "trio";
  fs::create_directories(trio);
  test::write_text(trio / "vocab.json", base["model"]["vocab"].dump());
  expect_error([&] { Tokenizer::load(trio.string()); }, Errc::tokenizer_format, {"merges.txt"});
  // And a bad merges line.
  test::write_text(trio / "merges.txt", "#version: 0.2\nh e\nthree part line\n");
  expect_error([&] { Tokenizer::load(trio.string()); }, Errc::tokenizer_format,
               {"merges.txt", "merge 1"});
}

TEST(TokenizerFiles, StringAndPairMergesAgree) {
  auto j = test::tiny_tokenizer_json();
  auto pairs = Tokenizer::from_json(j.dump(), "pairs");
  nlohmann::json strings = nlohmann::json::array();
  for (const auto& m : j["model"]["merges"])
    strings.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
  j["model"]["merges"] = strings;
  auto str = Tokenizer::from_json(j.dump(), "strings");
  EXPECT_EQ(pairs->encode("hello world hello"), str->encode("hello world hello"));
}

TEST(TokenizerFiles, TrioFormLoads) {
  TempDir dir;
  auto j = test::tiny_tokenizer_json();
  test::write_text(dir.path / "vocab.json", j["model"]["vocab"].dump());
  std::string merges = "#version: 0.2\n";
  for (const auto& m : j["model"]["merges"])
    merges += m[0].get<std::string>() + " " + m[1].get<std::string>() + "\n";
  test::write_text(dir.path / "merges.txt", merges);
  nlohmann::json added = nlohmann::json::object();
  for (const auto& t : j["added_tokens"]) added[t["content"].get<std::string>()] = t["id"];
  test::write_text(dir.path / "added_tokens.json", added.dump());
  test::write_text(dir.path / "tokenizer_config.json",
                   R"({"added_tokens_decoder": {"301": {"content": "<|EOT|>", "special": true}}})");
  auto trio = Tokenizer::load(dir.path.string());
  auto json = tiny();
  for (const char* s : {"hello world", "<|BOT|>hi<|EOT|>", "  x\n\n y 123"}) {
    EXPECT_EQ(trio->encode(s, true), json->encode(s, true)) << s;
  }
  EXPECT_TRUE(trio->is_special(301));
  EXPECT_FALSE(trio->is_special(300));  // only the config marks specials in this form
  EXPECT_EQ(trio->first_non_text_id(), 302);
}

TEST(TinyTokenizer, ConcurrentEncodeMatchesSerial) {
  auto tok = tiny();
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i)
    texts.push_back("hello world " + std::to_string(i * 7919) + " 你好 héllo\n" +
                    std::string(i % 9, ' '));
  std::vector<std::vector<int32_t>> serial;
  for (const auto& t : texts) serial.push_back(tok->encode(t));
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 5; ++rep)
        for (size_t i = t; i < texts.size(); i += 1 + t)
          if (tok->encode(texts[i]) != serial[i] || tok->decode(serial[i]) != texts[i])
            ++mismatches;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}
