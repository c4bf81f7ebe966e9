// Test helpers for the tokenizer tests: a tiny byte-level tokenizer.json built in memory, access to
// ../shared/data (skipping when absent), and gunzip of the reference tokenizer.json.
#pragma once

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <memory>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include "stepaudio/tokenizer.h"

#include "text/bpe.h"

namespace stepaudio::test {

inline std::filesystem::path shared_data() {
  if (const char* env = std::getenv("STEPAUDIO_SHARED_DATA")) return env;
  return STEPAUDIO_SHARED_DATA;
}

#define SKIP_WITHOUT_SHARED_DATA()                                                    \
  do {                                                                                \
    if (!std::filesystem::exists(::stepaudio::test::shared_data() / "tokenizer"))     \
      GTEST_SKIP() << "shared test data absent: " << ::stepaudio::test::shared_data() \
                   << " (needs ../shared/data/tokenizer)";                            \
  } while (0)

// A small byte-level BPE: the 256 byte symbols (id = byte), a few merges, and Step-style added
// tokens. Same pre-tokenizer/normalizer as Qwen2.
inline nlohmann::json tiny_tokenizer_json() {
  using nlohmann::json;
  json vocab = json::object();
  const auto& alphabet = text::byte_level_alphabet();
  for (int b = 0; b < 256; ++b) vocab[alphabet[b]] = b;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {"Ġ", "w"}, {"Ġw", "o"}};
  json merge_list = json::array();
  int next = 256;
  for (const auto& [a, b] : merges) {
    if (!vocab.contains(a + b)) vocab[a + b] = next++;
    merge_list.push_back(json::array({a, b}));
  }
  json added = json::array();
  int id = 300;
  for (const char* t : {"<|BOT|>", "<|EOT|>", "<audio_start>", "<audio_end>", "<audio_patch>",
                        "<tts_start>", "<tts_end>"})
    added.push_back({{"id", id++}, {"content", t}, {"special", true}, {"normalized", false}});
  return {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         json::array(
             {{{"type", "Split"},
               {"pattern",
                {{"Regex",
                  R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}},
               {"behavior", "Isolated"},
               {"invert", false}},
              {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}}}};
}

// A tiny byte-level tokenizer shared by the tests (built once).
inline std::shared_ptr<const text::Tokenizer> tiny_tokenizer() {
  static auto tok = text::Tokenizer::from_json(tiny_tokenizer_json().dump(), "tiny.json");
  return tok;
}

inline std::string gunzip_file(const std::filesystem::path& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) return {};
  std::string out;
  char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  gzclose(f);
  return out;
}

// The reference Qwen3 tokenizer.json, unpacked once into the temp folder.
inline std::string reference_tokenizer_json_path() {
  const auto dst = std::filesystem::temp_directory_path() / "stepaudio_ref_qwen3_tokenizer.json";
  if (!std::filesystem::exists(dst)) {
    const std::string json =
        gunzip_file(shared_data() / "tokenizer/reference_qwen3_tokenizer.json.gz");
    const auto tmp = dst.string() + ".tmp" + std::to_string(::getpid());
    std::ofstream(tmp, std::ios::binary) << json;
    std::filesystem::rename(tmp, dst);
  }
  return dst.string();
}

inline void write_text(const std::filesystem::path& p, const std::string& s) {
  std::ofstream(p, std::ios::binary) << s;
}

}  // namespace stepaudio::test
