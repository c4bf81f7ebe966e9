// `stepaudio bench --task`: what each understanding task costs for S seconds of audio, stage by
// stage, and what the shared-prefix design saves.
//
// For every (task, S): the task runs once as the product runs it ("shared": the audio is mel'ed and
// encoded once, system + audio prefilled once and forked per question) and once as separate
// requests would run it ("separate": TaskOptions::share_prefix = false, every question re-encodes
// the audio and re-prefills system + audio). Both give the same answers; the difference is the
// saving. Random weights produce gibberish and rarely emit <|EOT|>, so every generated answer is
// capped at max_new_tokens (tone at min(16, cap); the summary at the task's own cap, 2 x
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
  bool shared = true, separate = true;
  int threads = 0;
};

struct TaskBenchRun {
  Task task = Task::transcribe_and_summarize;
  double audio_seconds = 0;
  bool shared = true;
  size_t chunks = 0, groups = 0;
  size_t audio_tokens = 0, prompt_tokens = 0, completion_tokens = 0;
  size_t prompt_tokens_unshared = 0;  // the request's own count of a from-scratch-per-question run
  // Wall time per stage (ms). audio_ms: decode + resample of the recording (0 for the synthetic
  // signal, made at 16 kHz); prefill_ms includes score_ms (the batched label passes).
  double audio_ms = 0, mel_ms = 0, encode_ms = 0, prefill_ms = 0, score_ms = 0, generate_ms = 0,
         total_ms = 0;
  size_t peak_rss_bytes = 0;  // of the process so far (monotone)
  // The answers (transcription, summary, tone, reason, label probabilities) as one JSON object:
  // equal in both modes, which tests check.
  std::string answers_json;
};

struct TaskBenchReport {
  std::string quant;
  int threads = 0;
  double load_s = 0;
  size_t model_bytes = 0;
  size_t max_new_tokens = 0;
  std::vector<TaskBenchRun> runs;
};

// The speech-like synthetic signal, 16 kHz mono, `seconds` long (deterministic).
std::vector<float> speech_like_signal(double seconds);

// Runs every (task, seconds, shared/separate) in that order; on_run is called after each run (for
// live output). Throws Error like load_model / understand.
TaskBenchReport run_task_bench(const TaskBenchOptions& options,
                               const std::function<void(const TaskBenchRun&)>& on_run = {});

}  // namespace stepaudio
