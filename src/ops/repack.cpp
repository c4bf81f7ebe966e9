// Packing Q8_0/Q4_0 matrices into the decode GEMV's 16-row interleaved layout (ops/repack.h), and
// reading plain rows back out of it (the scalar twins, the prefill GEMM and row_f32 use those).
#include "ops/repack.h"

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

// One plain row (row r of its group) into / out of a packed group; nb blocks.
void put_row(DType t, const char* plain, size_t r, size_t nb, char* group) {
  const size_t bs = block_bytes(t), C = group_code_bytes(t);
  for (size_t b = 0; b < nb; ++b) {
    const char* blk = plain + b * bs;
    size_t sc, co;
    packed_block_offsets(b, nb, C, &sc, &co);
    std::memcpy(group + sc + 2 * r, blk, 2);  // the f16 scale
    const auto* qs = reinterpret_cast<const uint8_t*>(blk + 2);
    auto* codes = reinterpret_cast<uint8_t*>(group + co);
    if (t == DType::q8_0) {
      for (size_t g = 0; g < 8; ++g)
        for (size_t j = 0; j < 4; ++j) codes[64 * g + 4 * r + j] = qs[4 * g + j] ^ 0x80;
    } else {
      for (size_t p = 0; p < 4; ++p)
        for (size_t j = 0; j < 4; ++j) codes[64 * p + 4 * r + j] = qs[4 * p + j];
    }
  }
}

void get_row(DType t, const char* group, size_t r, size_t nb, char* plain) {
  const size_t bs = block_bytes(t), C = group_code_bytes(t);
  for (size_t b = 0; b < nb; ++b) {
    char* blk = plain + b * bs;
    size_t sc, co;
    packed_block_offsets(b, nb, C, &sc, &co);
    std::memcpy(blk, group + sc + 2 * r, 2);
    auto* qs = reinterpret_cast<uint8_t*>(blk + 2);
    const auto* codes = reinterpret_cast<const uint8_t*>(group + co);
    if (t == DType::q8_0) {
      for (size_t g = 0; g < 8; ++g)
        for (size_t j = 0; j < 4; ++j) qs[4 * g + j] = codes[64 * g + 4 * r + j] ^ 0x80;
    } else {
      for (size_t p = 0; p < 4; ++p)
        for (size_t j = 0; j < 4; ++j) qs[4 * p + j] = codes[64 * p + 4 * r + j];
    }
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
