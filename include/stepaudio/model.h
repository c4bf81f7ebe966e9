// The Step-Audio-2-mini engine: load a checkpoint once, run many requests on it.
//
//   auto model = stepaudio::load_model("Step-Audio-2-mini", {.quant = stepaudio::Quant::bf16});
//   stepaudio::GenerateRequest req;  // prompt ids with <audio_patch> placeholders + one mel per
//   chunk stepaudio::GenerateResult out = stepaudio::generate(*model, req);
//
// A Model is immutable after loading (weights mmapped read-only or converted once) and may be
// shared by any number of threads through shared_ptr<const Model>. Each generate() call builds its
// own per-request state (KV cache, scratch, thread pool), so concurrent calls on one Model are
// safe.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace stepaudio {

class Model;  // opaque; defined in src/model/model_data.h

enum class Quant {
  f32,   // weights widened to float32 at load (reference quality)
  bf16,  // bf16 weights used in place from the mmap (f32/f16 checkpoints rounded once at load)
  q8,    // decoder matrices, embedding and lm_head as Q8_0 (8-bit, 32-blocks, f16 scale),
         // quantized at load into anonymous huge-page memory; encoder/adapter stay bf16 (fast
         // bf16 GEMM). 8.5 bits per decoder weight.
  q4,    // as q8 with Q4_0 (4-bit, 32-blocks, f16 scale): 4.5 bits per decoder weight
};
// "f32" / "bf16" / "q8" / "q4" -> Quant; throws Error(invalid_argument) otherwise.
Quant parse_quant(const std::string& name);

struct LoadOptions {
  Quant quant = Quant::bf16;
  // q8/q4 on AVX-512 CPUs: repack the decoder's matrices at load into the decode GEMV's 16-row
  // interleaved layout (in anonymous huge pages, also for .gguf files). False keeps the plain ggml
  // layout (what `stepaudio quantize` writes).
  bool gemv_layout = true;
  // q8/q4: prefill (and every decoder matmul of more than ops::kGemvMaxRows rows) quantizes the
  // activations to int8 blocks of 32 as decode does (the VNNI GEMM: 64 multiply-adds per
  // instruction, twice the bf16 rate; docs/PERF.md measures its KL next to the weights' own).
  // False: activations rounded to bf16 for the bf16 GEMM. Either way, row results in the int8
  // mode do not depend on how many rows a call takes. Ignored for f32/bf16.
  bool int8_prefill = true;
  // q8/q4 on AVX-512: the encoder blocks' matrices (bf16 otherwise) as Q8_0 with int8 activations
  // (the same VNNI GEMM; `stepaudio bench --kl` reports the adapter output's NMSE against the
  // reference encoder). False: the bf16 encoder. Ignored for f32/bf16.
  bool int8_encoder = true;
};

// Loads an HF checkpoint folder: config.json, model.safetensors.index.json + shards or a single
// model.safetensors, and the special-token ids from added_tokens.json / tokenizer.json. A path
// ending in ".gguf" is one file written by `stepaudio quantize` (stepaudio/quantize.h): its weights
// are used as stored (options.quant is ignored) and every header field and tensor is validated.
// Every expected tensor is checked (presence, dtype, shape) before any compute. Throws
// Error(model_format) for bad files (the message names file, tensor and expectation), Error(io) for
// unreadable ones.
std::shared_ptr<const Model> load_model(const std::string& dir, const LoadOptions& options = {});

// A model with exact shapes and seeded random weights made in memory (no file), for benchmarks
// and memory checks. Presets: "step-audio-2-mini" (full size, ~16.6 GB in bf16, ~4.9 GB in q4),
// "step-audio-2-mini-1layer" (one decoder layer and encoder block of the exact shapes, vocabulary
// 1024: per-layer timings), "step-audio-2-mini-1layer-full-vocab" (the same with the real
// vocabulary and special ids: cheap task runs with the real tokenizer), "tiny" (test sized).
// Matrices are generated as bf16 values (the same values for every quant) and stored as the quant
// asks: f32 widens them, q8/q4 quantize them row by row (no bf16 copy is kept). gemv_layout: as
// LoadOptions::gemv_layout, int8_prefill / int8_encoder: as LoadOptions. Throws
// Error(invalid_argument) for an unknown preset.
std::shared_ptr<const Model> make_synthetic_model(const std::string& preset, uint64_t seed = 0,
                                                  Quant quant = Quant::bf16,
                                                  bool gemv_layout = true, bool int8_prefill = true,
                                                  bool int8_encoder = true);
const char* quant_name(Quant q);

struct ModelInfo {
  size_t hidden, n_layers, n_heads, n_kv_heads, ffn, vocab, max_positions;
  size_t n_mels, n_audio_ctx, n_audio_state, n_audio_layers;
  int32_t audio_patch_id;  // -1 when the tokenizer files do not define <audio_patch>
  int32_t eos_id;          // <|EOT|>, else text_config.eos_token_id, else -1
  Quant quant;
  size_t weight_bytes;  // bytes of all weights as used for compute
};
ModelInfo model_info(const Model& model);

// Number of <audio_patch> tokens (= adapter rows) for a chunk of `mel_frames` mel frames: the valid
// length is T-2, the encoder keeps ((T-2+1)//2)//2 rows and the adapter conv (k3, s2, p1) halves
// it.
size_t audio_patch_count(size_t mel_frames);

struct MelChunk {
  std::vector<float> data;  // [n_mels][n_frames], row-major, as `stepaudio mel` writes it
  size_t n_mels = 0, n_frames = 0;
};

struct SamplingOptions {
  float temperature = 0.0f;  // <= 0: greedy
  int top_k = 0;             // 0: off
  float top_p = 1.0f;        // 1: off
  float repetition_penalty =
      1.0f;  // 1: off (HF definition over all ids seen so far, prompt included)
  uint64_t seed = 0;
};

struct GenerateRequest {
  std::vector<int32_t> prompt_ids;  // with N_i <audio_patch> ids per chunk, in chunk order
  std::vector<MelChunk> mels;       // one per 25 s chunk
  size_t max_new_tokens = 256;
  SamplingOptions sampling;
  int threads = 0;       // 0: physical cores
  std::string dump_dir;  // non-empty: write the named .npy intermediates (README: `run --dump`)
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids (the EOS id included when generation stopped on it)
  std::vector<float> logprobs;  // log-softmax of the raw logits (temperature 1) at each chosen id
  bool stopped_at_eos = false;
  double encode_ms = 0, prefill_ms = 0, generate_ms = 0;
};

struct GenerateProgress {
  enum class Stage { encode, prefill, generate } stage;
  size_t done, total;  // chunks encoded / prompt tokens / new tokens
};
using ProgressFn = std::function<void(const GenerateProgress&)>;

// Encode every chunk -> splice the adapter rows into the <audio_patch> positions -> prefill ->
// sample until EOS or max_new_tokens. `cancel` (may be null) is polled between stages and tokens;
// when raised the call throws Error(canceled). Throws Error(invalid_argument) for inconsistent
// inputs (patch count vs mel chunks, ids out of range, context longer than max positions).
GenerateResult generate(const Model& model, const GenerateRequest& request,
                        const ProgressFn& progress = {}, const std::atomic<bool>* cancel = nullptr);

}  // namespace stepaudio
