// A small mixed-radix complex FFT (Stockham autosort, decimation in frequency) for the fixed sizes
// of the front end (n_fft = 400 = 4*4*5*5). Double precision: the STFT's error then stays far below
// the float32 reference's own, so the log-mel comparison measures the reference, not us.
// Thread-safety: an Fft is immutable after construction; transform() uses caller-owned buffers.
#pragma once

#include <complex>
#include <vector>

namespace stepaudio::audio {

class Fft {
 public:
  explicit Fft(int n);  // n must factor into 2, 3, 4, 5 (throws invalid_argument otherwise)
  int size() const { return n_; }
  // Forward DFT X[k] = sum_j x[j] exp(-2 pi i j k / n) of data (size n); work must have size n.
  void transform(std::complex<double>* data, std::complex<double>* work) const;

 private:
  struct Stage {
    int radix, m, stride;                       // m = length / radix of this stage
    std::vector<std::complex<double>> twiddle;  // [p * radix + j] = exp(-2 pi i j p / length)
  };
  int n_;
  std::vector<Stage> stages_;
};

}  // namespace stepaudio::audio
