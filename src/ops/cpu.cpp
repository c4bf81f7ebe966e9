#include "ops/cpu.h"

#include <cstdlib>
#include <cstring>

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace stepaudio::ops {

namespace {
Isa detect() {
  const char* force = std::getenv("STEPAUDIO_ISA");
  if (force && std::strcmp(force, "generic") == 0) return Isa::generic;
#if defined(__x86_64__)
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bf16");
  if (avx512 && !(force && std::strcmp(force, "avx2") == 0)) return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
#elif defined(__aarch64__)
  // NEON is part of the aarch64 base ISA; the int8 dot product (sdot) is optional (ARMv8.2+).
  // Linux reports it in AT_HWCAP; every arm64 Mac (Apple M1 and later) has it.
  bool dot = false;
#if defined(__linux__)
  dot = (getauxval(AT_HWCAP) & (1ul << 20)) != 0;  // HWCAP_ASIMDDP
#elif defined(__APPLE__)
  dot = true;
#endif
  if (dot && !(force && std::strcmp(force, "neon") == 0)) return Isa::neon_dot;
  return Isa::neon;
#endif
  return Isa::generic;
}
}  // namespace

Isa cpu_isa() {
  static const Isa isa = detect();
  return isa;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512:
      return "avx512";
    case Isa::avx2:
      return "avx2";
    case Isa::neon:
      return "neon";
    case Isa::neon_dot:
      return "neon+dotprod";
    default:
      return "generic";
  }
}

}  // namespace stepaudio::ops
