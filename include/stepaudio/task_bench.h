// `stepaudio bench --task`: what each understanding task costs for S seconds of audio, stage by
// stage, and what the shared-prefix design saves.
//
// For every (task, S), in up to three modes:
//   "shared": as the product runs it: the audio mel'ed and encoded once, system + audio prefilled
//     once and forked per question, the generated answers decoding together in one batch;
//   "sequential": the same with the answers generated one after another
//     (TaskOptions::batch_branches = false): what batched decode saves;
//   "separate": as separate one-at-a-time requests would run it (share_prefix = false and
//     sequential: every question re-encodes the audio and re-prefills system + audio).
// All give the same answers (bit for bit in the exact modes and with the int8 prefill); the
// differences are the savings. With `concurrency` N, N copies of the shared request then run at
// once on one threaded Scheduler (continuous batching, as `serve --parallel N` runs them): the
// time until all N are done, next to one alone (the shared run), and whether every answer equals
// the lone run's. Random weights produce gibberish and rarely emit <|EOT|>, so every generated
// answer is capped at max_new_tokens (tone at min(16, cap); the summary at the task's own cap, 2 x
// target_length + 8) and the repetition guard is off: the numbers are the cost of the task with
// that stated token budget.
//
// Audio: a deterministic speech-like signal (pitch-wobbling tone bursts, 1.4 s on / 0.6 s off,
// faint noise; it passes the no_speech guard), or a recording repeated/cut to S seconds.
//
// Thread-safety: runs alone (it measures the machine).
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "stepaudio/model.h"
#include "stepaudio/tasks.h"

namespace stepaudio {

struct TaskBenchOptions {
  std::string model;      // checkpoint folder or .gguf, or
  std::string synthetic;  // synthetic preset (its vocabulary must cover the tokenizer's ids)
  // Folder with tokenizer.json (+ added_tokens.json): required with --synthetic (e.g. a tiny
  // checkpoint written by tests/reference/make_tiny_model.py --shared ../shared/data, which has the
  // real vocabulary and special ids); overrides the checkpoint's own otherwise.
  std::string tokenizer;
  Quant quant = Quant::q4;
  std::vector<Task> tasks = {Task::transcribe_and_summarize};
  std::vector<double> audio_seconds = {10};
  std::string audio;  // a recording instead of the synthetic signal
  size_t max_new_tokens = 32;
  size_t target_length = 10;
  // The summary's language (TaskOptions::language). "auto" is the service's default; "en" keeps
  // the unit (words) independent of the random model's script.
  std::string language = "en";
  bool shared = true, separate = true, sequential = false;
  size_t concurrency = 0;  // > 1: also N shared requests at once (TaskBenchConcurrency)
  // true: the scheduler never shares a pass between decode rows and prompt rows, pauses an
  // encoder at every block and prefills 128 rows per pass (the scheduling before shared passes).
  bool separate_passes = false;
  int threads = 0;
};

struct TaskBenchRun {
  Task task = Task::transcribe_and_summarize;
  double audio_seconds = 0;
  std::string mode = "shared";  // "shared" | "sequential" | "separate"
  bool shared = true;           // mode != "separate"
  size_t chunks = 0, groups = 0;
  size_t audio_tokens = 0, prompt_tokens = 0, completion_tokens = 0;
  size_t prompt_tokens_unshared = 0;  // the request's own count of a from-scratch-per-question run
  size_t cached_prompt_tokens = 0;    // of prompt_tokens, from the engine's prompt cache
  // Wall time per stage (ms). audio_ms: decode + resample of the recording (0 for the synthetic
  // signal, made at 16 kHz); prefill_ms includes score_ms (the batched label passes).
  double audio_ms = 0, mel_ms = 0, encode_ms = 0, prefill_ms = 0, score_ms = 0, generate_ms = 0,
         total_ms = 0;
  size_t peak_rss_bytes = 0;  // of the process so far (monotone)
  // The answers (transcription, summary, tone, reason, label probabilities) as one JSON object:
  // equal in both modes, which tests check.
  std::string answers_json;
};

// N copies of one shared request at once on a threaded Scheduler.
struct TaskBenchConcurrency {
  Task task = Task::transcribe_and_summarize;
  double audio_seconds = 0;
  size_t requests = 0;
  double wall_ms = 0;          // until all N were done
  double single_wall_ms = 0;   // one alone (the shared run's total), same process
  bool answers_equal = false;  // every request's answers equal the lone run's
  double mean_batch = 0;       // decode rows per scheduler step
  size_t steps = 0;            // decode steps (SchedulerStats)
  size_t shared_steps = 0;     // of them, in a pass with prompt rows
  size_t prompt_rows = 0;      // appended and scored rows
  size_t peak_rss_bytes = 0;
};

struct TaskBenchReport {
  std::string quant;
  int threads = 0;
  double load_s = 0;
  size_t model_bytes = 0;
  size_t max_new_tokens = 0;
  std::vector<TaskBenchRun> runs;
  std::vector<TaskBenchConcurrency> concurrency;
};

// The speech-like synthetic signal, 16 kHz mono, `seconds` long (deterministic).
std::vector<float> speech_like_signal(double seconds);

// Runs every (task, seconds, mode) in that order, then the concurrency run of that (task,
// seconds); on_run / on_concurrency are called after each (for live output). Throws Error like
// load_model / understand.
TaskBenchReport run_task_bench(
    const TaskBenchOptions& options, const std::function<void(const TaskBenchRun&)>& on_run = {},
    const std::function<void(const TaskBenchConcurrency&)>& on_concurrency = {});

}  // namespace stepaudio
