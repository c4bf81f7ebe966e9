// The loaded model: configuration, special ids and views of every weight, grouped the way the graph
// code uses them. Weight memory is either an mmapped shard (bf16 in place) or a buffer owned here
// (weights converted at load). Immutable after construction; shared read-only between sessions.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/gguf.h"
#include "model/safetensors.h"
#include "ops/ops.h"
#include "stepaudio/model.h"
#include "util/huge_buffer.h"

namespace stepaudio {

namespace model {
struct Linear {
  ops::WeightView w;         // [out][in] (conv: [out][in * k])
  const float* b = nullptr;  // [out] or null
};
struct Norm {
  const float* w = nullptr;  // [dim]
  const float* b = nullptr;  // [dim] or null (RMSNorm)
};
struct EncoderBlock {
  Norm attn_ln, mlp_ln;
  Linear query, key, value, out;  // key has no bias (Whisper)
  Linear fc1, fc2;                // mlp.0 [4S][S], mlp.2 [S][4S]
};
// One weight as bind_weights() named it: a matrix view, or a float32 vector/table. The list is what
// `stepaudio quantize` writes to GGUF (model/gguf_model.cpp).
struct NamedWeight {
  std::string name;
  std::vector<size_t> shape;  // the HF (row-major) shape
  ops::WeightView w;          // matrices
  const float* v = nullptr;   // vectors: shape's product floats
};
struct DecoderLayer {
  Norm input_norm, post_norm;
  Linear q, k, v, o;  // q/k/v with bias, o without (Qwen2)
  Linear gate, up, down;
  // Decode-only fused views (model/weight_store.h pack_decoder): q|k|v rows in one matrix with the
  // three biases, gate|up likewise; w.data is null when the weights are not packed. q/k/v and
  // gate/up above then point into these buffers.
  Linear qkv, gate_up;
};
}  // namespace model

class Model {
 public:
  model::ModelConfig cfg;
  Quant quant = Quant::bf16;
  int32_t audio_patch_id = -1, eos_id = -1;

  // Encoder (Whisper-style) + adapter.
  model::Linear conv1, conv2;      // conv1 [S][n_mels*3], conv2 [S][S*3]
  const float* pos_emb = nullptr;  // [n_ctx][S]
  std::vector<model::EncoderBlock> blocks;
  model::Norm after_norm;
  model::Linear adapter_conv, adapter_l1, adapter_l2;  // [S][S*k], [2048][S], [llm_dim][2048]

  // Decoder (Qwen2).
  ops::WeightView embed;  // [vocab][hidden]
  std::vector<model::DecoderLayer> layers;
  model::Norm final_norm;
  model::Linear lm_head;        // [vocab][hidden]
  std::vector<float> inv_freq;  // [head_dim/2] RoPE inverse frequencies

  size_t weight_bytes = 0;
  std::vector<model::NamedWeight> named;  // every weight in bind_weights() order

  // Storage behind the views above.
  std::vector<std::unique_ptr<model::SafetensorsFile>> shards;
  std::unique_ptr<model::GgufFile> gguf;  // a .gguf model (weights used in place from it)
  std::vector<std::vector<float>> owned_f32;
  std::vector<std::vector<uint16_t>> owned_16;
  std::vector<util::HugeBuffer> owned_huge;  // converted/quantized matrices (model/weight_store.h)

  void init_rope();  // fills inv_freq from cfg.text (as HF: 1 / theta^(2i/d), float32)
};

// Builds every view of `m` from its config through the two accessors (file loader or synthetic
// model): mat(name, shape) for matrices, vec(name, shape) for float32 vectors. Defined in
// loader.cpp.
void bind_weights(
    Model& m,
    const std::function<ops::WeightView(const std::string&, const std::vector<size_t>&)>& mat,
    const std::function<const float*(const std::string&, const std::vector<size_t>&)>& vec);

namespace model {
// The texts special ids come from (empty when absent); `where` names the source in errors.
struct SpecialIdSources {
  std::string where, config_json, added_tokens_json, tokenizer_json;
};
SpecialIdSources read_special_id_sources(const std::string& dir);  // a checkpoint folder's files
// Sets m.audio_patch_id and m.eos_id (loader.cpp).
void set_special_ids(Model& m, const SpecialIdSources& src);

// Whether every decoder matmul (layers and lm_head) gives each row a result independent of how
// many rows share the pass (ops.h: exact f32/bf16 weights, or q8_0/q4_0 with int8 activations).
// Then prefill pieces and decode rows of several sessions may share one pass (Scheduler) and every
// row still equals its lone run bit for bit. Defined in session.cpp.
bool rows_independent_of_batch(const Model& m);

// GGUF models (gguf_model.cpp): a path ending in ".gguf" is one `stepaudio quantize` wrote.
bool is_gguf_path(const std::string& path);
std::shared_ptr<const Model> load_gguf_model(const std::string& path, const LoadOptions& options);
}  // namespace model

}  // namespace stepaudio
