// libFuzzer target: arbitrary bytes parsed as a safetensors file from memory. The parser must
// either succeed (and every tensor must lie inside the buffer) or throw stepaudio::Error; any other
// exception, crash or sanitizer report is a bug. Build: CXX=clang++ cmake -DSTEPAUDIO_FUZZ=ON ...
#include <cstdint>
#include <cstdlib>

#include "model/safetensors.h"
#include "stepaudio/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto tensors = stepaudio::model::parse_safetensors(data, size, "fuzz");
    for (const auto& [name, t] : tensors) {
      if (t.data < data || t.data + t.nbytes > data + size) std::abort();
      volatile uint8_t sink =
          t.nbytes ? t.data[t.nbytes - 1] : 0;  // touch the last byte (ASan checks it)
      (void)sink;
    }
  } catch (const stepaudio::Error&) {
  }
  return 0;
}
