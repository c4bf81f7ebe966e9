// The raw generation of `stepaudio run` without --task: the official ASR layout, no guards.
#include <filesystem>

#include "model/gguf.h"
#include "pipeline/prompt_cache.h"
#include "stepaudio/error.h"
#include "stepaudio/npy.h"
#include "stepaudio/pipeline.h"
#include "stepaudio/prompt.h"
#include "stepaudio/tokenizer.h"

namespace stepaudio {

std::shared_ptr<const Engine> load_engine(const std::string& dir, const LoadOptions& options) {
  namespace fs = std::filesystem;
  auto engine = std::make_shared<Engine>();
  engine->model = load_model(dir, options);    // first: says how to get a missing checkpoint
  if (fs::path(dir).extension() == ".gguf") {  // `stepaudio quantize` stored tokenizer.json in it
    engine->tokenizer = text::Tokenizer::from_json(model::gguf_tokenizer_json(dir), dir);
    engine->model_id = fs::path(dir).stem().string();
  } else {
    engine->tokenizer = text::Tokenizer::load(dir);
    engine->model_id = fs::path(dir).lexically_normal().filename().string();
    if (engine->model_id.empty())
      engine->model_id = fs::path(dir).parent_path().filename().string();
  }
  engine->prompt_cache = std::make_shared<PromptCache>();  // filled by the first task request
  return engine;
}

RawRunResult run_raw(const Engine& engine, const AudioFeatures& features,
                     const RawRunOptions& options, const ProgressFn& progress,
                     const std::atomic<bool>* cancel) {
  if (features.mels.empty()) throw Error(Errc::bad_audio, "the recording holds no audio to encode");
  const text::Tokenizer& tok = *engine.tokenizer;
  std::vector<text::Part> audio_parts;
  for (size_t n : features.audio_patches) audio_parts.push_back(text::Part::audio(n));
  std::vector<text::Message> messages = {text::Message::text("system", options.system_prompt),
                                         text::Message::list("human", std::move(audio_parts))};
  text::RenderedPrompt prompt = text::render_prompt(tok, messages);

  GenerateRequest req;
  req.prompt_ids = prompt.ids;
  req.mels = features.mels;
  req.max_new_tokens = options.max_new_tokens;
  req.sampling = options.sampling;
  req.threads = options.threads;
  req.dump_dir = options.dump_dir;
  if (!options.dump_dir.empty()) {
    make_dump_dir(options.dump_dir);
    for (size_t i = 0; i < features.mels.size(); ++i)
      write_npy((std::filesystem::path(options.dump_dir) / ("mel_" + std::to_string(i) + ".npy"))
                    .string(),
                features.mels[i].data.data(), {features.mels[i].n_mels, features.mels[i].n_frames});
  }
  RawRunResult result;
  result.generation = generate(*engine.model, req, progress, cancel);
  result.prompt_ids = std::move(prompt.ids);
  std::vector<int32_t> text_ids;
  for (int32_t id : result.generation.tokens)
    if (id < tok.first_non_text_id() && id != tok.eos_id()) text_ids.push_back(id);
  result.text = tok.decode(text_ids, /*skip_special=*/true);
  return result;
}

}  // namespace stepaudio
