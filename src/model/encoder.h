// The audio encoder (Whisper-style, with Step-Audio2's padding mask and pooling) and the adapter
// that maps encoder rows to decoder embeddings.
// Thread-safety: reads the immutable Model; the pool is the caller's.
#pragma once

#include <functional>

#include <cstddef>
#include <vector>

#include "model/model_data.h"

namespace stepaudio::model {

struct AudioEmbedding {
  std::vector<float> encoder;  // [enc_rows][n_state], after after_norm
  size_t enc_rows = 0;
  std::vector<float> adapter;  // [n_rows][llm_dim], replaces the <audio_patch> embeddings
  size_t n_rows = 0;
};

// mel: [n_mels][T] for one chunk (the last 2 frames are padding: valid length T-2).
// between_blocks (may be empty) is called after every encoder block but the last: a scheduler
// takes decode steps of other sessions there. Throws Error(invalid_argument) when T is too short
// or too long for n_audio_ctx.
AudioEmbedding encode_audio(const Model& m, ops::ThreadPool& pool, const float* mel, size_t n_mels,
                            size_t T, const std::function<void()>& between_blocks = {});

}  // namespace stepaudio::model
