// libFuzzer: multipart/form-data bodies (server/multipart.h). The input's first line is the
// Content-Type value and the rest the body; an input without a newline is all body, with a fixed
// boundary. A hostile body may only ever produce MultipartError; every part returned must view
// bytes of the body, carry a name, and have a name no other part has (but "x[]" arrays).
//   CC=clang CXX=clang++ cmake -B build-fuzz -DSTEPAUDIO_FUZZ=ON && ninja -C build-fuzz
//   fuzz_multipart build-fuzz/bin/fuzz_multipart fuzz/corpus_multipart -max_total_time=60
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "server/multipart.h"

using namespace stepaudio::server;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string boundary = "fuzzboundary";
  std::string_view body = input;
  if (size_t nl = input.find('\n'); nl != std::string_view::npos) {
    std::string_view header = input.substr(0, nl);
    if (!header.empty() && header.back() == '\r') header.remove_suffix(1);
    body = input.substr(nl + 1);
    auto b = multipart_boundary(header);
    if (b) {
      check(!b->empty() && b->size() <= 70);
      boundary = *b;
    }
  }
  // Small limits too, so that the limit paths are reached by small inputs.
  MultipartLimits small;
  small.max_parts = 3;
  small.max_header_bytes = 64;
  small.max_field_bytes = 16;
  for (const MultipartLimits& limits : {MultipartLimits{}, small}) {
    try {
      auto parts = parse_multipart(body, boundary, limits);
      check(parts.size() <= limits.max_parts);
      std::set<std::string> names;
      for (const MultipartPart& p : parts) {
        check(p.data.data() >= body.data() &&
              p.data.data() + p.data.size() <= body.data() + body.size());
        const bool array_field = p.name.size() > 2 && p.name.ends_with("[]");  // may repeat
        check(!p.name.empty() && (array_field || names.insert(p.name).second));
        check(!p.filename.empty() || p.data.size() <= limits.max_field_bytes);
      }
    } catch (const MultipartError&) {
    }
  }
  return 0;
}
