#include "audio/fft.h"

#include <cmath>

#include "stepaudio/error.h"

namespace stepaudio::audio {
namespace {
// Plain complex product: std::complex's operator* checks for NaN/inf (C99 Annex G) via a slow call.
inline std::complex<double> cmul(std::complex<double> a, std::complex<double> b) {
  return {a.real() * b.real() - a.imag() * b.imag(), a.real() * b.imag() + a.imag() * b.real()};
}
}  // namespace

Fft::Fft(int n) : n_(n) {
  if (n < 1) throw Error(Errc::invalid_argument, "FFT size must be positive");
  std::vector<int> radices;
  int rest = n;
  for (int r : {4, 2, 3, 5}) {
    while (rest % r == 0) {
      radices.push_back(r);
      rest /= r;
    }
  }
  if (rest != 1) throw Error(Errc::invalid_argument, "FFT size must factor into 2, 3, 5");
  int length = n, stride = 1;
  for (int r : radices) {
    Stage st{r, length / r, stride, {}};
    st.twiddle.resize(size_t(st.m) * r);
    for (int p = 0; p < st.m; ++p)
      for (int j = 0; j < r; ++j)
        st.twiddle[size_t(p) * r + j] = std::polar(1.0, -2.0 * M_PI * double(j) * p / length);
    stages_.push_back(std::move(st));
    length /= r;
    stride *= r;
  }
}

void Fft::transform(std::complex<double>* data, std::complex<double>* work) const {
  // Stage with length L = radix * m and stride s: for p < m, q < s, take the radix inputs
  // a_k = x[q + s (p + k m)], their small DFT b_j = sum_k a_k w_r^(jk), and write
  // y[q + s (r p + j)] = b_j w_L^(j p). After all stages the output is in natural order.
  std::complex<double>* x = data;
  std::complex<double>* y = work;
  std::complex<double> a[5], roots[5];
  for (const Stage& st : stages_) {
    const int r = st.radix, m = st.m, s = st.stride;
    for (int k = 0; k < r; ++k) roots[k] = std::polar(1.0, -2.0 * M_PI * k / r);
    for (int p = 0; p < m; ++p) {
      const std::complex<double>* tw = &st.twiddle[size_t(p) * r];
      for (int q = 0; q < s; ++q) {
        for (int k = 0; k < r; ++k) a[k] = x[q + s * (p + k * m)];
        for (int j = 0; j < r; ++j) {
          std::complex<double> b = a[0];
          for (int k = 1; k < r; ++k) b += cmul(a[k], roots[(j * k) % r]);
          y[q + s * (r * p + j)] = cmul(b, tw[j]);
        }
      }
    }
    std::swap(x, y);
  }
  if (x != data)
    for (int i = 0; i < n_; ++i) data[i] = x[i];
}

}  // namespace stepaudio::audio
