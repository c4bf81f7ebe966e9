#include "audio/mel_filters.h"

#include <algorithm>
#include <cmath>

#include "stepaudio/audio.h"

namespace stepaudio::audio {
namespace {

constexpr int kBins = kFftSize / 2 + 1;

// Slaney's mel scale (librosa htk=False): linear below 1 kHz, logarithmic above.
constexpr double kFSp = 200.0 / 3.0;
constexpr double kMinLogHz = 1000.0;
constexpr double kMinLogMel = kMinLogHz / kFSp;  // 15
const double kLogStep = std::log(6.4) / 27.0;

double hz_to_mel(double hz) {
  return hz >= kMinLogHz ? kMinLogMel + std::log(hz / kMinLogHz) / kLogStep : hz / kFSp;
}
double mel_to_hz(double mel) {
  return mel >= kMinLogMel ? kMinLogHz * std::exp(kLogStep * (mel - kMinLogMel)) : kFSp * mel;
}

std::vector<double> dense_filters() {
  // Triangles between n_mels + 2 points equally spaced in mel from 0 to sr/2, evaluated at the FFT
  // bin frequencies k * sr / n_fft, each scaled by 2 / (upper - lower edge in Hz) (Slaney area
  // norm).
  std::vector<double> pts(kNumMels + 2);
  const double mel_max = hz_to_mel(kSampleRate / 2.0);
  for (int i = 0; i < kNumMels + 2; ++i) pts[i] = mel_to_hz(mel_max * i / (kNumMels + 1));
  std::vector<double> w(size_t(kNumMels) * kBins, 0.0);
  for (int m = 0; m < kNumMels; ++m) {
    const double lo = pts[m], mid = pts[m + 1], hi = pts[m + 2];
    const double enorm = 2.0 / (hi - lo);
    for (int k = 0; k < kBins; ++k) {
      const double f = double(k) * kSampleRate / kFftSize;
      const double lower = (f - lo) / (mid - lo), upper = (hi - f) / (hi - mid);
      w[size_t(m) * kBins + k] = std::max(0.0, std::min(lower, upper)) * enorm;
    }
  }
  return w;
}

}  // namespace

const MelFilters& mel_filters() {
  static const MelFilters filters = [] {
    MelFilters f;
    const std::vector<double> w = dense_filters();
    f.rows.resize(kNumMels);
    for (int m = 0; m < kNumMels; ++m) {
      auto& row = f.rows[m];
      const double* r = &w[size_t(m) * kBins];
      int b = 0, e = kBins;
      while (b < kBins && float(r[b]) == 0.0f) ++b;
      while (e > b && float(r[e - 1]) == 0.0f) --e;
      row.begin = b;
      row.end = e;
      for (int k = b; k < e; ++k) row.weights.push_back(float(r[k]));
    }
    return f;
  }();
  return filters;
}

std::vector<float> mel_filter_matrix() {
  std::vector<float> dense(size_t(kNumMels) * kBins, 0.0f);
  const MelFilters& f = mel_filters();
  for (int m = 0; m < kNumMels; ++m)
    for (int k = f.rows[m].begin; k < f.rows[m].end; ++k)
      dense[size_t(m) * kBins + k] = f.rows[m].weights[k - f.rows[m].begin];
  return dense;
}

}  // namespace stepaudio::audio
