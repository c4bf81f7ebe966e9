// Packing Q8_0/Q4_0 matrices into the decode GEMV's 16-row interleaved layout (ops/repack.h), and
// reading plain rows back out of it (the scalar twins, the prefill GEMM and row_f32 use those).
#include "ops/repack.h"

#include <cstdint>
#include <cstring>
#include <vector>

#include "ops/quant.h"

namespace stepaudio::ops {

namespace {
// Bytes of a block (scale + codes) and of the codes of one block of 16 rows.
size_t block_bytes(DType t) {
  return t == DType::q8_0 ? sizeof(BlockQ8_0) : sizeof(BlockQ4_0);
}
size_t group_code_bytes(DType t) {
  return kPackRows * (block_bytes(t) - 2);
}

// The 4-byte pieces of one block's codes (8 for Q8_0, 4 for Q4_0) from src to dst, pieces
// src_step / dst_step bytes apart; Q8_0 codes flip their top bit (w <-> w + 128, ops/repack.h).
// Whole 4-byte moves: the prefill GEMM unpacks every row of every packed matrix this way.
inline void move_pieces(DType t, const char* src, char* dst, size_t src_step, size_t dst_step) {
  const bool q8 = t == DType::q8_0;
  for (size_t g = 0; g < (q8 ? 8u : 4u); ++g) {
    uint32_t v;
    std::memcpy(&v, src + g * src_step, 4);
    if (q8) v ^= 0x80808080u;
    std::memcpy(dst + g * dst_step, &v, 4);
  }
}

// One plain row (row r of its group) into / out of a packed group; nb blocks.
void put_row(DType t, const char* plain, size_t r, size_t nb, char* group) {
  const size_t bs = block_bytes(t), C = group_code_bytes(t);
  for (size_t b = 0; b < nb; ++b) {
    const char* blk = plain + b * bs;
    size_t sc, co;
    packed_block_offsets(b, nb, C, &sc, &co);
    std::memcpy(group + sc + 2 * r, blk, 2);  // the f16 scale
    move_pieces(t, blk + 2, group + co + 4 * r, 4, 64);
  }
}

void get_row(DType t, const char* group, size_t r, size_t nb, char* plain) {
  const size_t bs = block_bytes(t), C = group_code_bytes(t);
  for (size_t b = 0; b < nb; ++b) {
    char* blk = plain + b * bs;
    size_t sc, co;
    packed_block_offsets(b, nb, C, &sc, &co);
    std::memcpy(blk, group + sc + 2 * r, 2);
    move_pieces(t, group + co + 4 * r, blk + 2, 64, 4);
  }
}
}  // namespace

void pack_matrix(ThreadPool& pool, DType t, const void* src, size_t rows, size_t cols, void* dst) {
  const size_t rb = row_bytes(t, cols), nb = cols / kQBlock, groups = rows / kPackRows;
  const auto* s = static_cast<const char*>(src);
  auto* d = static_cast<char*>(dst);
  pool.parallel_for(groups, [&](size_t g0, size_t g1) {
    for (size_t g = g0; g < g1; ++g)
      for (size_t r = 0; r < kPackRows; ++r)
        put_row(t, s + (g * kPackRows + r) * rb, r, nb, d + g * kPackRows * rb);
  });
  const size_t P = groups * kPackRows;  // the tail stays plain
  std::memcpy(d + P * rb, s + P * rb, (rows - P) * rb);
}

void copy_plain_row(const WeightView& W, size_t r, void* dst) {
  const size_t rb = row_bytes(W.dtype, W.cols);
  if (r >= packed_rows(W)) {
    std::memcpy(dst, W.row_ptr(r), rb);
    return;
  }
  const char* group = static_cast<const char*>(W.data) + (r - r % kPackRows) * rb;
  get_row(W.dtype, group, r % kPackRows, W.cols / kQBlock, static_cast<char*>(dst));
}

void WeightView::row_f32(size_t r, float* dst) const {
  if (!packed) return to_f32(dtype, row_ptr(r), dst, cols);
  std::vector<char> row(row_bytes(dtype, cols));
  copy_plain_row(*this, r, row.data());
  to_f32(dtype, row.data(), dst, cols);
}

}  // namespace stepaudio::ops
