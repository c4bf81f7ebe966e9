#include "text/bpe.h"

#include <algorithm>
#include <queue>

#include "stepaudio/error.h"

namespace stepaudio::text {

namespace {

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Code points of GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the others
// to 256, 257, ... in byte order.
std::array<uint32_t, 256> byte_code_points() {
  std::array<uint32_t, 256> cps{};
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    cps[b] = printable ? b : next++;
  }
  return cps;
}

// Code point -> byte for the inverse mapping (code points are all below 324).
struct InverseTable {
  std::array<int16_t, 512> byte_of{};
  InverseTable() {
    byte_of.fill(-1);
    const auto cps = byte_code_points();
    for (int b = 0; b < 256; ++b) byte_of[cps[b]] = static_cast<int16_t>(b);
  }
};

}  // namespace

const std::array<std::string, 256>& byte_level_alphabet() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    const auto cps = byte_code_points();
    for (int b = 0; b < 256; ++b) append_utf8(t[b], cps[b]);
    return t;
  }();
  return table;
}

std::string byte_level_decode(std::string_view token) {
  static const InverseTable inv;
  std::string out;
  out.reserve(token.size());
  size_t i = 0;
  while (i < token.size()) {
    const auto b0 = static_cast<unsigned char>(token[i]);
    uint32_t cp;
    size_t n;
    if (b0 < 0x80) {
      cp = b0, n = 1;
    } else if ((b0 & 0xE0) == 0xC0 && i + 1 < token.size()) {
      cp = ((b0 & 0x1Fu) << 6) | (static_cast<unsigned char>(token[i + 1]) & 0x3Fu), n = 2;
    } else {
      // Not in the alphabet (all alphabet code points are < U+0800): keep the bytes as they are.
      out += token[i++];
      continue;
    }
    if (cp < inv.byte_of.size() && inv.byte_of[cp] >= 0)
      out += static_cast<char>(inv.byte_of[cp]);
    else
      out.append(token.substr(i, n));
    i += n;
  }
  return out;
}

void MergeTable::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;  // load factor <= 0.5 keeps probe runs short
  slots_.assign(cap, Slot{});
  mask_ = cap - 1;
  size_ = 0;
}

void MergeTable::insert(uint64_t key, Merge m) {
  if ((size_ + 1) * 2 > slots_.size()) {
    std::vector<Slot> old = std::move(slots_);
    reserve(std::max<size_t>(16, old.size()));
    for (const Slot& s : old)
      if (s.key != kEmpty) insert(s.key, s.merge);
  }
  for (size_t i = mix(key) & mask_;; i = (i + 1) & mask_) {
    Slot& s = slots_[i];
    if (s.key == key) return;
    if (s.key == kEmpty) {
      s = {key, m};
      ++size_;
      return;
    }
  }
}

void BpeModel::build(TokenMap vocab, const std::vector<std::pair<std::string, std::string>>& merges,
                     bool ignore_merges, const std::string& file) {
  vocab_ = std::move(vocab);
  ignore_merges_ = ignore_merges;
  const auto& alphabet = byte_level_alphabet();
  for (int b = 0; b < 256; ++b) {
    auto it = vocab_.find(alphabet[b]);
    if (it == vocab_.end())
      throw Error(Errc::tokenizer_format, file + ": vocab lacks the byte-level symbol for byte " +
                                              std::to_string(b) + " (\"" + alphabet[b] +
                                              "\"); only byte-level BPE is supported");
    byte_ids_[b] = it->second;
  }
  merges_.reserve(merges.size());
  std::string joined;
  for (size_t r = 0; r < merges.size(); ++r) {
    const auto& [a, b] = merges[r];
    auto ia = vocab_.find(a), ib = vocab_.find(b);
    joined.assign(a).append(b);
    auto ij = vocab_.find(joined);
    if (ia == vocab_.end() || ib == vocab_.end() || ij == vocab_.end())
      throw Error(Errc::tokenizer_format, file + ": merge " + std::to_string(r) + " \"" + a + " " +
                                              b + "\" uses a token that is not in the vocab");
    // A repeated pair keeps its first (best) rank, as Hugging Face does.
    merges_.insert(key(ia->second, ib->second), {static_cast<int32_t>(r), ij->second});
  }
  merge_count_ = merges.size();
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (word.size() == 1) {
    out.push_back(byte_ids_[static_cast<unsigned char>(word[0])]);
    return;
  }
  if (ignore_merges_) {
    std::string mapped;
    for (char c : word) mapped += byte_level_alphabet()[static_cast<unsigned char>(c)];
    if (auto it = vocab_.find(mapped); it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  struct Sym {
    int32_t id, prev, next;
  };
  struct Cand {
    int32_t rank, pos, left, right;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  const auto n = static_cast<int32_t>(word.size());
  std::vector<Sym> syms(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i)
    syms[i] = {byte_ids_[static_cast<unsigned char>(word[i])], i - 1, i + 1 < n ? i + 1 : -1};

  std::vector<Cand> storage;
  storage.reserve(static_cast<size_t>(n));
  std::priority_queue<Cand, std::vector<Cand>, std::greater<>> heap(std::greater<>{},
                                                                    std::move(storage));
  auto push_pair = [&](int32_t pos) {
    const int32_t nx = syms[pos].next;
    if (nx < 0) return;
    if (const auto* m = merges_.find(key(syms[pos].id, syms[nx].id)))
      heap.push({m->rank, pos, syms[pos].id, syms[nx].id});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push_pair(i);

  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    Sym& s = syms[c.pos];
    // Skip candidates made stale by an earlier merge: a symbol's id only ever grows into a longer
    // token, so matching ids prove the pair is still adjacent and unchanged.
    if (s.id != c.left || s.next < 0 || syms[s.next].id != c.right) continue;
    const int32_t gone = s.next;
    s.id = merges_.find(key(c.left, c.right))->result;
    s.next = syms[gone].next;
    if (s.next >= 0) syms[s.next].prev = c.pos;
    syms[gone].id = -1;
    if (s.prev >= 0) push_pair(s.prev);
    push_pair(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = syms[i].next) out.push_back(syms[i].id);
}

}  // namespace stepaudio::text
