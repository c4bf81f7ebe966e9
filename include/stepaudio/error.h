// The one error type of libstepaudio.
//
// Bad input (audio, model files, arguments) throws stepaudio::Error with a typed code; the CLI
// prints its message on one line and the HTTP layer maps the code to a status and the JSON error
// shape
// {"error": {"code": code_name(), "message": what()}}. Programming errors use assert instead.
// Thread-safety: plain value type.
#pragma once

#include <stdexcept>
#include <string>

namespace stepaudio {

enum class Errc {
  invalid_argument,   // a caller-supplied option is out of range or malformed
  io,                 // a file could not be opened, read or written
  unsupported_media,  // not an audio container/codec we can decode
  bad_audio,          // a container we know, but corrupt, empty or without audio
  too_large,          // over a size/rate/channel limit
  too_long,           // over the configured maximum duration
  model_format,       // missing or mismatched model files
  tokenizer_format,   // malformed tokenizer files
  canceled,           // the caller's cancellation flag was raised
  internal,           // an unexpected failure of a library we call
  // A remote inference backend (stepaudio/remote.h): unreachable, failing (5xx, timeouts) or
  // refused while the circuit breaker is open; or it answered something unusable (its 401/403/
  // 404, a malformed answer).
  backend_unavailable,
  backend_error,
};

// Stable snake_case name of a code, as used in JSON errors ("bad_audio", ...).
const char* errc_name(Errc code) noexcept;

class Error : public std::runtime_error {
 public:
  Error(Errc code, const std::string& message) : std::runtime_error(message), code_(code) {}
  Errc code() const noexcept { return code_; }
  const char* code_name() const noexcept { return errc_name(code_); }

 private:
  Errc code_;
};

}  // namespace stepaudio
