// ChatTextStream (chat_text.h): UTF-8 hold-back by the tokenizer's StreamDecoder, stop strings
// here.
#include "pipeline/chat_text.h"

#include <algorithm>

#include "stepaudio/error.h"

namespace stepaudio::pipeline {

ChatTextStream::ChatTextStream(const text::Tokenizer& tokenizer, std::vector<std::string> stops)
    : tok_(tokenizer), decoder_(tokenizer, /*skip_special=*/true), stops_(std::move(stops)) {
  for (const std::string& s : stops_)
    if (s.empty()) throw Error(Errc::invalid_argument, "a stop string is empty");
}

std::string ChatTextStream::push(int32_t id) {
  if (stopped()) return {};
  if (id < tok_.first_non_text_id() && id != tok_.eos_id()) decoded_ += decoder_.push(id);
  return release(false);
}

std::string ChatTextStream::finish() {
  if (!stopped()) decoded_ += decoder_.finish();
  return release(true);
}

std::string ChatTextStream::release(bool at_end) {
  if (stopped()) return {};
  // A stop string cannot begin before the released text ends: every possible beginning of one
  // was held back. So the search starts there, and the first match (leftmost, then the stop
  // listed first) ends the text.
  const size_t from = text_.size();
  size_t cut = std::string::npos;
  for (const std::string& s : stops_) {
    const size_t at = decoded_.find(s, from);
    if (at < cut) {
      cut = at;
      stop_ = s;
    }
  }
  if (cut != std::string::npos) {
    decoded_.resize(cut);
  } else if (!at_end) {
    // Hold back the longest tail that begins some stop string (a proper prefix of it). The
    // decoded text is whole characters and a stop string is valid UTF-8, so the cut lands on a
    // character boundary.
    size_t hold = 0;
    const size_t open = decoded_.size() - from;
    for (const std::string& s : stops_)
      for (size_t k = std::min(s.size() - 1, open); k > hold; --k)
        if (decoded_.compare(decoded_.size() - k, k, s, 0, k) == 0) {
          hold = k;
          break;
        }
    cut = decoded_.size() - hold;
  } else {
    cut = decoded_.size();
  }
  std::string out = decoded_.substr(from, cut - from);
  text_.append(out);
  return out;
}

}  // namespace stepaudio::pipeline
