#include "model/weight_store.h"

#include <cstdlib>
#include <cstring>
#include <vector>

#include "ops/cpu.h"
#include "ops/quant.h"
#include "ops/repack.h"
#include "util/huge_buffer.h"

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

namespace stepaudio::model {
namespace {
size_t matrix_bytes(const ops::WeightView& w) {
  return w.rows * ops::row_bytes(w.dtype, w.cols);
}

// Frees the plain storage of w: its owned huge buffer, or its pages of a mapped file.
void release_source(Model& m, const ops::WeightView& w) {
  for (auto& b : m.owned_huge)
    if (b.data() == w.data) {
      b = util::HugeBuffer();
      return;
    }
  util::release_pages(w.data, matrix_bytes(w));
}

// Packs the parts (same dtype and cols) one after another into one new buffer; `fused`, when not
// null, becomes the view of all of them with the biases concatenated (zeros for a part without).
void pack_parts(Model& m, ops::ThreadPool& pool, const std::vector<Linear*>& parts, Linear* fused) {
  size_t bytes = 0, rows = 0;
  bool any_bias = false;
  for (const Linear* p : parts) {
    bytes += matrix_bytes(p->w);
    rows += p->w.rows;
    any_bias = any_bias || p->b;
  }
  char* base = static_cast<char*>(m.owned_huge.emplace_back(bytes).data());
  std::vector<float>* bias = nullptr;
  if (fused && any_bias) bias = &m.owned_f32.emplace_back(rows, 0.0f);
  size_t off = 0, row = 0;
  for (Linear* p : parts) {
    const ops::WeightView old = p->w;
    ops::pack_matrix(pool, old.dtype, old.data, old.rows, old.cols, base + off);
    p->w.data = base + off;
    p->w.packed = true;
    for (auto& nw : m.named)
      if (nw.w.data == old.data) nw.w = p->w;
    release_source(m, old);
    if (bias && p->b) std::copy(p->b, p->b + old.rows, bias->begin() + row);
    off += matrix_bytes(old);
    row += old.rows;
  }
  if (fused) {
    const ops::WeightView& w0 = parts[0]->w;
    fused->w = {w0.dtype, base, rows, w0.cols, w0.fast, true};
    fused->b = bias ? bias->data() : nullptr;
  }
}
}  // namespace

void pack_decoder(Model& m) {
  if (ops::cpu_isa() != ops::Isa::avx512) return;
  // STEPAUDIO_GEMV_LAYOUT=plain keeps the plain layout (A/B measurements, docs/PERF.md).
  if (const char* e = std::getenv("STEPAUDIO_GEMV_LAYOUT"); e && std::string(e) == "plain") return;
  ops::ThreadPool pool(0);
  auto packable = [](const Linear& l) { return ops::is_block_type(l.w.dtype) && !l.w.packed; };
  // Fusing needs every part but the last to end on a 16-row group boundary.
  auto fusable = [&](const std::vector<Linear*>& ps) {
    for (size_t i = 0; i < ps.size(); ++i)
      if (!packable(*ps[i]) || ps[i]->w.dtype != ps[0]->w.dtype || ps[i]->w.cols != ps[0]->w.cols ||
          (i + 1 < ps.size() && ps[i]->w.rows % ops::kPackRows))
        return false;
    return true;
  };
  for (auto& L : m.layers) {
    for (auto [ps, fused] : {std::pair{std::vector<Linear*>{&L.q, &L.k, &L.v}, &L.qkv},
                             std::pair{std::vector<Linear*>{&L.gate, &L.up}, &L.gate_up}}) {
      if (fusable(ps)) {
        pack_parts(m, pool, ps, fused);
      } else {
        for (Linear* p : ps)
          if (packable(*p)) pack_parts(m, pool, {p}, nullptr);
      }
    }
    for (Linear* p : {&L.o, &L.down})
      if (packable(*p)) pack_parts(m, pool, {p}, nullptr);
  }
  if (packable(m.lm_head)) pack_parts(m, pool, {&m.lm_head}, nullptr);
}
}  // namespace stepaudio::model

namespace stepaudio::model {
void set_int8_prefill(Model& m, bool on) {
  on = on && ops::cpu_isa() == ops::Isa::avx512;  // the VNNI GEMM; elsewhere the float GEMMs
  for (auto& L : m.layers)
    for (Linear* p : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down, &L.qkv, &L.gate_up})
      p->w.int8_act = on;
  m.lm_head.w.int8_act = on;
}

void quantize_encoder(Model& m) {
  if (ops::cpu_isa() != ops::Isa::avx512) return;
  if (const char* e = std::getenv("STEPAUDIO_GEMV_LAYOUT"); e && std::string(e) == "plain") return;
  ops::ThreadPool pool(0);
  for (auto& b : m.blocks)
    for (Linear* p : {&b.query, &b.key, &b.value, &b.out, &b.fc1, &b.fc2}) {
      const ops::WeightView old = p->w;
      if (ops::is_block_type(old.dtype) || old.cols % ops::kQBlock != 0) continue;
      p->w = make_matrix(m, ops::DType::q8_0, old.rows, old.cols, /*fast=*/true, pool,
                         [&](size_t r, float* dst) { old.row_f32(r, dst); });
      for (auto& nw : m.named)
        if (nw.w.data == old.data) nw.w = p->w;
      m.weight_bytes -= matrix_bytes(old);
      release_source(m, old);
      pack_parts(m, pool, {p}, nullptr);  // the int8 GEMM's 16-row interleaved layout
      p->w.int8_act = true;
    }
}
}  // namespace stepaudio::model
