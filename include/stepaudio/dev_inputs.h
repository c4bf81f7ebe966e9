// Developer inputs for `stepaudio run --mel/--prompt-ids` until the audio front end and tokenizer
// are wired in: .npy files as written by numpy / `stepaudio mel`.
// Thread-safety: free functions without shared state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "stepaudio/model.h"

namespace stepaudio {

// A float32 [n_mels][T] .npy. Throws Error(io) / Error(invalid_argument) for a bad file or shape.
MelChunk read_mel_npy(const std::string& path);
// An int32 (or int64) 1-D .npy of token ids.
std::vector<int32_t> read_ids_npy(const std::string& path);

}  // namespace stepaudio
