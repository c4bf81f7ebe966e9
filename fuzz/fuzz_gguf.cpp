// libFuzzer target: arbitrary bytes parsed as a GGUF file from memory. The parser must either
// succeed (and every tensor must lie inside the buffer) or throw stepaudio::Error; any other
// exception, crash or sanitizer report is a bug. Build: CXX=clang++ cmake -DSTEPAUDIO_FUZZ=ON ...
#include <cstdint>
#include <cstdlib>

#include "model/gguf.h"
#include "stepaudio/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto g = stepaudio::model::parse_gguf(data, size, "fuzz");
    for (const auto& [name, t] : g.tensors) {
      if (t.data < data || t.data + t.nbytes > data + size) std::abort();
      volatile uint8_t sink = t.nbytes ? t.data[t.nbytes - 1] : 0;  // ASan checks the last byte
      (void)sink;
    }
  } catch (const stepaudio::Error&) {
  }
  return 0;
}
