// Shared preamble of the AVX-512 kernel files (include it only from those .cpp files): the target
// attribute of the ISA level that ops/cpu.cpp selects as "avx512" (F/BW/VL/DQ + VNNI + BF16, with
// FMA and F16C), and the silencing of GCC 12's false -Wmaybe-uninitialized on _mm512_undefined_*()
// (GCC bug 105593; nothing here reads an uninitialised value; clang has no such warning group).
#pragma once

#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#define SA_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,fma,f16c")))
// For the inner-loop lambdas of the kernels: always inlined, so their accumulators stay in
// registers. Release builds inlined them anyway; clang under AddressSanitizer did not (the
// instrumented body grew past its threshold), which sent every accumulator through checked memory:
// a sanitized tiny-model run, the sanitized test suite's main cost, took 10.6 s instead of 8.4 s.
#define SA_AVX512_STEP SA_AVX512 __attribute__((always_inline))
