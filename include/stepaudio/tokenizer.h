// The model's own text tokenizer: byte-level BPE read from the checkpoint's tokenizer files.
//
// Nothing here hard-codes a token id: every special id is looked up by its string in the loaded
// files, so a checkpoint whose ids differ from the published ones still works.
//
// Supported files:
//   * a Hugging Face `tokenizer.json` whose model is BPE (`vocab` + `merges`, merges as "a b"
//   strings
//     or ["a","b"] pairs), `added_tokens`, a `normalizer` (null or NFC), a `pre_tokenizer` (Split
//     by regex + ByteLevel, or ByteLevel with its own regex) and a ByteLevel (or null) `decoder`;
//   * as a fallback, a folder with `vocab.json` + `merges.txt` (+ `added_tokens.json`, +
//     `tokenizer_config.json` for the special flags); it gets the Qwen2 pipeline (NFC + Qwen2
//     regex).
//
// Text rules:
//   * encode() input must be valid UTF-8: invalid bytes (including encoded lone surrogates) throw
//     Error(invalid_argument) naming the byte offset. Nothing is replaced silently.
//   * Text is NFC-normalized before BPE (as the model's normalizer says), so decode(encode(s))
//   gives
//     NFC(s), which equals s for NFC input.
//   * Added tokens (`<|EOT|>`, `<audio_patch>`, ...) are matched in the text only when the caller
//     passes allow_special = true (prompts we build); user text is encoded with false, so typing
//     "<|EOT|>" yields ordinary text tokens and cannot end a turn. (Hugging Face matches added
//     tokens everywhere; we deliberately do not.) Added-token options lstrip/rstrip/single_word/
//     normalized are ignored (unused by Qwen2/Step files); so is a post_processor other than
//     ByteLevel (with a warning), as render_prompt builds the whole sequence itself.
//   * decode() returns valid UTF-8: bytes that do not form a character become U+FFFD, one per
//     maximal invalid subsequence (as Rust's from_utf8_lossy). StreamDecoder holds back a trailing
//     incomplete character instead, until the next id completes it.
//
// Thread-safety: a Tokenizer is immutable after load() (its word cache is internally locked), so
// any number of threads may call its const methods at once. A StreamDecoder belongs to one stream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace stepaudio::text {

// One piece of text handed to the encoder, with the permission to match added tokens in it.
struct TextPiece {
  std::string_view text;
  bool allow_special = false;
};

// Generated ids split at the text/non-text boundary (see Tokenizer::first_non_text_id()).
struct SplitIds {
  std::vector<int32_t> text;   // decode these with Tokenizer::decode
  std::vector<int32_t> other;  // audio codes and audio/tts control tokens, in order
};

class Tokenizer {
 public:
  // `path` is a tokenizer.json file or a folder holding tokenizer.json or the vocab.json +
  // merges.txt trio. Throws Error(io) when unreadable, Error(tokenizer_format) when malformed (the
  // message names the file and the problem). Loading the full 8-11 MB Qwen2 file takes ~0.3 s.
  static std::shared_ptr<const Tokenizer> load(const std::string& path);
  // Parses tokenizer.json text already in memory; `name` is used in error messages.
  static std::shared_ptr<const Tokenizer> from_json(std::string_view json, const std::string& name);

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  std::vector<int32_t> encode(std::string_view text, bool allow_special = false) const;
  // Encodes the concatenation of `pieces` as one string (exactly as the model's tokenizer would),
  // except that added tokens are matched only inside pieces with allow_special. Used by prompt
  // rendering to join our template text with user text without letting the user inject tokens.
  std::vector<int32_t> encode(std::span<const TextPiece> pieces) const;

  // Throws Error(invalid_argument) for an id the tokenizer does not have.
  // skip_special drops added tokens flagged `special` in the files.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;
  // The raw bytes of one token (byte-level decoded; may be part of a UTF-8 character).
  // Throws Error(invalid_argument) for an unknown id.
  std::string_view token_bytes(int32_t id) const;

  std::optional<int32_t> token_id(std::string_view token) const;  // vocab entry or added token
  int32_t require_token(std::string_view token) const;            // throws Error(tokenizer_format)
  bool is_added(int32_t id) const;
  bool is_special(int32_t id) const;  // added token with special = true

  int32_t eos_id() const;  // "<|EOT|>"; throws Error(tokenizer_format) when absent
  // Ids >= this are not text: the smallest id among the added audio/tts control tokens (names
  // beginning "<audio_" or "<tts_"), i.e. <audio_start> in Step-Audio 2. vocab_size() if none.
  int32_t first_non_text_id() const;
  SplitIds split_generated(std::span<const int32_t> ids) const;

  size_t vocab_size() const;          // 1 + the largest id (vocab and added tokens)
  const std::string& source() const;  // the file or folder it was loaded from

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Incremental decoding for streamed generation: push ids one at a time and get the text that is
// complete so far. A character split across tokens is held back until its last byte arrives.
// Not thread-safe; the Tokenizer must outlive it.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = false);
  // Returns the newly completed text (possibly empty). Invalid bytes become U+FFFD.
  std::string push(int32_t id);
  std::string push(std::span<const int32_t> ids);
  // End of stream: returns what was held back, an incomplete character as U+FFFD.
  std::string finish();
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer* tok_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace stepaudio::text
