// FFT, resampler, mel filters, log-mel and token counts against independent formulas.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <numeric>
#include <random>

#include "audio/fft.h"
#include "audio/mel_filters.h"
#include "stepaudio/audio.h"
#include "stepaudio/error.h"

using namespace stepaudio;
using namespace stepaudio::audio;

TEST(Fft, MatchesNaiveDft) {
  std::mt19937 rng(7);
  std::normal_distribution<double> g;
  for (int n : {1, 2, 3, 4, 5, 8, 12, 20, 60, 400}) {
    std::vector<std::complex<double>> x(n), work(n), naive(n);
    for (auto& v : x) v = {g(rng), g(rng)};
    for (int k = 0; k < n; ++k)
      for (int j = 0; j < n; ++j)
        naive[k] += x[j] * std::polar(1.0, -2.0 * M_PI * double(j) * k / n);
    Fft fft(n);
    fft.transform(x.data(), work.data());
    // Double precision: a radix-r FFT's error grows like eps * log(n) * |x|; 1e-9 is far above it.
    for (int k = 0; k < n; ++k)
      EXPECT_LT(std::abs(x[k] - naive[k]), 1e-9 * n) << "n=" << n << " k=" << k;
  }
  EXPECT_THROW(Fft(7), Error);
}

// torchaudio's sinc resampler written out directly (one output sample at a time, in double) from
// its definition: y[i*new+p] = sum_j k[p][j] * x[i*orig + j - width].
static std::vector<double> naive_resample(const std::vector<float>& x, int from, int to) {
  int g = std::gcd(from, to), orig = from / g, nw = to / g;
  double base = std::min(orig, nw) * 0.99;
  int width = int(std::ceil(6.0 * orig / base));
  size_t target = (x.size() * size_t(nw) + orig - 1) / orig;
  std::vector<double> y(target);
  for (size_t o = 0; o < target; ++o) {
    int64_t i = int64_t(o / nw);
    int p = int(o % nw);
    double acc = 0;
    for (int j = 0; j < 2 * width + orig; ++j) {
      int64_t src = i * orig + j - width;
      if (src < 0 || src >= int64_t(x.size())) continue;
      double t = (double(float(-p) / float(nw)) + double(j - width) / orig) * base;
      t = std::max(-6.0, std::min(6.0, t));
      double w = std::pow(std::cos(t * M_PI / 12), 2);
      t *= M_PI;
      double k = (t == 0 ? 1.0 : std::sin(t) / t) * w * base / orig;
      acc += double(float(k)) * x[size_t(src)];
    }
    y[o] = acc;
  }
  return y;
}

TEST(Resampler, MatchesTorchaudioDefinition) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1, 1);
  for (auto [from, to] : std::vector<std::pair<int, int>>{{44100, 16000},
                                                          {48000, 16000},
                                                          {8000, 16000},
                                                          {22050, 16000},
                                                          {11025, 16000},
                                                          {24000, 16000}}) {
    std::vector<float> x(3001);
    for (auto& v : x) v = u(rng);
    Resampler r(from, to);
    auto y = r.process(x.data(), x.size());
    auto ref = naive_resample(x, from, to);
    ASSERT_EQ(y.size(), ref.size()) << from;
    // float32 accumulation of <= ~50 significant taps of |w x| <= 1: <= 50 * 6e-8 = 3e-6.
    for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], ref[i], 3e-6) << from << " i=" << i;
  }
}

TEST(Resampler, LengthAndIdentity) {
  std::vector<float> x(44101, 0.25f);
  EXPECT_EQ(Resampler(44100, 16000).process(x.data(), x.size()).size(),
            16001u);  // ceil(44101*160/441)
  EXPECT_EQ(Resampler(16000, 16000).process(x.data(), 10), std::vector<float>(10, 0.25f));
  EXPECT_TRUE(Resampler(48000, 16000).process(x.data(), 0).empty());
  EXPECT_THROW(Resampler(0, 16000), Error);
}

