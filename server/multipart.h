// multipart/form-data (RFC 7578) over a body held in memory, with caps: a hostile body gets a
// MultipartError naming the problem, never a crash or unbounded work. Fuzzed by
// fuzz/fuzz_multipart.cpp. Thread-safety: free functions, reentrant.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace stepaudio::server {

class MultipartError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct MultipartPart {
  std::string name;          // form field name (Content-Disposition name=)
  std::string filename;      // "" when not a file
  std::string content_type;  // "" when not given
  std::string_view data;     // points into the body passed to parse_multipart
};

struct MultipartLimits {
  size_t max_parts = 16;
  size_t max_header_bytes = 8192;  // per part's header block
  size_t max_field_bytes = 65536;  // per non-file part
};

// The boundary parameter of a Content-Type value ("multipart/form-data; boundary=..."), quoted or
// not; nullopt when the type is not multipart/form-data or the boundary is missing/invalid
// (RFC 2046: 1-70 characters).
std::optional<std::string> multipart_boundary(std::string_view content_type);

// Parses the whole body. Throws MultipartError for a missing closing delimiter (truncated upload),
// malformed part headers, too many parts, oversized headers/fields, or duplicate field names
// (except array fields named "x[]", which may repeat).
std::vector<MultipartPart> parse_multipart(std::string_view body, std::string_view boundary,
                                           const MultipartLimits& limits = {});

}  // namespace stepaudio::server
