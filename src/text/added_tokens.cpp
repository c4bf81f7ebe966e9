#include "text/added_tokens.h"

namespace stepaudio::text {

void AddedTokenMatcher::add(std::string_view content, int32_t id) {
  if (content.empty()) return;
  first_byte_[static_cast<unsigned char>(content[0])] = true;
  int32_t node = 0;
  for (char c : content) {
    const auto b = static_cast<unsigned char>(c);
    auto [it, inserted] = edges_.try_emplace(edge(node, b), static_cast<int32_t>(terminal_.size()));
    if (inserted) terminal_.push_back(-1);
    node = it->second;
  }
  terminal_[static_cast<size_t>(node)] = id;
}

AddedTokenMatcher::Match AddedTokenMatcher::match(std::string_view text, size_t pos) const {
  Match best;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    auto it = edges_.find(edge(node, static_cast<unsigned char>(text[i])));
    if (it == edges_.end()) break;
    node = it->second;
    if (terminal_[static_cast<size_t>(node)] >= 0)
      best = {i + 1 - pos, terminal_[static_cast<size_t>(node)]};
  }
  return best;
}

}  // namespace stepaudio::text
