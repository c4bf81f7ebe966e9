#include "text/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "stepaudio/error.h"

namespace stepaudio::text {

const char* const kQwen2SplitRegex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kGpt2SplitRegex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct PreTokenizer::Code {
  pcre2_code* re = nullptr;
  bool jit = false;
  ~Code() { pcre2_code_free(re); }
};

namespace {
struct MatchData {
  pcre2_match_data* md;
  explicit MatchData(const pcre2_code* re) : md(pcre2_match_data_create_from_pattern(re, nullptr)) {
    if (!md) throw Error(Errc::internal, "pcre2_match_data_create failed");
  }
  ~MatchData() { pcre2_match_data_free(md); }
  MatchData(const MatchData&) = delete;
  MatchData& operator=(const MatchData&) = delete;
};
}  // namespace

// PCRE2's \s (UCP) is \t\n\v\f\r + the Z categories; the reference engines (Oniguruma in
// Hugging Face tokenizers, Python's `regex` in the slow tokenizer) use Unicode White_Space, which
// also has U+0085 NEXT LINE. Add it wherever \s / \S appear so splits agree, e.g. "  \u0085" stays
// one word.
static std::string with_unicode_white_space(const std::string& pattern) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[++i];
      if (e == 's')
        out += in_class ? "\\s\\x{85}" : "[\\s\\x{85}]";
      else if (e == 'S' && !in_class)
        out += "[^\\s\\x{85}]";
      else
        out.append({c, e});
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

PreTokenizer::PreTokenizer(const std::string& raw_pattern, const std::string& file)
    : code_(std::make_unique<Code>()) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  const std::string pattern = with_unicode_white_space(raw_pattern);
  code_->re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                            PCRE2_UTF | PCRE2_UCP, &err, &err_off, nullptr);
  if (!code_->re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw Error(Errc::tokenizer_format, file + ": pre-tokenizer regex does not compile at offset " +
                                            std::to_string(err_off) + ": " +
                                            reinterpret_cast<const char*>(msg));
  }
  // JIT is an optimisation only: fall back to the interpreter where it is unavailable.
  code_->jit = pcre2_jit_compile(code_->re, PCRE2_JIT_COMPLETE) == 0;
}

PreTokenizer::~PreTokenizer() = default;

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& words) const {
  if (text.empty()) return;
  MatchData m(code_->re);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0, emitted = 0;
  while (pos < text.size()) {
    const int rc =
        code_->jit
            ? pcre2_jit_match(code_->re, subject, text.size(), pos, 0, m.md, nullptr)
            : pcre2_match(code_->re, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, m.md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      throw Error(Errc::internal,
                  std::string("pre-tokenizer match failed: ") + reinterpret_cast<const char*>(msg));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(m.md);
    const size_t s = ov[0], e = ov[1];
    if (s > emitted) words.push_back(text.substr(emitted, s - emitted));  // unmatched gap
    if (e > s) {
      words.push_back(text.substr(s, e - s));
      emitted = e;
      pos = e;
    } else {
      // Empty match: step over one whole character so we never split inside one.
      pos = s + 1;
      while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
      emitted = s;
    }
  }
  if (emitted < text.size()) words.push_back(text.substr(emitted));
}

}  // namespace stepaudio::text
