// Where and how the model's matrices are stored for each --quant mode.
//
//   f32:  every matrix widened to float32 (reference quality; 33 GB at full size).
//   bf16: bf16 matrices used in place (mmapped shard, or the synthetic model's buffer); f32/f16
//         sources rounded once.
//   q8/q4: the decoder's matrices (q/k/v/o, gate/up/down, embed_tokens, lm_head) as Q8_0/Q4_0
//         (ops/quant.h) when their row length is a multiple of 32, else bf16; the encoder and
//         adapter (~0.6 G parameters, compute-bound) stay bf16 and run on the bf16-dot GEMM.
// Converted matrices live in anonymous 2 MiB-aligned huge-page buffers owned by the Model
// (util/huge_buffer.h explains why not file pages), filled row-parallel at load.
// Thread-safety: load-time helpers; the Model is not shared yet while they run.
#pragma once

#include <functional>
#include <string>

#include "model/model_data.h"

namespace stepaudio::model {

ops::DType storage_dtype(Quant q, const std::string& name, size_t cols);
// q8/q4 let kernels round activations (bf16 GEMM, int8 GEMV); f32/bf16 stay exact.
inline bool fast_kernels(Quant q) {
  return q == Quant::q8 || q == Quant::q4;
}

// A [rows][cols] matrix of dtype t owned by m; row(r, dst) writes row r as float32 into dst[cols]
// (called concurrently for different rows on `pool`). Adds its bytes to m.weight_bytes.
ops::WeightView make_matrix(Model& m, ops::DType t, size_t rows, size_t cols, bool fast,
                            ops::ThreadPool& pool, const std::function<void(size_t, float*)>& row);

}  // namespace stepaudio::model

namespace stepaudio::model {
// A copy of `src` (any dtype, e.g. a tensor in place in a mapped GGUF file) in a huge-page buffer
// owned by m, copied row-parallel; adds its bytes to m.weight_bytes.
ops::WeightView copy_matrix(Model& m, const ops::WeightView& src, ops::ThreadPool& pool);
}  // namespace stepaudio::model

namespace stepaudio::model {
// Repacks the decoder's Q8_0/Q4_0 matrices (q/k/v/o, gate/up/down, lm_head; not the embedding,
// of which one row is read per token) into the decode GEMV's 16-row interleaved layout
// (ops/repack.h), in new huge-page buffers: q/k/v concatenated into one (DecoderLayer::qkv) and
// gate/up into one (gate_up), so decode makes 4 matmul calls per layer instead of 7 and quantizes
// each activation once. The plain sources are freed (owned buffers) or dropped from the RSS
// (mapped files). Does nothing unless the CPU takes the AVX-512 kernels (the others read plain
// rows), for non-block types, or with STEPAUDIO_GEMV_LAYOUT=plain (A/B measurements). m.named is
// updated to the packed views, which GGUF cannot store: `stepaudio quantize` loads with
// LoadOptions::gemv_layout = false.
void pack_decoder(Model& m);
}  // namespace stepaudio::model

namespace stepaudio::model {
// Sets WeightView::int8_act on every decoder matrix (LoadOptions::int8_prefill) where the CPU has
// the VNNI GEMM (AVX-512; elsewhere the float GEMMs stay faster); only q8_0/q4_0 matrices read it.
void set_int8_prefill(Model& m, bool on);
// LoadOptions::int8_encoder: the encoder blocks' linears (q, k, v, out, fc1, fc2: 629 M weights at
// full size) requantized from bf16 to Q8_0 in the packed layout, with int8 activations: the VNNI
// GEMM instead of the bf16 one. AVX-512 only (and not with STEPAUDIO_GEMV_LAYOUT=plain); the
// bf16 sources are freed. m.named follows (packed views: not for `stepaudio quantize`).
void quantize_encoder(Model& m);
}  // namespace stepaudio::model
