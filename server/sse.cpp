// SseParser (sse.h).
#include "sse.h"

namespace stepaudio::server {

void SseParser::feed(std::string_view bytes) {
  for (char ch : bytes) {
    if (last_cr_) {
      last_cr_ = false;
      if (ch == '\n') continue;  // the LF of a CRLF
    }
    if (ch == '\r' || ch == '\n') {
      last_cr_ = ch == '\r';
      std::string l;
      l.swap(line_);
      line(l);
      continue;
    }
    line_ += ch;
  }
}

void SseParser::line(std::string_view l) {
  if (l.empty()) {  // the end of an event
    if (has_data_) {
      std::string d;
      d.swap(data_);
      has_data_ = false;
      on_event_(d);
    }
    return;
  }
  if (l.front() == ':') return;  // a comment (keep-alive)
  const size_t colon = l.find(':');
  const std::string_view field = l.substr(0, colon);
  std::string_view value = colon == std::string_view::npos ? "" : l.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (field != "data") return;
  if (has_data_) data_ += '\n';
  data_.append(value);
  has_data_ = true;
}

}  // namespace stepaudio::server
