// The sdot (ARMv8.2 ASIMDDP) flavour of the int8 GEMV in gemv_q.h. This whole file is compiled for
// +dotprod (a pragma, so the build needs no per-file flags) and is reached only when
// ops::cpu_isa() == Isa::neon_dot; its helpers have internal linkage (gemv_q.h), so nothing built
// here can be picked by the baseline code.
#if defined(__aarch64__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("dotprod"))), apply_to = function)
#elif defined(__GNUC__)
// GCC's arm_neon.h defines sdot under exactly this target (a bare "+dotprod" does not match it).
// ASIMDDP exists only on ARMv8.2 and later, so the v8.2 baseline it implies is present too.
#pragma GCC target("arch=armv8.2-a+dotprod")
#endif

#include <arm_neon.h>

#include "ops/arm/gemv_q.h"

namespace stepaudio::ops::arm {

namespace {
// acc + per-lane sums of 4 int8 products. Clang before 16 declares vdotq_s32 only when the whole
// file targets dotprod (__ARM_FEATURE_DOTPROD, e.g. Apple's default), so it gets the instruction.
inline int32x4_t sdot(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if defined(__clang__) && !defined(__ARM_FEATURE_DOTPROD)
  __asm__(".arch armv8.2-a+dotprod\n\tsdot %0.4s, %1.16b, %2.16b" : "+w"(acc) : "w"(a), "w"(b));
  return acc;
#else
  return vdotq_s32(acc, a, b);
#endif
}

// One block: two 16-lane sdot steps, each lane an exact sum of 4 int8 products.
struct SdotDot {
  static int32x4_t run(int8x16_t wl, int8x16_t wh, const int8_t* x) {
    return sdot(sdot(vdupq_n_s32(0), wl, vld1q_s8(x)), wh, vld1q_s8(x + 16));
  }
};
}  // namespace

void detail::gemv_q_sdot(ThreadPool& pool, const float* x, size_t M, const WeightView& W,
                         const float* bias, float* y) {
  gemv_q<SdotDot>(pool, x, M, W, bias, y);
}

}  // namespace stepaudio::ops::arm

#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
