// Constants shared by the AVX-512 and AVX2 transcendental functions (math_avx512.h,
// elementwise_avx2.cpp), so the two vector widths evaluate the same approximations.
#pragma once

namespace stepaudio::ops::x86::coeff {
// ln 2 split for Cody-Waite reduction: high part exact in float, then the rest.
inline constexpr float kLn2Hi = 0.693145751953125f, kLn2Lo = 1.4286068202862268e-06f;
inline constexpr float kLog2e = 1.44269504088896341f;
// e^r, |r| <= 0.35: Taylor coefficients 1/k!, k = 0..7 (truncation < 6e-9 relative).
inline constexpr float kExp[8] = {1.0f,      1.0f,       0.5f,       1.0f / 6,
                                  1.0f / 24, 1.0f / 120, 1.0f / 720, 1.0f / 5040};
// erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z / 2): Numerical Recipes' erfcc (< 1.2e-7).
inline constexpr float kErfc[10] = {-1.26551223f, 1.00002368f, 0.37409196f,  0.09678418f,
                                    -0.18628806f, 0.27886807f, -1.13520398f, 1.48851587f,
                                    -0.82215223f, 0.17087277f};
}  // namespace stepaudio::ops::x86::coeff
