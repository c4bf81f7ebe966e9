// The 128-bin Slaney mel filterbank for 16 kHz, n_fft 400 (librosa.filters.mel(sr=16000, n_fft=400,
// n_mels=128), which the official code ships as mel_filters.npz; torchaudio's melscale_fbanks with
// norm="slaney", mel_scale="slaney" is the same formula). Built once in double, stored in float32
// like the shipped table, with each row's non-zero bin range so applying it costs ~2 MACs per bin.
// Thread-safety: immutable after the first call of mel_filters().
#pragma once

#include <vector>

namespace stepaudio::audio {

struct MelFilters {
  struct Row {
    int begin = 0, end = 0;      // non-zero FFT bins [begin, end)
    std::vector<float> weights;  // weights[k - begin]
  };
  std::vector<Row> rows;  // kNumMels rows
};

const MelFilters& mel_filters();

// The dense matrix [kNumMels][201], for tests.
std::vector<float> mel_filter_matrix();

}  // namespace stepaudio::audio
