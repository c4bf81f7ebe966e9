// `stepaudio run`: one recording through the model. Without --task this is the raw generation
// (official ASR prompt unless --prompt, greedy at temperature 0, no guards); it prints
// the text. Developer inputs bypass the front end and tokenizer: --mel A.npy[,B.npy] (float32
// [128][T] per chunk) with --prompt-ids IDS.npy (int32, <audio_patch> ids laid out) print the
// generated ids. --dump DIR writes the named intermediates. The work lives in the library
// (stepaudio::run_raw / stepaudio::generate).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>

#include "commands.h"
#include "options.h"
#include "stepaudio/dev_inputs.h"
#include "stepaudio/error.h"
#include "stepaudio/model.h"
#include "stepaudio/pipeline.h"
#include "stepaudio/tasks.h"

namespace stepaudio::cli {

namespace {
struct RunOptions {
  std::string model, audio, mel, prompt_ids, dump, quant = "bf16", synthetic;
  std::string prompt = kAsrSystemPrompt, channel = "first", chunking = "pause";
  std::string task, prompts_file, language = "auto", progress = "auto";
  size_t language_guess_tokens = 16;
  bool early_text_summary = true;
  bool json = false;
  size_t target_length = 10, max_context = 0;
  double max_audio_seconds = 4 * 3600;
  size_t max_tokens = 256;
  float temperature = 0.0f, top_p = 1.0f, repetition_penalty = 1.0f;
  int top_k = 0, threads = 0;
  uint64_t seed = 0;
};

// A one-line progress bar on stderr, redrawn in place (only on a terminal unless forced).
TaskProgressFn progress_bar(const std::string& mode) {
  const bool on = mode == "on" || (mode == "auto" && isatty(STDERR_FILENO));
  if (!on) return {};
  return [](const TaskProgress& p) {
    if (!p.text_delta.empty()) return;  // streamed transcript text: the bar shows stages only
    const int width = 30, fill = int(p.percent / 100.0 * width + 0.5);
    std::fprintf(stderr, "\r[%-*s] %3.0f%% %-12s", width, std::string(fill, '#').c_str(), p.percent,
                 p.stage.c_str());
    if (p.stage == "done") std::fprintf(stderr, "\n");
    std::fflush(stderr);
  };
}

// A cut-off recording still decodes; the user hears of it (stderr; the JSON has "truncated").
void warn_truncated(const std::string& path, double got_s, double stated_s) {
  if (stated_s > 0)
    std::fprintf(stderr,
                 "stepaudio: warning: %s is truncated: %.1f s decoded of the %.1f s its header "
                 "states; the result covers what decoded\n",
                 printable(path).c_str(), got_s, stated_s);
  else
    std::fprintf(stderr,
                 "stepaudio: warning: %s is truncated (a read error stopped decoding after "
                 "%.1f s); the result covers what decoded\n",
                 printable(path).c_str(), got_s);
}

int run_task(const RunOptions& o) {
  if (o.model.empty()) throw Error(Errc::invalid_argument, "--task needs --model");
  if (o.audio.empty()) throw Error(Errc::invalid_argument, "--task needs --audio");
  TaskOptions t;
  t.task = parse_task(o.task.empty() ? "transcribe_and_summarize" : o.task);
  PromptSet prompts;
  if (!o.prompts_file.empty()) {
    prompts = load_prompts(o.prompts_file);  // before the model: a bad file fails fast
    t.prompts = &prompts;
  }
  auto engine = load_engine(o.model, {parse_quant(o.quant)});
  audio::DecodeOptions decode;
  decode.channels = o.channel == "mix" ? audio::ChannelMode::mix : audio::ChannelMode::first;
  decode.max_seconds = o.max_audio_seconds;
  t.max_audio_seconds = o.max_audio_seconds;
  if (o.chunking == "fixed") t.chunking.search_seconds = 0;
  t.target_length = o.target_length;
  t.language = o.language;
  t.language_guess_tokens = o.language_guess_tokens;
  t.early_text_summary = o.early_text_summary;
  t.threads = o.threads;
  t.dump_dir = o.dump;
  t.max_transcript_tokens = o.max_tokens;
  t.max_context = o.max_context;
  TaskProgressFn bar = progress_bar(o.progress);
  if (bar) bar({"decode", 0, {}});
  // Streamed: decode, resample, chunking and the model run group by group (bounded memory).
  Understanding u = understand_file(*engine, o.audio, decode, t, bar);
  if (u.audio_truncated) warn_truncated(o.audio, u.duration_s, u.stated_duration_s);
  if (o.json) {
    std::printf("%s\n", to_json(u).c_str());
    return 0;
  }
  if (u.no_speech) std::printf("(no speech detected)\n");
  if (!u.transcription.empty()) std::printf("transcription: %s\n", u.transcription.c_str());
  if (!u.summary.empty()) std::printf("summary: %s\n", u.summary.c_str());
  if (t.task == Task::analyze || t.task == Task::transcribe_and_summarize) {
    std::printf("emotion: %s (%.2f)\n", u.emotion.label.c_str(), u.emotion.scores[u.emotion.label]);
    std::printf("tone: %s\n", u.tone.c_str());
    std::printf("urgency: %s (%.2f): %s\n", u.urgency.label.c_str(), u.urgency_score,
                u.urgency_reason.c_str());
  }
  return 0;
}

int run_audio(const RunOptions& o) {
  if (o.model.empty())
    throw Error(Errc::invalid_argument, "--audio needs --model (a checkpoint folder)");
  auto engine = load_engine(o.model, {parse_quant(o.quant)});
  audio::DecodeOptions decode;
  decode.channels = o.channel == "mix" ? audio::ChannelMode::mix : audio::ChannelMode::first;
  decode.max_seconds = o.max_audio_seconds;
  audio::ChunkOptions chunking;
  if (o.chunking == "fixed") chunking.search_seconds = 0;
  audio::DecodedAudio decoded = audio::decode_file(o.audio, decode);
  if (decoded.truncated) warn_truncated(o.audio, decoded.duration_s(), decoded.stated_seconds);
  AudioFeatures features = compute_features(std::move(decoded), chunking);
  RawRunOptions run;
  run.system_prompt = o.prompt;
  run.max_new_tokens = o.max_tokens;
  run.sampling = {o.temperature, o.top_k, o.top_p, o.repetition_penalty, o.seed};
  run.threads = o.threads;
  run.dump_dir = o.dump;
  RawRunResult r = run_raw(*engine, features, run);
  std::printf("%s\n", r.text.c_str());
  std::fprintf(stderr,
               "stepaudio: %.1f s of audio in %zu chunk(s), %zu prompt tokens, %zu new tokens; "
               "mel %.1f ms, encode %.1f ms, prefill %.1f ms, generate %.1f ms\n",
               features.duration_s, features.mels.size(), r.prompt_ids.size(),
               r.generation.tokens.size(), features.mel_ms, r.generation.encode_ms,
               r.generation.prefill_ms, r.generation.generate_ms);
  return 0;
}

// Options that would be silently ignored in the chosen mode are refused instead.
void check_combination(const CLI::App& app, const RunOptions& o) {
  const bool task = !o.task.empty() || o.json;
  if (task) {
    refuse_given(app,
                 {"--synthetic", "--mel", "--prompt-ids", "--prompt", "--temperature", "--top-k",
                  "--top-p", "--repetition-penalty", "--seed"},
                 "has no effect with --task/--json (the tasks decode greedily with their own "
                 "prompts; see --prompts)");
  } else {
    refuse_given(app,
                 {"--prompts", "--progress", "--target-length", "--language",
                  "--language-guess-tokens", "--max-context"},
                 "only applies with --task or --json");
    if (o.audio.empty())
      refuse_given(app, {"--prompt", "--channel", "--chunking", "--max-audio-seconds"},
                   "only applies with --audio");
  }
}

int run(const RunOptions& o) {
  if (!o.task.empty() || o.json) return run_task(o);
  if (!o.audio.empty()) return run_audio(o);
  std::shared_ptr<const Model> model;
  if (!o.synthetic.empty()) {
    model = make_synthetic_model(o.synthetic, o.seed, parse_quant(o.quant));
  } else {
    if (o.model.empty()) throw Error(Errc::invalid_argument, "--model or --synthetic is required");
    model = load_model(o.model, {parse_quant(o.quant)});
  }
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
    throw Error(Errc::invalid_argument,
                "nothing to run: give --audio FILE (or the developer inputs --mel with "
                "--prompt-ids)");
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
  auto* model = app->add_option("--model", o->model, "checkpoint folder or .gguf file");
  app->add_option("--synthetic", o->synthetic,
                  "random model with exact shapes: step-audio-2-mini | tiny")
      ->excludes(model);
  auto* audio =
      app->add_option("--audio", o->audio, "recording to process (any format FFmpeg decodes)");
  app->add_option("--prompt", o->prompt, "system prompt (default: the official ASR instruction)");
  app->add_option("--channel", o->channel, "first (official) or mix")
      ->check(CLI::IsMember({"first", "mix"}));
  app->add_option("--chunking", o->chunking, "pause (cut at quiet points) or fixed (every 25 s)")
      ->check(CLI::IsMember({"pause", "fixed"}));
  app->add_option("--max-audio-seconds", o->max_audio_seconds,
                  "refuse longer recordings (default 14400 = 4 hours)")
      ->check(above(0));
  app->add_option("--mel", o->mel,
                  "developer input: float32 [128][T] .npy per chunk, comma-separated")
      ->excludes(audio);
  app->add_option("--prompt-ids", o->prompt_ids,
                  "developer input: int32 .npy prompt with <audio_patch> ids laid out");
  app->add_option("--max-tokens", o->max_tokens, "maximum new tokens")->check(in_range(1, 1 << 20));
  app->add_option("--temperature", o->temperature, "sampling temperature (0 = greedy)")
      ->check(in_range(0, 100));
  app->add_option("--top-k", o->top_k, "top-k (0 = off)")->check(in_range(0, 1e6));
  app->add_option("--top-p", o->top_p, "top-p (1 = off)")->check(in_range(0, 1));
  app->add_option("--repetition-penalty", o->repetition_penalty, "HF repetition penalty (1 = off)")
      ->check(above(0));
  app->add_option("--seed", o->seed, "sampler (and synthetic weight) seed");
  app->add_option("--threads", o->threads, "compute threads (0 = every core)")
      ->check(thread_count());
  app->add_option("--quant", o->quant,
                  "weights: f32 | bf16 | q8 | q4 (default bf16; a .gguf file is used as stored)")
      ->check(CLI::IsMember({"f32", "bf16", "q8", "q4"}));
  app->add_option("--dump", o->dump, "write named .npy intermediates to this folder");
  app->add_option("--task", o->task,
                  "transcribe | summarize | analyze | transcribe_and_summarize (without it: raw "
                  "generation)")
      ->check(CLI::IsMember({"transcribe", "summarize", "analyze", "transcribe_and_summarize"}));
  app->add_flag("--json", o->json,
                "print the result JSON (docs/API.md; implies --task transcribe_and_summarize "
                "when no task is given)");
  app->add_option("--prompts", o->prompts_file, "prompts file (JSON, docs/TASKS.md)");
  app->add_option("--target-length", o->target_length,
                  "summary length: words, or characters for Chinese/Japanese/Korean/Thai")
      ->check(in_range(1, 100000));
  app->add_option("--max-context", o->max_context,
                  "positions per task prompt (0 = the model's maximum; smaller forces grouping and "
                  "the hierarchical summary, for tests and tuning)");
  app->add_option("--language", o->language, "summary language: auto or an ISO 639-1 code");
  app->add_option("--language-guess-tokens", o->language_guess_tokens,
                  "with --language auto: start a short recording's summary once this many "
                  "transcript tokens tell the language (it starts over if the whole transcript "
                  "tells another; same answer); 0: wait for the whole transcript")
      ->check(in_range(0, 4096));
  app->add_option("--early-text-summary", o->early_text_summary,
                  "a recording of several speech chunks: prefill its text summary's prompt while "
                  "the transcripts come in (true), or after the last one (false); same answer");
  app->add_option("--progress", o->progress,
                  "progress bar on stderr: auto (on a terminal), on, off")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  commands.push_back({app, [o, app] {
                        check_combination(*app, *o);
                        refuse_contradicting_quant(*app, o->model, o->quant);
                        return run(*o);
                      }});
}

}  // namespace stepaudio::cli
