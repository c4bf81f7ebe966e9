// load_model(): HF checkpoint folder -> Model. Every expected tensor is looked up and checked
// (presence, dtype, shape) while the views are built, before any compute runs.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "model/model_data.h"
#include "model/weight_store.h"
#include "stepaudio/audio.h"
#include "stepaudio/error.h"
#include "util/log.h"

namespace stepaudio {

namespace {
namespace fs = std::filesystem;
using nlohmann::json;

std::string shape_str(const std::vector<size_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

json read_json(const std::string& path);

// Resolves names to tensors across shards and converts them as the quantization asks.
class WeightLoader {
 public:
  explicit WeightLoader(Model& m) : m_(m) {}

  void add_shard(const std::string& path) {
    m_.shards.push_back(std::make_unique<model::SafetensorsFile>(path));
    for (const auto& [name, info] : m_.shards.back()->tensors()) {
      index_[name] = {&info, m_.shards.back()->path()};
    }
  }

  // Every stored tensor must be in the file the index says (a stale index is a broken folder).
  void check_index(const std::map<std::string, std::string>& weight_map, const std::string& dir) {
    for (const auto& [name, file] : weight_map) {
      auto it = index_.find(name);
      if (it == index_.end())
        throw Error(Errc::model_format,
                    "tensor '" + name +
                        "' listed in model.safetensors.index.json is missing from " +
                        (fs::path(dir) / file).string());
    }
  }

  // Matrix weight, used as [rows][cols] (conv weights [out][in][k] flatten to [out][in*k]).
  // Stored as model/weight_store.h says: in place when the file already has that dtype, else
  // converted into an owned huge-page buffer (and the source pages dropped from our RSS).
  ops::WeightView matrix(const std::string& name, const std::vector<size_t>& shape) {
    auto [t, file] = get(name, shape);
    const size_t rows = shape[0], cols = t->numel() / rows;
    ops::DType want = model::storage_dtype(m_.quant, name, cols);
    // f16 values are not representable in bf16: an f16 checkpoint is widened to f32 for --quant
    // bf16 (exact, as before), and only quantized when q8/q4 ask for it.
    if (t->dtype == ops::DType::f16 && want == ops::DType::bf16) want = ops::DType::f32;
    const bool fast = model::fast_kernels(m_.quant);
    if (t->dtype == want) {
      m_.weight_bytes += t->nbytes;  // used in place from the mmap: no copy
      return {t->dtype, t->data, rows, cols, fast};
    }
    const char* src = reinterpret_cast<const char*>(t->data);
    const ops::DType sdt = t->dtype;
    const size_t src_row = cols * ops::dtype_size(sdt);
    ops::WeightView v = model::make_matrix(
        m_, want, rows, cols, fast, pool_,
        [&](size_t r, float* dst) { ops::to_f32(sdt, src + r * src_row, dst, cols); });
    util::release_pages(t->data, t->nbytes);
    return v;
  }

  // Small vector/table always used as float32 (norms, biases, positional embedding).
  const float* vec(const std::string& name, const std::vector<size_t>& shape) {
    auto [t, file] = get(name, shape);
    m_.weight_bytes += t->numel() * 4;
    if (t->dtype == ops::DType::f32) return reinterpret_cast<const float*>(t->data);
    auto& buf = m_.owned_f32.emplace_back(t->numel());
    ops::to_f32(t->dtype, t->data, buf.data(), buf.size());
    return buf.data();
  }

  void log_unused() const {
    for (const auto& [name, e] : index_)
      if (!used_.count(name))
        SA_DEBUG("ignoring unknown tensor '%s' in %s", name.c_str(), e.file.c_str());
  }

 private:
  struct Entry {
    const model::TensorInfo* info;
    std::string file;
  };

  std::pair<const model::TensorInfo*, std::string> get(const std::string& name,
                                                       const std::vector<size_t>& shape) {
    auto it = index_.find(name);
    // Some exports nest the decoder under `language_model.` (vLLM's naming); accept both.
    if (it == index_.end()) it = index_.find("language_model." + name);
    if (it == index_.end())
      throw Error(Errc::model_format, "missing tensor '" + name + "' (expected shape " +
                                          shape_str(shape) +
                                          ") in the checkpoint's safetensors files");
    used_.insert(it->first);
    const model::TensorInfo* t = it->second.info;
    if (t->shape != shape)
      throw Error(Errc::model_format, "tensor '" + name + "' in " + it->second.file +
                                          " has shape " + shape_str(t->shape) + ", expected " +
                                          shape_str(shape));
    return {t, it->second.file};
  }

  Model& m_;
  ops::ThreadPool pool_{0};  // converts/quantizes rows on every physical core
  std::map<std::string, Entry> index_;
  std::set<std::string> used_;
};

std::string read_text(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(Errc::io, "cannot read '" + path.string() + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

json parse_json(const std::string& text, const std::string& where) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw Error(Errc::model_format, where + ": not valid JSON (" + e.what() + ")");
  }
}

json read_json(const std::string& path) {
  return parse_json(read_text(path), path);
}

}  // namespace

// Special ids by their strings: added_tokens.json {content: id}, else tokenizer.json added_tokens;
// EOS falls back to text_config.eos_token_id.
void model::set_special_ids(Model& m, const SpecialIdSources& src) {
  std::map<std::string, int32_t> ids;
  if (!src.added_tokens_json.empty()) {
    json j = parse_json(src.added_tokens_json, src.where + " (added_tokens.json)");
    if (j.is_object())
      for (auto it = j.begin(); it != j.end(); ++it)
        if (it.value().is_number_integer()) ids[it.key()] = it.value().get<int32_t>();
  } else if (!src.tokenizer_json.empty()) {
    json j = parse_json(src.tokenizer_json, src.where + " (tokenizer.json)");
    if (j.contains("added_tokens") && j["added_tokens"].is_array())
      for (const auto& t : j["added_tokens"])
        if (t.contains("content") && t.contains("id") && t["content"].is_string() &&
            t["id"].is_number_integer())
          ids[t["content"].get<std::string>()] = t["id"].get<int32_t>();
  }
  if (auto it = ids.find("<audio_patch>"); it != ids.end()) m.audio_patch_id = it->second;
  if (auto it = ids.find("<|EOT|>"); it != ids.end()) {
    m.eos_id = it->second;
  } else {
    json cfg = parse_json(src.config_json, src.where + " (config.json)");
    if (cfg["text_config"].contains("eos_token_id") &&
        cfg["text_config"]["eos_token_id"].is_number_integer())
      m.eos_id = cfg["text_config"]["eos_token_id"].get<int32_t>();
  }
}

model::SpecialIdSources model::read_special_id_sources(const std::string& dir_str) {
  const fs::path dir(dir_str);
  SpecialIdSources s;
  s.where = dir_str;
  s.config_json = read_text(dir / "config.json");
  if (fs::exists(dir / "added_tokens.json"))
    s.added_tokens_json = read_text(dir / "added_tokens.json");
  if (fs::exists(dir / "tokenizer.json")) s.tokenizer_json = read_text(dir / "tokenizer.json");
  return s;
}

void Model::init_rope() {
  const size_t hd = cfg.text.head_dim;
  inv_freq.resize(hd / 2);
  // transformers: 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)), evaluated in float32.
  for (size_t i = 0; i < hd / 2; ++i) {
    float expo = static_cast<float>(2 * i) / static_cast<float>(hd);
    inv_freq[i] = 1.0f / std::pow(static_cast<float>(cfg.text.rope_theta), expo);
  }
}

Quant parse_quant(const std::string& name) {
  if (name == "f32") return Quant::f32;
  if (name == "bf16") return Quant::bf16;
  if (name == "q8") return Quant::q8;
  if (name == "q4") return Quant::q4;
  throw Error(Errc::invalid_argument,
              "unknown --quant '" + name + "' (expected f32, bf16, q8 or q4)");
}

const char* quant_name(Quant q) {
  switch (q) {
    case Quant::f32:
      return "f32";
    case Quant::bf16:
      return "bf16";
    case Quant::q8:
      return "q8";
    case Quant::q4:
      return "q4";
  }
  return "?";
}

void bind_weights(
    Model& m,
    const std::function<ops::WeightView(const std::string&, const std::vector<size_t>&)>& mat,
    const std::function<const float*(const std::string&, const std::vector<size_t>&)>& vec);

std::shared_ptr<const Model> load_model(const std::string& dir_str, const LoadOptions& options) {
  if (model::is_gguf_path(dir_str)) return model::load_gguf_model(dir_str, options);
  const fs::path dir(dir_str);
  if (!fs::exists(dir / "config.json"))
    throw Error(Errc::model_format,
                "no Step-Audio-2-mini checkpoint at '" + dir_str +
                    "' (no config.json). Get it with: git lfs install && git clone "
                    "https://huggingface.co/stepfun-ai/Step-Audio-2-mini " +
                    dir_str);
  auto m = std::make_shared<Model>();
  m->quant = options.quant;
  m->cfg = model::load_config((dir / "config.json").string());

  WeightLoader wl(*m);
  if (fs::exists(dir / "model.safetensors.index.json")) {
    const std::string ipath = (dir / "model.safetensors.index.json").string();
    json idx = read_json(ipath);
    if (!idx.contains("weight_map") || !idx["weight_map"].is_object())
      throw Error(Errc::model_format, ipath + ": missing object 'weight_map'");
    std::map<std::string, std::string> wm;
    std::set<std::string> files;
    for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        throw Error(Errc::model_format, ipath + ": weight_map values must be file names");
      std::string f = it.value().get<std::string>();
      if (f.find('/') != std::string::npos || f.find("..") != std::string::npos)
        throw Error(Errc::model_format,
                    ipath + ": shard name '" + f + "' must be a plain file name");
      wm[it.key()] = f;
      files.insert(f);
    }
    for (const auto& f : files) {
      if (!fs::exists(dir / f))
        throw Error(Errc::io, "missing shard '" + (dir / f).string() + "' listed in " + ipath);
      wl.add_shard((dir / f).string());
    }
    wl.check_index(wm, dir_str);
  } else if (fs::exists(dir / "model.safetensors")) {
    wl.add_shard((dir / "model.safetensors").string());
  } else {
    throw Error(Errc::model_format,
                "no model.safetensors.index.json or model.safetensors in '" + dir_str + "'");
  }

