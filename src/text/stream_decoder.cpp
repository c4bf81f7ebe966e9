#include "stepaudio/tokenizer.h"
#include "text/utf8.h"

namespace stepaudio::text {

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tok_(&tokenizer), skip_special_(skip_special) {}

std::string StreamDecoder::push(int32_t id) {
  return push(std::span<const int32_t>(&id, 1));
}

std::string StreamDecoder::push(std::span<const int32_t> ids) {
  for (int32_t id : ids) {
    const std::string_view b = tok_->token_bytes(id);  // throws for unknown ids
    if (skip_special_ && tok_->is_special(id)) continue;
    pending_.append(b);
  }
  std::string out;
  // Everything but a valid-yet-incomplete last character goes out now (invalid bytes as U+FFFD);
  // that tail waits for the next token, which usually completes it.
  const size_t held = append_utf8_lossy(out, pending_, /*hold_tail=*/true);
  pending_.erase(0, pending_.size() - held);
  return out;
}

std::string StreamDecoder::finish() {
  std::string out;
  append_utf8_lossy(out, pending_, /*hold_tail=*/false);
  pending_.clear();
  return out;
}

}  // namespace stepaudio::text
