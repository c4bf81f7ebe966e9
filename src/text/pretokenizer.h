// Pre-tokenizer: splits normalized text into words with the tokenizer's split regex (PCRE2 in UTF +
// UCP mode, JIT-compiled when available), "Isolated" behaviour: every match and every gap between
// matches is its own word.
// Thread-safety: immutable after construction; split() allocates its own match data per call.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace stepaudio::text {

// The Qwen2 split regex (also in bpe_pipeline_config.json); the default of the vocab.json path.
extern const char* const kQwen2SplitRegex;
// GPT-2's regex, used by a ByteLevel pre-tokenizer with use_regex = true.
extern const char* const kGpt2SplitRegex;

class PreTokenizer {
 public:
  // Throws Error(tokenizer_format) naming `file` when the pattern does not compile.
  PreTokenizer(const std::string& pattern, const std::string& file);
  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // `text` must be valid UTF-8 (checked by the caller). Appends views into `text`.
  void split(std::string_view text, std::vector<std::string_view>& words) const;

 private:
  struct Code;
  std::unique_ptr<Code> code_;
};

}  // namespace stepaudio::text
