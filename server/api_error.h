// The one error type of the HTTP layer: a status, a stable code and a message, turned into
// {"error": {"code", "message"}} (http_server.h json_error) at the boundary. Library errors
// (stepaudio::Error) and fetch errors map onto it here, in one table.
// Thread-safety: plain value types and pure functions.
#pragma once

#include <stdexcept>
#include <string>

#include "http_client.h"
#include "stepaudio/error.h"

namespace stepaudio::server {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string code, const std::string& message, int retry_after_s = 0)
      : std::runtime_error(message),
        status(status),
        code(std::move(code)),
        retry_after_s(retry_after_s) {}
  int status;
  std::string code;
  int retry_after_s;
};

// DESIGN.md §6: 400 bad input, 413 too large/long, 415 unsupported media, 422 undecodable audio,
// 499-like cancellation as 409, 500 otherwise.
inline int status_for(Errc code) {
  switch (code) {
    case Errc::invalid_argument:
      return 400;
    case Errc::unsupported_media:
      return 415;
    case Errc::bad_audio:
      return 422;
    case Errc::too_large:
    case Errc::too_long:
      return 413;
    case Errc::canceled:
      return 409;
    case Errc::backend_unavailable:
      return 503;
    case Errc::backend_error:
      return 502;
    default:
      return 500;
  }
}

inline int status_for_fetch(const std::string& code) {
  if (code == "invalid_url" || code == "forbidden_url" || code == "dns_failed" ||
      code == "too_many_redirects")
    return 400;
  if (code == "too_large") return 413;
  if (code == "timeout") return 504;
  return 502;  // fetch_failed: the remote server did not give us the audio
}

// The status a finished job's error code stands for (a sync request that waited for it).
inline int status_for_code(const std::string& code) {
  for (Errc e : {Errc::invalid_argument, Errc::io, Errc::unsupported_media, Errc::bad_audio,
                 Errc::too_large, Errc::too_long, Errc::model_format, Errc::tokenizer_format,
                 Errc::canceled, Errc::internal, Errc::backend_unavailable, Errc::backend_error})
    if (code == errc_name(e)) return status_for(e);
  if (code == "interrupted") return 500;
  return status_for_fetch(code);
}

}  // namespace stepaudio::server
