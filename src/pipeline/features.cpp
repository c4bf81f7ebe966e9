#include <chrono>

#include "stepaudio/pipeline.h"

namespace stepaudio {
namespace {
double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

AudioFeatures compute_features(const audio::DecodedAudio& decoded,
                               const audio::ChunkOptions& chunking) {
  AudioFeatures f;
  auto t0 = std::chrono::steady_clock::now();
  std::vector<float> pcm = audio::to_16k(decoded);
  f.resample_ms = ms_since(t0);
  f.duration_s = double(pcm.size()) / audio::kSampleRate;
  t0 = std::chrono::steady_clock::now();
  for (const audio::Chunk& c : audio::plan_chunks(pcm.data(), pcm.size(), chunking)) {
    audio::LogMel mel = audio::log_mel(pcm.data() + c.begin, c.end - c.begin);
    size_t patches = size_t(audio::audio_patch_tokens(mel.frames));
    if (patches == 0) continue;  // a sliver of a few ms: nothing the encoder can represent
    f.chunks.push_back(c);
    f.audio_patches.push_back(patches);
    f.mels.push_back({std::move(mel.data), size_t(audio::kNumMels), size_t(mel.frames)});
  }
  f.mel_ms = ms_since(t0);
  return f;
}

}  // namespace stepaudio
