// make_synthetic_model(): exact shapes, seeded random weights, no file. Used by `run`/`bench
// --synthetic` and for memory checks when the real checkpoint is absent.
//
// Full size in f32 would be ~33 GB (8.3 G parameters x 4 B) and does not fit a 24 GiB machine, so
// matrices are bf16 (~16.6 GB), i.e. the --quant bf16 path; vectors (norms, biases, positions) are
// f32 (a few MB). Values are uniform in +-sqrt(3/fan_in) (unit-variance activations), from a
// counter-based generator so each tensor is filled independently of the others.
#include <cmath>
#include <cstring>

#include "model/model_data.h"
#include "model/weight_store.h"
#include "stepaudio/error.h"
#include "util/log.h"

namespace stepaudio {

namespace {
// splitmix64: cheap, statistically fine for random test weights.
inline uint64_t mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
inline float uniform(uint64_t seed, size_t i) {  // [-1, 1)
  return static_cast<float>(static_cast<double>(mix(seed ^ (i * 0x632be59bd9b4e019ull)) >> 11) *
                                (2.0 / 9007199254740992.0) -
                            1.0);
}
uint64_t name_hash(const std::string& s, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

model::ModelConfig tiny_config() {
  model::ModelConfig c;
  c.text = {64, 96, 4, 2, 2, 512, 4096, 16, 1e-6, 1e6};
  c.audio = {128, 1500, 32, 4,
             2,   64,   3,  2};  // n_mels, n_ctx, n_state, n_head, n_layer, llm_dim, k, stride
  return c;
}
}  // namespace

std::shared_ptr<const Model> make_synthetic_model(const std::string& preset, uint64_t seed,
                                                  Quant quant, bool gemv_layout,
                                                  bool int8_prefill, bool int8_encoder) {
  auto m = std::make_shared<Model>();
  if (preset == "step-audio-2-mini") {
    m->cfg = model::step_audio2_mini_config();
    // Ids of the real tokenizer (../shared/data/tokenizer/step_audio2_special_tokens.json).
    m->audio_patch_id = 151690;
    m->eos_id = 151665;
  } else if (preset == "step-audio-2-mini-1layer") {
    // One decoder layer and one encoder block of the exact shapes, vocabulary cut to 1024 rows so
    // that prefill/decode time is the layer's (the full lm_head alone is 2.3x a layer's bytes):
    // the per-layer comparison with PyTorch (tests/reference/bench_torch.py, docs/PERF.md).
    m->cfg = model::step_audio2_mini_config();
    m->cfg.text.n_layers = 1;
    m->cfg.text.vocab = 1024;
    m->cfg.audio.n_layer = 1;
    m->audio_patch_id = 1000;
    m->eos_id = 1001;
  } else if (preset == "step-audio-2-mini-encoder") {
    // The whole encoder (32 blocks) + adapter of the real model with the 1-layer decoder above:
    // the encoder's full-size ratio in seconds, without generating the 7.6 B decoder.
    m->cfg = model::step_audio2_mini_config();
    m->cfg.text.n_layers = 1;
    m->cfg.text.vocab = 1024;
    m->audio_patch_id = 1000;
    m->eos_id = 1001;
  } else if (preset == "step-audio-2-mini-1layer-full-vocab") {
    // The same single layer with the real vocabulary and special ids: cheap runs of the tasks
    // (`bench --task`), which need the real tokenizer's ids.
    m->cfg = model::step_audio2_mini_config();
    m->cfg.text.n_layers = 1;
    m->cfg.audio.n_layer = 1;
    m->audio_patch_id = 151690;
    m->eos_id = 151665;
  } else if (preset == "tiny") {
    m->cfg = tiny_config();
    m->audio_patch_id = 500;
    m->eos_id = 501;
  } else {
    throw Error(Errc::invalid_argument,
                "unknown synthetic model '" + preset +
                    "' (expected step-audio-2-mini, step-audio-2-mini-1layer, "
                    "step-audio-2-mini-1layer-full-vocab, step-audio-2-mini-encoder or tiny)");
  }
  m->quant = quant;
  ops::ThreadPool pool(0);  // generation is ~10 ns per weight: use every core
  auto mat = [&](const std::string& name, const std::vector<size_t>& shape) {
    size_t n = 1;
    for (size_t d : shape) n *= d;
    const size_t rows = shape[0], cols = n / rows;
    const float a = std::sqrt(3.0f / static_cast<float>(cols));
    const uint64_t h = name_hash(name, seed);
    // The values are bf16 numbers whatever the storage, so every quant sees the same model.
    return model::make_matrix(
        *m, model::storage_dtype(quant, name, cols), rows, cols, model::fast_kernels(quant), pool,
        [&](size_t r, float* dst) {
          for (size_t i = 0; i < cols; ++i)
            dst[i] = ops::bf16_to_f32(ops::f32_to_bf16(a * uniform(h, r * cols + i)));
        });
  };
  auto vec = [&](const std::string& name, const std::vector<size_t>& shape) {
    size_t n = 1;
    for (size_t d : shape) n *= d;
    auto& buf = m->owned_f32.emplace_back(n);
    const uint64_t h = name_hash(name, seed);
    const bool is_norm_weight =
        name.find("norm") != std::string::npos || name.find("_ln.weight") != std::string::npos;
    for (size_t i = 0; i < n; ++i) buf[i] = (is_norm_weight ? 1.0f : 0.0f) + 0.1f * uniform(h, i);
    m->weight_bytes += n * 4;
    return static_cast<const float*>(buf.data());
  };
  bind_weights(*m, mat, vec);
  if (gemv_layout) model::pack_decoder(*m);
  model::set_int8_prefill(*m, int8_prefill);
  if (int8_encoder && gemv_layout && model::fast_kernels(quant)) model::quantize_encoder(*m);
  SA_INFO("synthetic model '%s' (%s): %.2f GB of weights", preset.c_str(), quant_name(quant),
          m->weight_bytes / 1e9);
  return m;
}

}  // namespace stepaudio
