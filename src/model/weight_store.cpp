#include "model/weight_store.h"

#include <cstring>
#include <vector>

#include "ops/quant.h"

namespace stepaudio::model {

ops::DType storage_dtype(Quant q, const std::string& name, size_t cols) {
  switch (q) {
    case Quant::f32:
      return ops::DType::f32;
    case Quant::bf16:
      return ops::DType::bf16;
    case Quant::q8:
    case Quant::q4: {
      const bool decoder = name.rfind("model.", 0) == 0 || name.rfind("lm_head", 0) == 0;
      if (!decoder || cols % ops::kQBlock != 0) return ops::DType::bf16;
      return q == Quant::q8 ? ops::DType::q8_0 : ops::DType::q4_0;
    }
  }
  return ops::DType::bf16;
}

ops::WeightView make_matrix(Model& m, ops::DType t, size_t rows, size_t cols, bool fast,
                            ops::ThreadPool& pool, const std::function<void(size_t, float*)>& row) {
  const size_t rb = ops::row_bytes(t, cols);
  auto& buf = m.owned_huge.emplace_back(rows * rb);
  char* base = static_cast<char*>(buf.data());
  pool.parallel_for(rows, [&](size_t r0, size_t r1) {
    std::vector<float> tmp(cols);  // [cols] one row in float32
    for (size_t r = r0; r < r1; ++r) {
      row(r, tmp.data());
      char* dst = base + r * rb;
      switch (t) {
        case ops::DType::f32:
          std::memcpy(dst, tmp.data(), cols * 4);
          break;
        case ops::DType::bf16: {
          auto* d = reinterpret_cast<uint16_t*>(dst);
          for (size_t i = 0; i < cols; ++i) d[i] = ops::f32_to_bf16(tmp[i]);
          break;
        }
        case ops::DType::q8_0:
          ops::quantize_row_q8_0(tmp.data(), reinterpret_cast<ops::BlockQ8_0*>(dst), cols);
          break;
        case ops::DType::q4_0:
          ops::quantize_row_q4_0(tmp.data(), reinterpret_cast<ops::BlockQ4_0*>(dst), cols);
          break;
        case ops::DType::f16:
          break;  // never a storage target
      }
    }
  });
  m.weight_bytes += rows * rb;
  return {t, base, rows, cols, fast};
}

}  // namespace stepaudio::model

namespace stepaudio::model {
ops::WeightView copy_matrix(Model& m, const ops::WeightView& src, ops::ThreadPool& pool) {
  const size_t rb = ops::row_bytes(src.dtype, src.cols);
  auto& buf = m.owned_huge.emplace_back(src.rows * rb);
  char* base = static_cast<char*>(buf.data());
  pool.parallel_for(src.rows, [&](size_t r0, size_t r1) {
    std::memcpy(base + r0 * rb, src.row_ptr(r0), (r1 - r0) * rb);
  });
  m.weight_bytes += src.rows * rb;
  return {src.dtype, base, src.rows, src.cols, src.fast};
}
}  // namespace stepaudio::model
