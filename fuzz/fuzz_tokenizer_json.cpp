// libFuzzer: arbitrary bytes parsed as tokenizer.json. Must either load or throw stepaudio::Error;
// any other exception, crash or sanitizer report is a bug. A loaded tokenizer must encode a
// fixed text without failing.
//   CC=clang CXX=clang++ cmake -B build-fuzz -DSTEPAUDIO_FUZZ=ON && ninja -C build-fuzz
//   fuzz_tokenizer_json
#include <cstdint>
#include <cstdlib>
#include <string>

#include "stepaudio/error.h"
#include "stepaudio/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  try {
    auto tok = stepaudio::text::Tokenizer::from_json(json, "fuzz.json");
    const auto ids = tok->encode("hello <|EOT|> world 你好", true);
    (void)tok->decode(ids);
  } catch (const stepaudio::Error&) {
    // expected for malformed input
  }
  return 0;
}
