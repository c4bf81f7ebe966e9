// The official log_mel_spectrogram of Step-Audio 2 (Whisper's recipe with 128 bins and 479 samples
// of right padding), see DESIGN.md §3 and ../shared/data/tokenizer/prompt_format.md.
#include <algorithm>
#include <cmath>
#include <complex>

#include "audio/fft.h"
#include "audio/mel_filters.h"
#include "stepaudio/audio.h"

namespace stepaudio::audio {
namespace {

constexpr int kBins = kFftSize / 2 + 1;   // 201 one-sided frequency bins
constexpr int kCentrePad = kFftSize / 2;  // torch.stft(center=True) reflect-pads n_fft/2 each side

struct Tables {
  Fft fft{kFftSize};
  double window[kFftSize];  // periodic Hann: 0.5 - 0.5 cos(2 pi j / N), as torch.hann_window(400)
  Tables() {
    for (int j = 0; j < kFftSize; ++j)
      window[j] = double(float(0.5 - 0.5 * std::cos(2.0 * M_PI * j / kFftSize)));
  }
};

const Tables& tables() {
  static const Tables t;  // thread-safe initialisation (C++11 magic statics)
  return t;
}

}  // namespace

LogMel log_mel(const float* pcm, size_t n) {
  const Tables& tab = tables();
  const MelFilters& filters = mel_filters();
  const int64_t len = int64_t(n) + kRightPadding;  // signal after the 479 zero samples
  LogMel out;
  out.frames = int(len / kHopLength);  // 1 + len/hop centred frames, minus the dropped last one
  out.data.assign(size_t(kNumMels) * out.frames, 0.0f);

  // Sample i of the reflect-padded, zero-extended signal (i relative to the unpadded start).
  auto at = [&](int64_t i) -> double {
    if (i < 0) i = -i;
    if (i >= len) i = 2 * (len - 1) - i;
    return i < int64_t(n) ? double(pcm[i]) : 0.0;
  };

  std::vector<std::complex<double>> z(kFftSize), work(kFftSize);
  double power[2][kBins];
  float log_max = -1e30f;
  // Two real frames per complex FFT: frame a in the real part, frame b in the imaginary part;
  // X_a[k] = (Z[k] + conj Z[N-k]) / 2 and X_b[k] = (Z[k] - conj Z[N-k]) / 2i.
  for (int f = 0; f < out.frames; f += 2) {
    const bool pair = f + 1 < out.frames;
    const int64_t start = int64_t(f) * kHopLength - kCentrePad;
    for (int j = 0; j < kFftSize; ++j) {
      double a = at(start + j) * tab.window[j];
      double b = pair ? at(start + kHopLength + j) * tab.window[j] : 0.0;
      z[j] = {a, b};
    }
    tab.fft.transform(z.data(), work.data());
    for (int k = 0; k < kBins; ++k) {
      std::complex<double> zk = z[k], zc = std::conj(z[(kFftSize - k) % kFftSize]);
      std::complex<double> xa = (zk + zc) * 0.5, xb = (zk - zc) * std::complex<double>(0, -0.5);
      power[0][k] = std::norm(xa);
      power[1][k] = std::norm(xb);
    }
    for (int which = 0; which < (pair ? 2 : 1); ++which) {
      for (int m = 0; m < kNumMels; ++m) {
        const auto& row = filters.rows[m];
        double acc = 0;
        for (int k = row.begin; k < row.end; ++k)
          acc += double(row.weights[k - row.begin]) * power[which][k];
        float v = float(std::log10(std::max(acc, 1e-10)));
        out.data[size_t(m) * out.frames + f + which] = v;
        log_max = std::max(log_max, v);
      }
    }
  }
  const float floor = log_max - 8.0f;
  for (float& v : out.data) v = (std::max(v, floor) + 4.0f) / 4.0f;
  return out;
}

}  // namespace stepaudio::audio
