// GGUF models: `stepaudio quantize` (checkpoint folder -> one .gguf, model/gguf.h's container) and
// loading a .gguf back into a Model.
//
// Where the weights live after loading a .gguf: matrices and vectors are used in place from the
// read-only mapping (no copy). Measured at full size (q4, 5.6 GB file in the page cache, quiet
// machine, docs/PERF.md): decode 5.79 tokens/s in place vs 5.77 copied into huge-page anonymous
// buffers, prefill 10.9 vs 11.0, load 0.0 s vs 7.3 s, peak RSS 5.37 vs 6.45 GB; so in place.
// STEPAUDIO_GGUF_COPY=1 copies the matrices into huge-page buffers instead (model/weight_store.h),
// for long-lived processes on VMs whose memory monitor reclaims file pages that are read only once
// per token (util/huge_buffer.h; not reproduced in a one-minute bench). With q8/q4 on AVX-512 the
// decoder's matrices are then repacked into huge pages anyway (pack_decoder: the decode GEMV's
// interleaved layout; load 7.4 s for q4 from the page cache); the file keeps the ggml layout.
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "model/gguf.h"
#include "model/model_data.h"
#include "model/weight_store.h"
#include "stepaudio/error.h"
#include "stepaudio/quantize.h"
#include "util/log.h"