TEST(MelFilters, MatchSlaneyValues) {
  // Values of librosa.filters.mel(sr=16000, n_fft=400, n_mels=128) (= torchaudio melscale_fbanks
  // slaney/slaney evaluated in float64), printed by tests/reference/frontend.py.
  auto w = mel_filter_matrix();
  auto at = [&](int m, int k) { return w[size_t(m) * 201 + k]; };
  EXPECT_FLOAT_EQ(at(0, 1), 0.012373986653983593f);
  EXPECT_FLOAT_EQ(at(10, 7), 0.0010848019737750292f);
  EXPECT_FLOAT_EQ(at(64, 43), 0.018091518431901932f);
  EXPECT_FLOAT_EQ(at(100, 102), 0.00940941646695137f);
  EXPECT_FLOAT_EQ(at(127, 198), 0.0022285603918135166f);
  EXPECT_EQ(mel_filters().rows[0].begin, 1);
  EXPECT_EQ(mel_filters().rows[0].end, 2);
  EXPECT_EQ(mel_filters().rows[127].begin, 191);
  EXPECT_EQ(mel_filters().rows[127].end, 200);
}

TEST(LogMel, ShapeAndDynamicRange) {
  for (size_t n : {0ul, 1ul, 159ul, 160ul, 16000ul, 400000ul}) {
    std::vector<float> x(n);
    for (size_t i = 0; i < n; ++i) x[i] = float(0.3 * std::sin(0.05 * double(i)));
    LogMel mel = log_mel(x.data(), n);
    ASSERT_EQ(mel.frames, int((n + 479) / 160));
    ASSERT_EQ(mel.data.size(), size_t(128) * mel.frames);
    float hi = *std::max_element(mel.data.begin(), mel.data.end());
    float lo = *std::min_element(mel.data.begin(), mel.data.end());
    EXPECT_GE(lo, hi - 2.0f - 1e-6f);  // the max - 8 floor, after (x + 4) / 4
  }
  // Silence: every bin is log10(1e-10) = -10 -> (-10 + 4) / 4 = -1.5.
  std::vector<float> zeros(1600);
  for (float v : log_mel(zeros.data(), zeros.size()).data) EXPECT_FLOAT_EQ(v, -1.5f);
}

TEST(LogMel, SineLandsInItsMelBin) {
  // A 1 kHz tone: the loudest mel bin of a middle frame is the one whose filter peaks nearest 1 kHz
  // (FFT bin 25 = 1000 Hz).
  std::vector<float> x(16000);
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = float(0.5 * std::sin(2 * M_PI * 1000.0 * double(i) / 16000));
  LogMel mel = log_mel(x.data(), x.size());
  int frame = mel.frames / 2, best = 0;
  for (int m = 1; m < 128; ++m)
    if (mel.data[size_t(m) * mel.frames + frame] > mel.data[size_t(best) * mel.frames + frame])
      best = m;
  auto w = mel_filter_matrix();
  int peak = 0;
  for (int m = 1; m < 128; ++m)
    if (w[size_t(m) * 201 + 25] > w[size_t(peak) * 201 + 25]) peak = m;
  EXPECT_EQ(best, peak);
}

TEST(TokenCount, OfficialFormula) {
  EXPECT_EQ(mel_frames(400000), 2502);
  EXPECT_EQ(audio_patch_tokens(2502), 313);               // a full 25 s chunk (prompt_format.md)
  EXPECT_EQ(audio_patch_tokens(mel_frames(84335)), 66);   // multi_turn_round1.wav (manifest)
  EXPECT_EQ(audio_patch_tokens(mel_frames(109413)), 86);  // multi_turn_round2.wav
  EXPECT_EQ(audio_patch_tokens(2), 0);
  EXPECT_EQ(audio_patch_tokens(4), 0);  // L = 2 -> enc = (3 // 2) // 2 = 0
  EXPECT_EQ(audio_patch_tokens(5), 1);  // L = 3 -> enc = 1
}
