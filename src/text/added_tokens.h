// Matcher for added tokens (<|EOT|>, <audio_patch>, <audio_123>, ...) inside text: a byte trie
// giving the leftmost-longest match, the rule Hugging Face uses when it splits text on added
// tokens. Thread-safety: immutable after the add() calls; match() only reads.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace stepaudio::text {

class AddedTokenMatcher {
 public:
  void add(std::string_view content, int32_t id);
  bool empty() const { return terminal_.size() <= 1; }

  struct Match {
    size_t length = 0;  // 0: no token starts here
    int32_t id = -1;
  };
  // The longest added token that starts at text[pos].
  Match match(std::string_view text, size_t pos) const;
  // Whether any added token starts with this byte (a cheap pre-filter for the scan).
  bool may_start(unsigned char byte) const { return first_byte_[byte]; }

 private:
  static uint64_t edge(int32_t node, unsigned char byte) {
    return (static_cast<uint64_t>(node) << 8) | byte;
  }
  std::unordered_map<uint64_t, int32_t> edges_;
  std::vector<int32_t> terminal_{-1};  // per node: token id ending here, or -1; node 0 = root
  std::array<bool, 256> first_byte_{};
};

}  // namespace stepaudio::text