namespace stepaudio {

namespace model {

namespace {
constexpr const char* kArch = "step-audio-2";
constexpr const char* kConfigKey = "stepaudio.config_json";
constexpr const char* kQuantKey = "stepaudio.quant";
constexpr const char* kTokenizerKey = kGgufTokenizerKey;
constexpr const char* kAddedTokensKey = "stepaudio.added_tokens_json";

// llama.cpp's general.file_type values (enum llama_ftype) so other tools label the file right.
uint32_t file_type(Quant q) {
  switch (q) {
    case Quant::f32:
      return 0;  // ALL_F32
    case Quant::bf16:
      return 32;  // MOSTLY_BF16
    case Quant::q8:
      return 7;  // MOSTLY_Q8_0
    case Quant::q4:
      return 2;  // MOSTLY_Q4_0
  }
  return 0;
}

std::string shape_str(const std::vector<size_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw Error(Errc::model_format, where + ": " + what);
}

Quant read_quant(const GgufContents& g, const std::string& path) {
  const std::string& qname = g.string(kQuantKey, path);
  if (qname != "f32" && qname != "bf16" && qname != "q8" && qname != "q4")
    fail(path, std::string(kQuantKey) + " is '" + qname + "' (expected f32, bf16, q8 or q4)");
  return parse_quant(qname);
}

}  // namespace

bool is_gguf_path(const std::string& path) {
  return path.size() >= 5 && path.compare(path.size() - 5, 5, ".gguf") == 0;
}

std::shared_ptr<const Model> load_gguf_model(const std::string& path, const LoadOptions& options) {
  if (!std::filesystem::exists(path)) throw Error(Errc::io, "no such model file '" + path + "'");
  auto m = std::make_shared<Model>();
  m->gguf = std::make_unique<GgufFile>(path);
  const GgufContents& g = m->gguf->contents();
  const std::string& arch = g.string("general.architecture", path);
  if (arch != kArch)
    fail(path, "general.architecture is '" + arch + "', expected '" + kArch +
                   "' (a file written by `stepaudio quantize`)");
  const std::string& config_json = g.string(kConfigKey, path);
  m->cfg = parse_config(config_json, path + " (" + kConfigKey + ")");
  m->quant = read_quant(g, path);
  if (options.quant != m->quant)
    SA_INFO("%s holds %s weights: they are used as stored (the requested %s is ignored)",
            path.c_str(), quant_name(m->quant), quant_name(options.quant));
  const bool fast = fast_kernels(m->quant);

  ops::ThreadPool pool(0);
  std::set<std::string> used;
  const char* env = std::getenv("STEPAUDIO_GGUF_COPY");
  const bool in_place = !(env && std::string(env) == "1");
  auto find = [&](const std::string& name, const std::vector<size_t>& shape) -> const GgufTensor& {
    auto it = g.tensors.find(name);
    if (it == g.tensors.end())
      fail(path, "missing tensor '" + name + "' (expected shape " + shape_str(shape) + ")");
    const GgufTensor& t = it->second;
    if (t.shape != shape)
      fail(path, "tensor '" + name + "' has shape " + shape_str(t.shape) + ", expected " +
                     shape_str(shape));
    // Kernels load whole vectors/blocks; an offset the file's alignment allows but ours does not
    // (general.alignment < 32) is refused rather than read misaligned.
    if (reinterpret_cast<uintptr_t>(t.data) % kGgufAlignment != 0)
      fail(path, "tensor '" + name + "' is not 32-byte aligned");
    used.insert(name);
    return t;
  };
  auto mat = [&](const std::string& name, const std::vector<size_t>& shape) {
    const GgufTensor& t = find(name, shape);
    const size_t rows = shape[0], cols = tensor_numel(shape) / rows;
    const ops::DType want = storage_dtype(m->quant, name, cols);
    // f16 checkpoints keep f32 matrices under --quant bf16 (model/loader.cpp), so f32 is legal
    // there too.
    const bool ok = t.dtype == want || (m->quant == Quant::bf16 && t.dtype == ops::DType::f32);
    if (!ok)
      fail(path, "tensor '" + name + "' is " + ops::dtype_name(t.dtype) + ", expected " +
                     ops::dtype_name(want) + " in a " + std::string(quant_name(m->quant)) +
                     " file");
    if (in_place) {  // the mapped file's pages, no copy (see the top of this file)
      m->weight_bytes += t.nbytes;
      return ops::WeightView{t.dtype, t.data, rows, cols, fast};
    }
    ops::WeightView v = copy_matrix(*m, {t.dtype, t.data, rows, cols, fast}, pool);
    util::release_pages(t.data, t.nbytes);
    return v;
  };
  auto vec = [&](const std::string& name, const std::vector<size_t>& shape) {
    const GgufTensor& t = find(name, shape);
    if (t.dtype != ops::DType::f32)
      fail(path, "tensor '" + name + "' is " + ops::dtype_name(t.dtype) + ", expected F32");
    m->weight_bytes += t.nbytes;
    return reinterpret_cast<const float*>(t.data);
  };
  bind_weights(*m, mat, vec);
  // Packing copies the decoder's matrices out of the mapping into huge pages (weight_store.h).
  if (options.gemv_layout) pack_decoder(*m);
  set_int8_prefill(*m, options.int8_prefill);
  if (options.int8_encoder && options.gemv_layout && fast_kernels(m->quant)) quantize_encoder(*m);
  for (const auto& [name, t] : g.tensors)
    if (!used.count(name))
      SA_DEBUG("ignoring unknown tensor '%s' in %s", name.c_str(), path.c_str());

  SpecialIdSources ids;
  ids.where = path;
  ids.config_json = config_json;
  if (auto it = g.strings.find(kAddedTokensKey); it != g.strings.end())
    ids.added_tokens_json = it->second;
  if (auto it = g.strings.find(kTokenizerKey); it != g.strings.end())
    ids.tokenizer_json = it->second;
  set_special_ids(*m, ids);
  SA_INFO("loaded %s: %zu decoder layers, %zu encoder layers, %.1f MB of weights (%s)",
          path.c_str(), m->cfg.text.n_layers, m->cfg.audio.n_layer, m->weight_bytes / 1e6,
          quant_name(m->quant));
  return m;
}

}  // namespace model

namespace {
// Writes m (weights as loaded) with the given name and config/tokenizer texts.
void save_gguf(const Model& m, const std::string& out, const std::string& name,
               const model::SpecialIdSources& src) {
  if (!model::is_gguf_path(out))
    throw Error(Errc::invalid_argument, "--out must end in .gguf (got '" + out + "')");
  model::GgufWriteSpec spec;
  spec.strings = {{"general.architecture", model::kArch},
                  {"general.name", name},
                  {model::kQuantKey, quant_name(m.quant)},
                  {model::kConfigKey, src.config_json}};
  if (!src.tokenizer_json.empty())
    spec.strings.push_back({model::kTokenizerKey, src.tokenizer_json});
  if (!src.added_tokens_json.empty())
    spec.strings.push_back({model::kAddedTokensKey, src.added_tokens_json});
  spec.uints = {{"general.alignment", uint32_t(model::kGgufAlignment)},
                {"general.file_type", model::file_type(m.quant)},
                {"general.quantization_version", 2}};
  for (const auto& w : m.named) {
    if (!w.v && w.w.packed)
      throw Error(Errc::internal, "save_gguf: '" + w.name + "' is in the packed GEMV layout");
    if (w.v)
      spec.tensors.push_back({w.name, ops::DType::f32, w.shape, w.v});
    else
      spec.tensors.push_back({w.name, w.w.dtype, w.shape, w.w.data});
  }
  model::write_gguf(out, spec);
  SA_INFO("wrote %s: %zu tensors (%s)", out.c_str(), spec.tensors.size(), quant_name(m.quant));
}

// config.json text for a config (the keys model/config.cpp reads), for synthetic models.
std::string config_json(const model::ModelConfig& c, int32_t eos) {
  nlohmann::json j;
  j["text_config"] = {{"hidden_size", c.text.hidden},
                      {"intermediate_size", c.text.ffn},
                      {"num_attention_heads", c.text.n_heads},
                      {"num_key_value_heads", c.text.n_kv_heads},
                      {"num_hidden_layers", c.text.n_layers},
                      {"vocab_size", c.text.vocab},
                      {"max_position_embeddings", c.text.max_positions},
                      {"rms_norm_eps", c.text.rms_eps},
                      {"rope_theta", c.text.rope_theta},
                      {"eos_token_id", eos}};
  j["audio_encoder_config"] = {
      {"n_mels", c.audio.n_mels},           {"n_audio_ctx", c.audio.n_ctx},
      {"n_audio_state", c.audio.n_state},   {"n_audio_head", c.audio.n_head},
      {"n_audio_layer", c.audio.n_layer},   {"llm_dim", c.audio.llm_dim},
      {"kernel_size", c.audio.kernel_size}, {"adapter_stride", c.audio.adapter_stride}};
  return j.dump(2);
}
}  // namespace

void quantize_model(const std::string& dir, const std::string& out, Quant quant) {
  if (model::is_gguf_path(dir))
    throw Error(Errc::invalid_argument, "quantize reads a checkpoint folder, not a .gguf file");
  if (!model::is_gguf_path(out))
    throw Error(Errc::invalid_argument, "--out must end in .gguf (got '" + out + "')");
  // The weights exactly as `run --quant` would hold them, in the plain (GGUF) layout.
  auto m = load_model(dir, {quant, false});
  std::string name = std::filesystem::path(dir).lexically_normal().filename().string();
  if (name.empty())
    name = std::filesystem::path(dir).lexically_normal().parent_path().filename().string();
  save_gguf(*m, out, name, model::read_special_id_sources(dir));
}

void quantize_synthetic_model(const std::string& preset, const std::string& out, Quant quant) {
  auto m = make_synthetic_model(preset, 0, quant, false);
  model::SpecialIdSources src;
  src.config_json = config_json(m->cfg, m->eos_id);
  src.added_tokens_json =
      nlohmann::json{{"<audio_patch>", m->audio_patch_id}, {"<|EOT|>", m->eos_id}}.dump();
  save_gguf(*m, out, "synthetic-" + preset, src);
}

Quant gguf_file_quant(const std::string& path) {
  if (!std::filesystem::exists(path)) throw Error(Errc::io, "no such model file '" + path + "'");
  const model::GgufFile file(path);
  return model::read_quant(file.contents(), path);
}

}  // namespace stepaudio
