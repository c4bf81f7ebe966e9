// An incremental Server-Sent Events parser (the WHATWG "event stream" rules the OpenAI streaming
// protocol uses): bytes arrive in arbitrary pieces; each complete event (ended by a blank line)
// is handed over as its data, the `data:` lines joined with "\n". Lines end with LF, CRLF or CR;
// comments (":...") and other fields (event, id, retry) are ignored; one optional space after
// the colon is dropped. An event without data lines is not dispatched.
// Thread-safety: one stream per object.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace stepaudio::server {

class SseParser {
 public:
  using EventFn = std::function<void(const std::string& data)>;
  explicit SseParser(EventFn on_event) : on_event_(std::move(on_event)) {}
  void feed(std::string_view bytes);
  // Bytes of an unfinished line and event held (a bound for a stream that never ends a line).
  size_t pending() const { return line_.size() + data_.size(); }

 private:
  void line(std::string_view l);
  EventFn on_event_;
  std::string line_, data_;
  bool has_data_ = false, last_cr_ = false;
};

}  // namespace stepaudio::server
