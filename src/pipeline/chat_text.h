// The answer text of a chat generation as it grows (stepaudio/chat.h): generated ids in, final
// text out. Text is released only when it can no longer change: whole UTF-8 characters (a
// character split across tokens waits for its last byte) and never a possible beginning of a stop
// string (held until the next tokens tell). When a stop string appears, the text ends before it
// and stopped() turns true. Only text ids count (below Tokenizer::first_non_text_id(), not
// <|EOT|>): audio codes and control tokens add nothing, as in `stepaudio run`.
// Thread-safety: one stream per generation; the Tokenizer must outlive it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "stepaudio/tokenizer.h"

namespace stepaudio::pipeline {

class ChatTextStream {
 public:
  // Throws Error(invalid_argument) for an empty stop string.
  ChatTextStream(const text::Tokenizer& tokenizer, std::vector<std::string> stops);
  // Adds one generated id; returns the text that became final (possibly empty). Ignored once
  // stopped.
  std::string push(int32_t id);
  // The end of generation: the held-back rest (an incomplete character as U+FFFD).
  std::string finish();

  bool stopped() const { return !stop_.empty(); }
  const std::string& stop_string() const { return stop_; }
  const std::string& text() const { return text_; }  // released so far (after finish(): all)

 private:
  std::string release(bool at_end);

  const text::Tokenizer& tok_;
  text::StreamDecoder decoder_;
  std::vector<std::string> stops_;
  std::string decoded_;  // whole characters decoded so far (cut at a stop string)
  std::string text_;     // the prefix of decoded_ released
  std::string stop_;
};

}  // namespace stepaudio::pipeline
