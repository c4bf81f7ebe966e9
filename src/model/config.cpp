#include "model/config.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "stepaudio/error.h"

namespace stepaudio::model {

namespace {
using nlohmann::json;

const json& section(const json& root, const char* key, const std::string& where) {
  if (!root.contains(key) || !root[key].is_object())
    throw Error(Errc::model_format, where + ": missing object '" + key + "'");
  return root[key];
}

size_t get_size(const json& obj, const char* sec, const char* key, const std::string& where) {
  std::string name = std::string(sec) + "." + key;
  if (!obj.contains(key)) throw Error(Errc::model_format, where + ": missing key '" + name + "'");
  const json& v = obj[key];
  if (!v.is_number_integer() || v.get<long long>() <= 0)
    throw Error(Errc::model_format, where + ": '" + name + "' must be a positive integer");
  return v.get<size_t>();
}

double get_real(const json& obj, const char* sec, const char* key, const std::string& where) {
  std::string name = std::string(sec) + "." + key;
  if (!obj.contains(key)) throw Error(Errc::model_format, where + ": missing key '" + name + "'");
  const json& v = obj[key];
  if (!v.is_number() || v.get<double>() <= 0)
    throw Error(Errc::model_format, where + ": '" + name + "' must be a positive number");
  return v.get<double>();
}

void require(bool ok, const std::string& where, const std::string& what) {
  if (!ok) throw Error(Errc::model_format, where + ": " + what);
}
}  // namespace

ModelConfig parse_config(const std::string& text, const std::string& where) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(Errc::model_format, where + ": not valid JSON (" + e.what() + ")");
  }
  if (!root.is_object()) throw Error(Errc::model_format, where + ": not a JSON object");
  ModelConfig c;
  const json& t = section(root, "text_config", where);
  c.text.hidden = get_size(t, "text_config", "hidden_size", where);
  c.text.ffn = get_size(t, "text_config", "intermediate_size", where);
  c.text.n_heads = get_size(t, "text_config", "num_attention_heads", where);
  c.text.n_kv_heads = get_size(t, "text_config", "num_key_value_heads", where);
  c.text.n_layers = get_size(t, "text_config", "num_hidden_layers", where);
  c.text.vocab = get_size(t, "text_config", "vocab_size", where);
  c.text.max_positions = get_size(t, "text_config", "max_position_embeddings", where);
  c.text.rms_eps = get_real(t, "text_config", "rms_norm_eps", where);
  c.text.rope_theta = get_real(t, "text_config", "rope_theta", where);
  if (t.contains("rope_scaling") && !t["rope_scaling"].is_null())
    throw Error(Errc::model_format,
                where + ": text_config.rope_scaling is not supported (expected null)");
  const json& a = section(root, "audio_encoder_config", where);
  c.audio.n_mels = get_size(a, "audio_encoder_config", "n_mels", where);
  c.audio.n_ctx = get_size(a, "audio_encoder_config", "n_audio_ctx", where);
  c.audio.n_state = get_size(a, "audio_encoder_config", "n_audio_state", where);
  c.audio.n_head = get_size(a, "audio_encoder_config", "n_audio_head", where);
  c.audio.n_layer = get_size(a, "audio_encoder_config", "n_audio_layer", where);
  c.audio.llm_dim = get_size(a, "audio_encoder_config", "llm_dim", where);
  c.audio.kernel_size = get_size(a, "audio_encoder_config", "kernel_size", where);
  c.audio.adapter_stride = get_size(a, "audio_encoder_config", "adapter_stride", where);

  require(c.text.hidden % c.text.n_heads == 0, where,
          "hidden_size is not a multiple of num_attention_heads");
  c.text.head_dim = c.text.hidden / c.text.n_heads;
  require(c.text.head_dim % 2 == 0, where,
          "head_dim (hidden_size / num_attention_heads) must be even for RoPE");
  require(c.text.n_heads % c.text.n_kv_heads == 0, where,
          "num_attention_heads is not a multiple of num_key_value_heads");
  require(c.audio.n_state % c.audio.n_head == 0, where,
          "n_audio_state is not a multiple of n_audio_head");
  require(c.audio.llm_dim == c.text.hidden, where,
          "audio_encoder_config.llm_dim != text_config.hidden_size");
  return c;
}

ModelConfig load_config(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(Errc::io, "cannot read '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_config(ss.str(), path);
}

ModelConfig step_audio2_mini_config() {
  ModelConfig c;
  c.text = {3584, 18944, 28, 4, 28, 158720, 16384, 128, 1e-6, 1e6};
  c.audio = {128, 1500, 1280, 20,
             32,  3584, 3,    2};  // n_mels, n_ctx, n_state, n_head, n_layer, llm_dim, k, stride
  return c;
}

}  // namespace stepaudio::model