  bind_weights(
      *m, [&](const std::string& n, const std::vector<size_t>& s) { return wl.matrix(n, s); },
      [&](const std::string& n, const std::vector<size_t>& s) { return wl.vec(n, s); });
  wl.log_unused();
  if (options.gemv_layout) model::pack_decoder(*m);
  model::set_int8_prefill(*m, options.int8_prefill);
  if (options.int8_encoder && options.gemv_layout && model::fast_kernels(m->quant))
    model::quantize_encoder(*m);

  model::set_special_ids(*m, model::read_special_id_sources(dir_str));
  SA_INFO("loaded %s: %zu decoder layers, %zu encoder layers, %.1f MB of weights (%s)",
          dir_str.c_str(), m->cfg.text.n_layers, m->cfg.audio.n_layer, m->weight_bytes / 1e6,
          quant_name(m->quant));
  return m;
}

// The tensor names and shapes of the HF checkpoint (DESIGN.md §4), shared by the file loader and
// the synthetic model.
void bind_weights(
    Model& m,
    const std::function<ops::WeightView(const std::string&, const std::vector<size_t>&)>& mat_at,
    const std::function<const float*(const std::string&, const std::vector<size_t>&)>& vec_at) {
  const auto& a = m.cfg.audio;
  const auto& t = m.cfg.text;
  const size_t S = a.n_state, K = a.kernel_size;
  m.named.clear();
  auto mat = [&](const std::string& name, const std::vector<size_t>& shape) {
    ops::WeightView w = mat_at(name, shape);
    m.named.push_back({name, shape, w, nullptr});
    return w;
  };
  auto vec = [&](const std::string& name, const std::vector<size_t>& shape) {
    const float* v = vec_at(name, shape);
    m.named.push_back({name, shape, {}, v});
    return v;
  };
  auto lin = [&](const std::string& p, size_t out, size_t in, bool bias) {
    model::Linear l;
    l.w = mat(p + ".weight", {out, in});
    if (bias) l.b = vec(p + ".bias", {out});
    return l;
  };
  auto conv = [&](const std::string& p, size_t out, size_t in, size_t k) {
    model::Linear l;
    l.w = mat(p + ".weight", {out, in, k});
    l.b = vec(p + ".bias", {out});
    return l;
  };
  auto ln = [&](const std::string& p, size_t d, bool bias) {
    model::Norm n;
    n.w = vec(p + ".weight", {d});
    if (bias) n.b = vec(p + ".bias", {d});
    return n;
  };
  m.conv1 = conv("encoder.conv1", S, a.n_mels, 3);
  m.conv2 = conv("encoder.conv2", S, S, 3);
  m.pos_emb = vec("encoder.positional_embedding.weight", {a.n_ctx, S});
  m.blocks.resize(a.n_layer);
  for (size_t i = 0; i < a.n_layer; ++i) {
    const std::string p = "encoder.blocks." + std::to_string(i) + ".";
    auto& b = m.blocks[i];
    b.attn_ln = ln(p + "attn_ln", S, true);
    b.query = lin(p + "attn.query", S, S, true);
    b.key = lin(p + "attn.key", S, S, false);
    b.value = lin(p + "attn.value", S, S, true);
    b.out = lin(p + "attn.out", S, S, true);
    b.mlp_ln = ln(p + "mlp_ln", S, true);
    b.fc1 = lin(p + "mlp.0", 4 * S, S, true);
    b.fc2 = lin(p + "mlp.2", S, 4 * S, true);
  }
  m.after_norm = ln("encoder.after_norm", S, true);
  m.adapter_conv = conv("adapter.conv", S, S, K);
  m.adapter_l1 = lin("adapter.linear1", a.adapter_hidden, S, true);
  m.adapter_l2 = lin("adapter.linear2", a.llm_dim, a.adapter_hidden, true);

  const size_t H = t.hidden, hd = t.head_dim;
  m.embed = mat("model.embed_tokens.weight", {t.vocab, H});
  m.layers.resize(t.n_layers);
  for (size_t i = 0; i < t.n_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    auto& l = m.layers[i];
    l.input_norm = ln(p + "input_layernorm", H, false);
    l.post_norm = ln(p + "post_attention_layernorm", H, false);
    l.q = lin(p + "self_attn.q_proj", t.n_heads * hd, H, true);
    l.k = lin(p + "self_attn.k_proj", t.n_kv_heads * hd, H, true);
    l.v = lin(p + "self_attn.v_proj", t.n_kv_heads * hd, H, true);
    l.o = lin(p + "self_attn.o_proj", H, t.n_heads * hd, false);
    l.gate = lin(p + "mlp.gate_proj", t.ffn, H, false);
    l.up = lin(p + "mlp.up_proj", t.ffn, H, false);
    l.down = lin(p + "mlp.down_proj", H, t.ffn, false);
  }
  m.final_norm = ln("model.norm", H, false);
  m.lm_head = lin("lm_head", t.vocab, H, false);
  m.init_rope();
}

ModelInfo model_info(const Model& m) {
  const auto& t = m.cfg.text;
  const auto& a = m.cfg.audio;
  return {t.hidden,  t.n_layers,       t.n_heads, t.n_kv_heads, t.ffn,
          t.vocab,   t.max_positions,  a.n_mels,  a.n_ctx,      a.n_state,
          a.n_layer, m.audio_patch_id, m.eos_id,  m.quant,      m.weight_bytes};
}

size_t audio_patch_count(size_t t) {
  return size_t(audio::audio_patch_tokens(int(std::min<size_t>(t, 1u << 30))));  // one formula
}

}  // namespace stepaudio
