// Hyper-parameters of a Step-Audio-2-mini checkpoint, read from its config.json.
//
// Key names follow the published config (as read by the vLLM / vox-serve Step-Audio-2 ports):
// `text_config` is a Qwen2 config (hidden_size, intermediate_size, num_attention_heads,
// num_key_value_heads, num_hidden_layers, vocab_size, max_position_embeddings, rms_norm_eps,
// rope_theta); `audio_encoder_config` is Whisper-style (n_mels, n_audio_ctx, n_audio_state,
// n_audio_head, n_audio_layer, llm_dim, kernel_size, adapter_stride). Nothing is assumed: a missing
// key is an Error(model_format) naming it.
// Thread-safety: plain value type.
#pragma once

#include <cstddef>
#include <string>

namespace stepaudio::model {

struct TextConfig {
  size_t hidden = 0, ffn = 0, n_heads = 0, n_kv_heads = 0, n_layers = 0, vocab = 0,
         max_positions = 0;
  size_t head_dim = 0;  // hidden / n_heads (Qwen2 has no separate head_dim key)
  double rms_eps = 0, rope_theta = 0;
};

struct AudioConfig {
  size_t n_mels = 0, n_ctx = 0, n_state = 0, n_head = 0, n_layer = 0, llm_dim = 0, kernel_size = 0,
         adapter_stride = 0;
  size_t adapter_hidden = 2048;  // Linear(n_state, 2048) in upstream's Adaptor; not in config.json
  double ln_eps = 1e-5;          // torch.nn.LayerNorm default, used by Whisper's blocks
};

struct ModelConfig {
  TextConfig text;
  AudioConfig audio;
};

// Parses config.json text; `where` names the file in error messages. Checks consistency (heads
// divide sizes, even head_dim for RoPE, llm_dim == hidden).
ModelConfig parse_config(const std::string& json_text, const std::string& where);
ModelConfig load_config(const std::string& path);

// The real Step-Audio-2-mini shapes (DESIGN.md §4), for the synthetic full-size model.
ModelConfig step_audio2_mini_config();

}  // namespace stepaudio::model
