// Tokenizer tests against the real Qwen2 BPE in ../shared/data (skipped when absent): the golden
// vectors, round trips over random Unicode and the manifest transcripts, and agreement between the
// tokenizer.json path and the vocab.json + merges.txt path.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <random>

#include "stepaudio/error.h"
#include "stepaudio/tokenizer.h"
#include "text/utf8.h"
#include "tokenizer_fixtures.h"

using namespace stepaudio;
using text::Tokenizer;

namespace {

std::shared_ptr<const Tokenizer> qwen_trio() {
  static auto tok = Tokenizer::load((test::shared_data() / "tokenizer/qwen2_base").string());
  return tok;
}
std::shared_ptr<const Tokenizer> qwen_json() {
  static auto tok = Tokenizer::load(test::reference_tokenizer_json_path());
  return tok;
}

std::vector<std::string> manifest_transcripts() {
  std::vector<std::string> out;
  std::ifstream in(test::shared_data() / "manifest.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line);
    if (j.contains("reference") && j["reference"].is_string()) out.push_back(j["reference"]);
  }
  return out;
}

void append_cp(std::string& s, uint32_t cp) {
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6)), s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12)), s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18)), s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)), s += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Random strings mixing ASCII words, digits, whitespace runs, control characters, Latin-1,
// combining marks, CJK, Hangul, emoji (with skin-tone modifiers and ZWJ) and apostrophes.
std::vector<std::string> random_strings(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  const std::vector<std::pair<uint32_t, uint32_t>> ranges = {
      {'a', 'z'},         {'A', 'Z'},       {'0', '9'},       {' ', ' '},       {'\n', '\n'},
      {'\t', '\r'},       {0x00, 0x1F},     {0x21, 0x2F},     {0xA0, 0xFF},     {0x300, 0x36F},
      {0x4E00, 0x9FFF},   {0x3000, 0x303F}, {0xFF01, 0xFF5E}, {0xAC00, 0xD7A3}, {0x1F300, 0x1F64F},
      {0x1F3FB, 0x1F3FF}, {0x200D, 0x200D}, {0x0400, 0x04FF}, {0x0600, 0x06FF}, {'\'', '\''}};
  std::vector<std::string> out;
  for (size_t i = 0; i < count; ++i) {
    std::string s;
    const int len = static_cast<int>(rng() % 60);
    for (int k = 0; k < len; ++k) {
      const auto& r = ranges[rng() % ranges.size()];
      const uint32_t run = 1 + rng() % 4;
      for (uint32_t t = 0; t < run; ++t) append_cp(s, r.first + rng() % (r.second - r.first + 1));
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace

TEST(QwenTokenizer, GoldenEncodings) {
  SKIP_WITHOUT_SHARED_DATA();
  std::ifstream in(test::shared_data() / "tokenizer/qwen2_base/golden_encodings.json");
  const auto golden = nlohmann::json::parse(in);
  ASSERT_GE(golden["cases"].size(), 20u);
  for (const auto& tok : {qwen_trio(), qwen_json()}) {
    for (const auto& c : golden["cases"]) {
      const std::string text = c["text"];
      const auto expected = c["ids"].get<std::vector<int32_t>>();
      EXPECT_EQ(tok->encode(text), expected) << tok->source() << ": " << text;
      EXPECT_EQ(tok->decode(expected), c["decoded"].get<std::string>()) << text;
    }
  }
}

TEST(QwenTokenizer, KnownIds) {
  SKIP_WITHOUT_SHARED_DATA();
  auto tok = qwen_trio();
  EXPECT_EQ(tok->token_id("Hello"), 9707);
  EXPECT_EQ(tok->token_id("Ġworld"), 1879);
  EXPECT_EQ(tok->encode("system"), (std::vector<int32_t>{8948}));
  EXPECT_EQ(tok->encode("human\n"), (std::vector<int32_t>{25312, 198}));
  EXPECT_EQ(tok->first_non_text_id(), 151643);  // no audio control tokens in the base BPE
}

TEST(QwenTokenizer, RoundTripsRandomUnicodeAndTranscripts) {
  SKIP_WITHOUT_SHARED_DATA();
  auto tok = qwen_json();
  auto texts = random_strings(400, 42);
  for (auto& t : manifest_transcripts()) texts.push_back(t);
  texts.push_back(std::string(1000, ' '));
  texts.push_back("\n\n\r\n \t\t  \n   x  ");
  texts.push_back("3.14159265358979 1,000,000 0x7f 12345678901234567890");
  for (const auto& s : texts) {
    // Round trip gives NFC(s): non-NFC input (a combining mark after a letter) comes back composed.
    const auto ids = tok->encode(s);
    EXPECT_EQ(tok->decode(ids), text::nfc(s)) << s;
    // Streaming decode yields the same text piece by piece.
    text::StreamDecoder dec(*tok);
    std::string streamed;
    for (int32_t id : ids) streamed += dec.push(id);
    streamed += dec.finish();
    EXPECT_EQ(streamed, text::nfc(s));
  }
}

TEST(QwenTokenizer, JsonAndVocabMergesPathsAgree) {
  SKIP_WITHOUT_SHARED_DATA();
  auto a = qwen_json(), b = qwen_trio();
  auto texts = random_strings(300, 7);
  for (auto& t : manifest_transcripts()) texts.push_back(t);
  for (const auto& s : texts) EXPECT_EQ(a->encode(s), b->encode(s)) << s;
  // Added tokens aside: the Qwen3 file has its own (151643+), the trio has none.
  EXPECT_EQ(a->token_id("<|im_start|>"), 151644);
  EXPECT_EQ(a->encode("<|im_start|>x", true).front(), 151644);
  EXPECT_NE(a->encode("<|im_start|>x", false).front(), 151644);
  EXPECT_TRUE(a->is_special(151643));
  EXPECT_FALSE(a->is_special(151667));  // <think> is added but not special in this file
  EXPECT_EQ(a->vocab_size(), 151669u);
}

TEST(QwenTokenizer, LoadsFullTokenizerJsonQuickly) {
  SKIP_WITHOUT_SHARED_DATA();
  const auto path = test::reference_tokenizer_json_path();
  const auto t0 = std::chrono::steady_clock::now();
  auto tok = Tokenizer::load(path);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(s, 3.0) << "generous bound for sanitizer/debug builds; Release is ~0.3 s";
  EXPECT_EQ(tok->encode("Hello world"), (std::vector<int32_t>{9707, 1879}));
}
