#include "stepaudio/error.h"

namespace stepaudio {

const char* errc_name(Errc code) noexcept {
  switch (code) {
    case Errc::invalid_argument:
      return "invalid_argument";
    case Errc::io:
      return "io_error";
    case Errc::unsupported_media:
      return "unsupported_media";
    case Errc::bad_audio:
      return "bad_audio";
    case Errc::too_large:
      return "too_large";
    case Errc::too_long:
      return "too_long";
    case Errc::model_format:
      return "model_format";
    case Errc::tokenizer_format:
      return "tokenizer_format";
    case Errc::canceled:
      return "canceled";
    case Errc::internal:
      return "internal";
    case Errc::backend_unavailable:
      return "backend_unavailable";
    case Errc::backend_error:
      return "backend_error";
  }
  return "internal";
}

}  // namespace stepaudio
