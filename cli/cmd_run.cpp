// `stepaudio run` (issue 4): until the audio front end and tokenizer are wired in, run takes
// developer inputs: --mel A.npy[,B.npy] (one float32 [128][T] mel per chunk) and --prompt-ids
// IDS.npy (int32, <audio_patch> ids already laid out), prints the generated ids, and --dump DIR
// writes the named intermediates. The orchestration lives in the library (stepaudio::generate).
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>

#include "commands.h"
#include "stepaudio/dev_inputs.h"
#include "stepaudio/error.h"
#include "stepaudio/model.h"

namespace stepaudio::cli {

namespace {
struct RunOptions {
  std::string model, audio, mel, prompt_ids, dump, quant = "bf16", synthetic;
  size_t max_tokens = 256;
  float temperature = 0.0f, top_p = 1.0f, repetition_penalty = 1.0f;
  int top_k = 0, threads = 0;
  uint64_t seed = 0;
};

int run(const RunOptions& o) {
  namespace fs = std::filesystem;
  std::shared_ptr<const Model> model;
  if (!o.synthetic.empty()) {
    model = make_synthetic_model(o.synthetic, o.seed, parse_quant(o.quant));
  } else {
    if (o.model.empty()) throw Error(Errc::invalid_argument, "--model or --synthetic is required");
    if (!fs::exists(fs::path(o.model) / "config.json"))
      throw Error(Errc::model_format, "no Step-Audio-2-mini checkpoint at '" + o.model +
                                          "'. Get it with: git lfs install && git clone "
                                          "https://huggingface.co/stepfun-ai/Step-Audio-2-mini " +
                                          o.model);
    model = load_model(o.model, {parse_quant(o.quant)});
  }
  if (!o.audio.empty())
    throw Error(Errc::invalid_argument,
                "--audio is not wired to the engine yet; pass --mel A.npy[,B.npy] and --prompt-ids "
                "IDS.npy");
  GenerateRequest req;
  if (!o.mel.empty()) {
    std::stringstream ss(o.mel);
    for (std::string p; std::getline(ss, p, ',');)
      if (!p.empty()) req.mels.push_back(read_mel_npy(p));
  }
  if (!o.prompt_ids.empty()) {
    req.prompt_ids = read_ids_npy(o.prompt_ids);
  } else if (!o.synthetic.empty() && req.mels.empty()) {
    req.prompt_ids = {1, 2, 3, 4, 5, 6, 7, 8};  // developer default for synthetic decode checks
  } else {
    throw Error(Errc::invalid_argument, "--prompt-ids is required");
  }
  req.max_new_tokens = o.max_tokens;
  req.sampling = {o.temperature, o.top_k, o.top_p, o.repetition_penalty, o.seed};
  req.threads = o.threads;
  req.dump_dir = o.dump;
  GenerateResult r = generate(*model, req);
  std::string line;
  for (size_t i = 0; i < r.tokens.size(); ++i) line += (i ? "," : "") + std::to_string(r.tokens[i]);
  std::printf("%s\n", line.c_str());
  std::fprintf(stderr, "stepaudio: %zu tokens; encode %.1f ms, prefill %.1f ms, generate %.1f ms\n",
               r.tokens.size(), r.encode_ms, r.prefill_ms, r.generate_ms);
  return 0;
}
}  // namespace

void add_run_command(CLI::App& root, std::vector<Command>& commands) {
  auto* app =
      root.add_subcommand("run", "Understand one recording (transcribe, summarize, analyze)");
  auto o = std::make_shared<RunOptions>();
  app->add_option("--model", o->model, "Step-Audio-2-mini checkpoint folder");
  app->add_option("--synthetic", o->synthetic,
                  "random model with exact shapes: step-audio-2-mini | tiny");
  app->add_option("--audio", o->audio,
                  "recording to process (not wired yet: use --mel/--prompt-ids)");
  app->add_option("--mel", o->mel,
                  "developer input: float32 [128][T] .npy per chunk, comma-separated");
  app->add_option("--prompt-ids", o->prompt_ids,
                  "developer input: int32 .npy prompt with <audio_patch> ids laid out");
  app->add_option("--max-tokens", o->max_tokens, "maximum new tokens")
      ->check(CLI::Range(1, 1 << 20));
  app->add_option("--temperature", o->temperature, "sampling temperature (0 = greedy)");
  app->add_option("--top-k", o->top_k, "top-k (0 = off)");
  app->add_option("--top-p", o->top_p, "top-p (1 = off)");
  app->add_option("--repetition-penalty", o->repetition_penalty, "HF repetition penalty (1 = off)");
  app->add_option("--seed", o->seed, "sampler (and synthetic weight) seed");
  app->add_option("--threads", o->threads, "compute threads (0 = physical cores)");
  app->add_option("--quant", o->quant, "weights: f32 | bf16 | q8 | q4");
  app->add_option("--dump", o->dump, "write named .npy intermediates to this folder");
  commands.push_back({app, [o] { return run(*o); }});
}

}  // namespace stepaudio::cli
