// The row-interleaved ("packed") layout of Q8_0/Q4_0 matrices that the decode GEMV streams.
//
// Why: the plain ggml layout keeps each row contiguous, so a GEMV kernel either walks one row at a
// time (every block needs its own horizontal reduction, scale conversion and activation loads:
// ~16 instructions per 32 weights, which made Q4_0 compute-bound on Zen 4) or walks R rows at once
// as R streams 2 KB apart (measured 2-3x slower, docs/PERF.md). Interleaving 16 rows makes one
// sequential stream serve 16 rows: one 512-bit vpdpbusd multiplies 4 weights of each of the 16 rows
// by the same 4 activation codes (broadcast), so lane r of the int32 result belongs to row r and
// no horizontal sums are needed; 16 f16 scales convert in one instruction.
//
// Layout of a packed [rows][cols] matrix (cols % 32 == 0, nb = cols / 32 blocks per row):
//   rows [0, P) with P = rows - rows % 16 form groups of 16; group g (rows 16g..16g+15) occupies
//   the same 16 * row_bytes bytes the plain rows did, at the same offset; rows [P, rows) follow in
//   the plain layout. Inside a group the blocks come in pairs (b, b+1):
//     [16 f16 scales of block b][16 f16 scales of block b+1][codes of b][codes of b+1]
//   (64 + 2 * C bytes, a multiple of 64: full cache lines for the 64-byte code loads when the
//   matrix is 64-byte aligned); an odd last block is [16 scales][codes]. Codes of one block of 16
//   rows are C bytes in 64-byte chunks whose byte 4r + j belongs to row r:
//     Q8_0 (C = 512): chunk g (0..7), byte 4r + j = qs_r[4g + j] XOR 0x80 (w + 128 as unsigned,
//       so the weights are vpdpbusd's unsigned operand and the activations its signed one; the
//       kernel subtracts 128 * sum(x codes));
//     Q4_0 (C = 256): chunk p (0..3), byte 4r + j = qs_r[4p + j] (the plain byte: low nibble =
//       element 4p + j, high nibble = element 16 + 4p + j).
// Thread-safety: pure functions on caller-owned memory.
#pragma once

#include <cstddef>

#include "ops/dtype.h"
#include "ops/ops.h"

namespace stepaudio::ops {

inline constexpr size_t kPackRows = 16;

// Rows of W stored in interleaved groups (0 when W is not packed).
inline size_t packed_rows(const WeightView& W) {
  return W.packed ? W.rows - W.rows % kPackRows : 0;
}

// Offsets inside a packed group of the scales and codes of block b (of nb), for block types whose
// 16-row codes take C bytes (512 for Q8_0, 256 for Q4_0).
inline void packed_block_offsets(size_t b, size_t nb, size_t C, size_t* scales, size_t* codes) {
  const size_t base = (b & ~size_t{1}) * (C + 32);
  if ((b | 1) < nb) {  // one of a pair
    *scales = base + (b & 1) * 32;
    *codes = base + 64 + (b & 1) * C;
  } else {  // the odd last block
    *scales = base;
    *codes = base + 32;
  }
}

// dst = the packed layout of the plain rows src[rows][cols] (t = q8_0 or q4_0; same byte size;
// dst and src must not overlap). Parallel over groups on `pool`.
void pack_matrix(ThreadPool& pool, DType t, const void* src, size_t rows, size_t cols, void* dst);

// Row r of W (packed or plain) in the plain ggml block layout: row_bytes(W.dtype, W.cols) bytes.
void copy_plain_row(const WeightView& W, size_t r, void* dst);

}  // namespace stepaudio::ops
