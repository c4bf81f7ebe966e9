// libFuzzer target: arbitrary bytes -> in-memory decode -> resample -> chunk plan -> log-mel.
// Any outcome but a stepaudio::Error or a finite mel is a bug (ASan/UBSan report the rest).
#include <cmath>
#include <cstdint>
#include <cstdlib>

#include "stepaudio/audio.h"
#include "stepaudio/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace stepaudio;
  audio::DecodeOptions opt;
  opt.max_seconds = 30;     // keeps each input's work and memory small
  opt.timeout_seconds = 5;  // and its time
  opt.channels = size % 2 ? audio::ChannelMode::mix : audio::ChannelMode::first;
  try {
    audio::DecodedAudio decoded = audio::decode_memory(data, size, opt);
    std::vector<float> pcm = audio::to_16k(decoded);
    for (const auto& chunk : audio::plan_chunks(pcm.data(), pcm.size())) {
      audio::LogMel mel = audio::log_mel(pcm.data() + chunk.begin, chunk.end - chunk.begin);
      for (float v : mel.data)
        if (!std::isfinite(v)) std::abort();  // decode rejects non-finite samples
    }
  } catch (const Error&) {
    // expected for malformed input
  }
  return 0;
}
