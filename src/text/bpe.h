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

// Open-addressing hash table from a token-id pair to its merge: the BPE loop's hottest lookup,
// where std::unordered_map's node chasing costs a cache miss per probe.
class MergeTable {
 public:
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  void reserve(size_t n);
  // Keeps the first insertion of a key (the best rank).
  void insert(uint64_t key, Merge m);
  const Merge* find(uint64_t key) const {
    if (slots_.empty()) return nullptr;
    for (size_t i = mix(key) & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.key == key) return &s.merge;
      if (s.key == kEmpty) return nullptr;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};  // no real key: ids are < 2^24
  struct Slot {
    uint64_t key = kEmpty;
    Merge merge{};
  };
  static size_t mix(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return static_cast<size_t>(k);
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0, size_ = 0;
};

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
  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  TokenMap vocab_;
  MergeTable merges_;
  std::array<int32_t, 256> byte_ids_{};
  size_t merge_count_ = 0;
  bool ignore_merges_ = false;
};

}  // namespace stepaudio::text
