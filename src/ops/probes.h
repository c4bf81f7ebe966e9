// Short built-in probes of the machine's limits, measured in the same run as a benchmark so every
// speed can be stated as a ratio to this machine's own bound (`stepaudio bench`).
//   read bandwidth: each pool thread streams its slice of a large anonymous huge-page buffer
//                   (bigger than any cache), 1 thread and all threads;
//   peaks: independent chains of 512-bit FMA (f32), vdpbf16ps (bf16) and vpdpbusd (u8 x s8) on
//          every thread; an op count of 2 per multiply-add.
// Each probe is repeated and the best repetition is the limit (a limit is what the machine can
// reach; interference from other processes only lowers a repetition).
// Thread-safety: uses the caller's pool; one call at a time per pool.
#pragma once

#include <cstddef>

#include "ops/thread_pool.h"

namespace stepaudio::ops {

struct MachineLimits {
  int threads = 1;
  double read_gbps_1thread = 0, read_gbps = 0;  // GB/s = 1e9 bytes/s
  double peak_fp32_gflops = 0, peak_bf16_gflops = 0, peak_int8_gops = 0;
  const char* isa = "generic";
};

// buffer_bytes: size of the bandwidth buffer (default 512 MiB; freed before returning).
MachineLimits measure_machine(ThreadPool& pool, size_t buffer_bytes = size_t{512} << 20);

// The decoder-pattern bandwidth probe: one pass reading every region once, in order, each split
// into one contiguous range per pool thread (one parallel_for per region, as the decode GEMV splits
// a matrix's rows); returns the pass's GB/s. Given the model's own weight matrices it measures the
// memory the decode actually streams, with its hand-offs, and no arithmetic: an upper bound for
// decode. Why not a separate buffer: on these VMs the bandwidth of anonymous memory depends on
// where it lands (the same 2 GiB probe read 29-56 GB/s from one allocation to the next) and
// first-touching fresh guest memory took up to 5 s per 2 GiB; the weights are already resident.
struct ReadRegion {
  const void* data;
  size_t bytes;
};
double read_pass_gbps(ThreadPool& pool, const ReadRegion* regions, size_t n);

}  // namespace stepaudio::ops
