// Cache of word -> BPE ids. Text repeats words heavily (and prompts repeat whole system prompts),
// so most words skip the merge loop. Sharded, each shard behind its own mutex, so concurrent
// encoders rarely contend. A shard that fills up is cleared: simple, bounded memory, no LRU
// bookkeeping. Thread-safety: all methods may be called concurrently.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "text/bpe.h"

namespace stepaudio::text {

class WordCache {
 public:
  static constexpr size_t kMaxWordBytes =
      128;  // longer words are rare (a long CJK clause): not worth it
  static constexpr size_t kShards = 16;
  static constexpr size_t kMaxPerShard = 8192;

  // Appends the cached ids of `word` to `out`; false when absent.
  bool lookup(std::string_view word, std::vector<int32_t>& out) const {
    if (word.size() > kMaxWordBytes) return false;
    const size_t h = StringHash{}(word);
    Shard& s = shards_[h % kShards];
    std::lock_guard lock(s.mu);
    auto it = s.map.find(word);
    if (it == s.map.end()) return false;
    out.insert(out.end(), it->second.begin(), it->second.end());
    return true;
  }

  void insert(std::string_view word, const int32_t* ids, size_t n) const {
    if (word.size() > kMaxWordBytes) return;
    const size_t h = StringHash{}(word);
    Shard& s = shards_[h % kShards];
    std::lock_guard lock(s.mu);
    if (s.map.size() >= kMaxPerShard) s.map.clear();
    s.map.try_emplace(std::string(word), ids, ids + n);
  }

 private:
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> map;
  };
  mutable std::array<Shard, kShards> shards_;
};

}  // namespace stepaudio::text
