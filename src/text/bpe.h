// Byte-level BPE model: vocabulary, merge ranks, and the merge loop for one pre-tokenized word.
//
// Tokens are stored in the GPT-2 "byte-level" alphabet (each byte shown as a printable code point,
// e.g. ' ' -> 'Ġ'). Encoding starts from one symbol per input byte and repeatedly merges the
// adjacent pair of lowest merge rank (leftmost first on ties) using a min-heap: O(n log n).
// Thread-safety: immutable after build(); encode_word() only reads.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace stepaudio::text {

// The byte -> code point table of GPT-2's bytes_to_unicode(), as UTF-8 strings.
const std::array<std::string, 256>& byte_level_alphabet();
// Inverse mapping of one byte-level token string to raw bytes. Code points outside the alphabet
// are kept as their UTF-8 bytes (as the Hugging Face ByteLevel decoder does).
std::string byte_level_decode(std::string_view token);

// Transparent hashing so lookups by string_view do not allocate.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  // vocab: token (byte-level alphabet) -> id. merges: (left, right) in rank order.
  // `file` names the source in error messages. Throws Error(tokenizer_format) for a merge whose
  // parts or result are not in the vocab, or a vocab lacking one of the 256 byte symbols.
  void build(TokenMap vocab, const std::vector<std::pair<std::string, std::string>>& merges,
             bool ignore_merges, const std::string& file);

  // Appends the ids of one word (raw bytes, not byte-level mapped) to `out`.
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  const TokenMap& vocab() const { return vocab_; }
  size_t merge_count() const { return merge_count_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  TokenMap vocab_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::array<int32_t, 256> byte_ids_{};
  size_t merge_count_ = 0;
  bool ignore_merges_ = false;
};

}  // namespace stepaudio::text
