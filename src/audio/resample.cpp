// torchaudio.transforms.Resample (torchaudio 0.13, functional.py _get_sinc_resample_kernel and
// _apply_sinc_resample_kernel) with its defaults: sinc_interpolation, lowpass_filter_width 6,
// rolloff 0.99. The kernel is built in double exactly as torchaudio builds it and stored in
// float32; the convolution runs in float32 like torch's conv1d.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "stepaudio/audio.h"
#include "stepaudio/error.h"

namespace stepaudio::audio {
namespace {
constexpr int kLowpassFilterWidth = 6;
constexpr double kRolloff = 0.99;
}  // namespace

Resampler::Resampler(int from_rate, int to_rate) {
  if (from_rate <= 0 || to_rate <= 0)
    throw Error(Errc::invalid_argument, "resampler rates must be positive");
  gcd_ = std::gcd(from_rate, to_rate);
  orig_ = from_rate / gcd_;
  new_ = to_rate / gcd_;
  if (orig_ == new_) return;  // Resample.forward returns the input unchanged
  const double base_freq = std::min(orig_, new_) * kRolloff;
  width_ = static_cast<int>(std::ceil(kLowpassFilterWidth * double(orig_) / base_freq));
  taps_ = 2 * width_ + orig_;
  if (int64_t(taps_) * new_ > (int64_t(1) << 26))
    throw Error(Errc::too_large, "resampling " + std::to_string(from_rate) + " Hz -> " +
                                     std::to_string(to_rate) +
                                     " Hz needs a kernel that is too large");
  kernel_.assign(size_t(taps_) * new_, 0.0f);
  tap_begin_.assign(new_, 0);
  tap_end_.assign(new_, 0);
  const double scale = base_freq / orig_;
  for (int p = 0; p < new_; ++p) {
    // torchaudio: torch.arange(0, -new, -1)[:, None, None] / new is int64 / int -> float32, then
    // promoted to float64 when added to idx (float64). Reproduce that float32 rounding.
    const double phase = static_cast<double>(static_cast<float>(-p) / static_cast<float>(new_));
    int first = taps_, last = 0;
    for (int j = 0; j < taps_; ++j) {
      double t = (phase + double(j - width_) / orig_) * base_freq;
      t = std::clamp(t, double(-kLowpassFilterWidth), double(kLowpassFilterWidth));
      double c = std::cos(t * M_PI / kLowpassFilterWidth / 2);
      double window = c * c;
      t *= M_PI;
      double sinc = t == 0.0 ? 1.0 : std::sin(t) / t;
      float w = static_cast<float>(sinc * (window * scale));
      kernel_[size_t(p) * taps_ + j] = w;
      // Outside |t| < 6 the window is cos(±pi/2)^2 ~ 1e-33: such taps change no float32 sum.
      if (std::fabs(w) > 1e-30f) {
        first = std::min(first, j);
        last = j + 1;
      }
    }
    tap_begin_[p] = first < last ? first : 0;
    tap_end_[p] = first < last ? last : 0;
  }
}

int64_t Resampler::input_first(size_t out) const {
  return int64_t(out / new_) * orig_ - width_ + tap_begin_[out % new_];
}
int64_t Resampler::input_end(size_t out) const {
  return int64_t(out / new_) * orig_ - width_ + tap_end_[out % new_];
}

float Resampler::output(size_t out, const float* x, int64_t x_first, int64_t len) const {
  // Output frame i, phase p: y[i*new + p] = sum_j kernel[p][j] * padded[i*orig + j], where padded
  // is x with `width` zeros on the left and `width + orig` on the right.
  const int64_t frame = int64_t(out / new_);
  const int p = int(out % new_);
  const float* k = &kernel_[size_t(p) * taps_];
  const int64_t origin = frame * orig_ - width_;  // input index of tap 0
  int j0 = tap_begin_[p], j1 = tap_end_[p];
  if (origin + j0 < 0) j0 = int(-origin);
  if (origin + j1 > len) j1 = int(len - origin);
  const int count = j1 - j0;
  // Never form a pointer outside the buffer.
  const float* xs = count > 0 ? x + (origin + j0 - x_first) : x;
  const float* ks = k + j0;
  // Four partial sums: lets the compiler keep several FMAs in flight.
  float acc[4] = {0, 0, 0, 0};
  int j = 0;
  for (; j + 4 <= count; j += 4) {
    acc[0] += ks[j] * xs[j];
    acc[1] += ks[j + 1] * xs[j + 1];
    acc[2] += ks[j + 2] * xs[j + 2];
    acc[3] += ks[j + 3] * xs[j + 3];
  }
  for (; j < count; ++j) acc[0] += ks[j] * xs[j];
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

std::vector<float> Resampler::process(const float* x, size_t n) const {
  if (identity()) return std::vector<float>(x, x + n);
  // Length ceil(n * new / orig).
  const size_t target = (uint64_t(n) * new_ + orig_ - 1) / orig_;
  std::vector<float> y(target);
  for (size_t out = 0; out < target; ++out) y[out] = output(out, x, 0, int64_t(n));
  return y;
}

StreamResampler::StreamResampler(int from_rate, int to_rate) : r_(from_rate, to_rate) {}

void StreamResampler::push(const float* x, size_t n, std::vector<float>& out) {
  if (r_.identity()) {
    out.insert(out.end(), x, x + n);
    return;
  }
  buf_.insert(buf_.end(), x, x + n);
  n_in_ += int64_t(n);
  // An output is final once every tap it reads has arrived, and it exists whatever the final
  // length (index below ceil(n_in * new / orig), the smallest possible output length).
  const uint64_t surely = (uint64_t(n_in_) * r_.new_ + r_.orig_ - 1) / r_.orig_;
  while (next_out_ < surely && r_.input_end(next_out_) <= n_in_) {
    out.push_back(r_.output(next_out_, buf_.data(), buf_first_, n_in_));
    ++next_out_;
  }
  // Drop the input no later output reads (origins only grow); compact when half is dead.
  const int64_t keep =
      std::min(n_in_, std::max<int64_t>(0, int64_t(next_out_ / r_.new_) * r_.orig_ - r_.width_));
  if (keep - buf_first_ > int64_t(buf_.size() / 2)) {
    buf_.erase(buf_.begin(), buf_.begin() + (keep - buf_first_));
    buf_first_ = keep;
  }
}

void StreamResampler::finish(std::vector<float>& out) {
  if (r_.identity()) return;
  const uint64_t target = (uint64_t(n_in_) * r_.new_ + r_.orig_ - 1) / r_.orig_;
  for (; next_out_ < target; ++next_out_)
    out.push_back(r_.output(next_out_, buf_.data(), buf_first_, n_in_));
}

std::vector<float> to_16k(const DecodedAudio& audio) {
  if (audio.sample_rate == kSampleRate) return audio.samples;
  return Resampler(audio.sample_rate, kSampleRate)
      .process(audio.samples.data(), audio.samples.size());
}

}  // namespace stepaudio::audio
