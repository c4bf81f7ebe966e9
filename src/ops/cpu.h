// What the CPU can do, detected once per process; kernels are chosen from it (runtime dispatch).
// STEPAUDIO_ISA=generic in the environment forces the portable scalar kernels (for comparisons);
// =avx2 on an AVX-512 machine and =neon on an ARM CPU with dot product pick the lesser kernels.
// Thread-safety: the detection is a function-local static (thread-safe initialisation).
#pragma once

namespace stepaudio::ops {

enum class Isa {
  generic,   // portable C++ (any architecture, the test oracle)
  avx2,      // x86-64 AVX2 + FMA + F16C
  avx512,    // x86-64 AVX-512 F/BW/VL/DQ + VNNI + BF16 (Zen 4, Sapphire Rapids)
  neon,      // aarch64 Advanced SIMD (baseline on every aarch64 CPU)
  neon_dot,  // aarch64 NEON + ASIMDDP (sdot: Cortex-A55/A76 and later, Apple M1 and later)
};

Isa cpu_isa();
const char* isa_name(Isa isa);

}  // namespace stepaudio::ops
