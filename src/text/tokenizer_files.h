// Reading tokenizer files into a plain description (TokenizerSpec) that Tokenizer builds from.
// Knows the two on-disk forms: Hugging Face tokenizer.json, and vocab.json + merges.txt
// (+ added_tokens.json, + tokenizer_config.json). Everything specific to JSON lives here, so the
// public headers never include nlohmann/json.
// Thread-safety: free functions without shared state.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "text/bpe.h"

namespace stepaudio::text {

struct AddedTokenSpec {
  int32_t id = -1;
  std::string content;
  bool special = false;
};

struct TokenizerSpec {
  std::string source;      // what load() was given (for Tokenizer::source())
  std::string vocab_file;  // names used in error messages
  std::string added_file;
  TokenMap vocab;
  std::vector<std::pair<std::string, std::string>> merges;
  std::vector<AddedTokenSpec> added;
  bool nfc = false;
  std::string split_regex;  // empty: the whole text is one word
  bool ignore_merges = false;
};

// `path`: a tokenizer.json file or a folder holding one of the two forms.
// Throws Error(io) for unreadable/missing files and Error(tokenizer_format) for malformed ones.
TokenizerSpec read_tokenizer_files(const std::string& path);
// Parses tokenizer.json text; `name` labels error messages.
TokenizerSpec parse_tokenizer_json(std::string_view json, const std::string& name);

}  // namespace stepaudio::text
