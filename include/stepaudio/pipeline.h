// The request pipeline: recording -> features -> prompt -> engine -> text. This is what the CLI and
// the server call; each function runs on the caller's thread.
//
//   auto engine = stepaudio::load_engine("Step-Audio-2-mini", {.quant = stepaudio::Quant::bf16});
//   auto features = stepaudio::compute_features(stepaudio::audio::decode_file("call.m4a"));
//   stepaudio::RawRunResult r = stepaudio::run_raw(*engine, features, {});
//
// Thread-safety: an Engine is immutable after loading (but for its internally synchronized prompt
// cache) and may be shared by any number of threads
// (shared_ptr<const Engine>); every call builds its own per-request state, so concurrent calls on
// one Engine are safe. Progress callbacks run on the calling thread; `cancel` may be raised from
// any thread and is polled between stages and tokens (the call then throws Error(canceled)).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "stepaudio/audio.h"
#include "stepaudio/model.h"

namespace stepaudio {
namespace text {
class Tokenizer;
}
class PromptCache;  // src/pipeline/prompt_cache.h

// Everything loaded once per checkpoint: the weights and the checkpoint's own tokenizer.
struct Engine {
  std::shared_ptr<const Model> model;
  std::shared_ptr<const text::Tokenizer> tokenizer;
  std::string model_id;  // the folder's name, e.g. "Step-Audio-2-mini"
  // The decoder state after the system turn every task prompt starts with, computed once per
  // system prompt (by the first request that uses it) and copied into each request's prefix. The
  // one mutable part of an Engine: internally synchronized. Null (an Engine put together by hand):
  // every prefix is prefilled whole.
  std::shared_ptr<PromptCache> prompt_cache;
};

// Loads model + tokenizer from a Hugging Face checkpoint folder, or from one .gguf file written by
// `stepaudio quantize` (the tokenizer.json text is stored in it). Throws Error(model_format) with
// the `git lfs` instructions when the folder holds no checkpoint, and the loaders' errors
// otherwise.
std::shared_ptr<const Engine> load_engine(const std::string& dir, const LoadOptions& options = {});

// The front end's output for one recording: 16 kHz chunks and their log-mels.
struct AudioFeatures {
  double duration_s = 0;
  std::vector<audio::Chunk> chunks;   // sample ranges at 16 kHz
  std::vector<MelChunk> mels;         // one [128][T] log-mel per chunk
  std::vector<size_t> audio_patches;  // <audio_patch> tokens per chunk
  double resample_ms = 0, mel_ms = 0;
};

// Resample to 16 kHz, plan chunks (<= 25 s, cut at pauses unless options say otherwise) and compute
// each chunk's log-mel.
AudioFeatures compute_features(const audio::DecodedAudio& decoded,
                               const audio::ChunkOptions& chunking = {});

// The official ASR instruction (Step-Audio 2 examples): "Record what you hear."
inline constexpr const char* kAsrSystemPrompt = "请记录下你所听到的语音内容。";

// A raw generation: <|BOT|>system\n{system_prompt}<|EOT|><|BOT|>human\n{audio chunks}<|EOT|>
// <|BOT|>assistant\n, straight through the model (no guards, no post-processing).
struct RawRunOptions {
  std::string system_prompt = kAsrSystemPrompt;  // user-supplied: added tokens are not matched
  size_t max_new_tokens = 256;
  SamplingOptions sampling;  // default: greedy
  int threads = 0;
  std::string
      dump_dir;  // non-empty: mel_K.npy + the engine's named intermediates (README: `run --dump`)
};

struct RawRunResult {
  std::string text;  // the generated text ids decoded (EOS and non-text ids dropped)
  std::vector<int32_t> prompt_ids;
  GenerateResult generation;
};

RawRunResult run_raw(const Engine& engine, const AudioFeatures& features,
                     const RawRunOptions& options, const ProgressFn& progress = {},
                     const std::atomic<bool>* cancel = nullptr);

}  // namespace stepaudio
