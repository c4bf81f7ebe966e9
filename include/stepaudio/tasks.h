// Speech understanding tasks on top of the engine (issue 6): transcription with segments and
// confidence, a summary of a chosen length, emotion and urgency scored over closed label sets,
// tone, and the guards (no speech, repetition loops, length and language caps).
//
//   auto engine = stepaudio::load_engine("Step-Audio-2-mini");
//   stepaudio::TaskOptions o;  // task = transcribe_and_summarize, target_length = 10
//   stepaudio::Understanding u = stepaudio::understand(*engine, audio::decode_file("call.m4a"), o);
//   std::string json = stepaudio::to_json(u);  // docs/API.md, schema docs/result.schema.json
//
// Work sharing: the audio is resampled, mel'ed and encoded once; each speech chunk (<= 25 s) is
// prefilled once as "system + audio" and every question forks that prefix; the label candidates
// of a question are scored in one batched decoder pass (DecodeSession::score); the generated
// answers (transcript, tone, urgency reason, summary) decode together in one batch (Scheduler).
// Long recordings: every chunk is transcribed and asked the voice questions on its own prefix, and
// the answers are combined: emotion = the speech-duration-weighted mean of the chunks'
// distributions, urgency = the distribution of the most urgent chunk (highest p(medium)/2 +
// p(high)) with that chunk's reason, tone = that of the chunk where the recording's emotion label
// is most probable (tone and reason are generated for those chunks only, once every chunk is
// scored); the summary of a multi-chunk recording is written from the transcript text
// (hierarchically when it exceeds the context). Time and memory grow linearly with the length.
// The system turn every prefix starts with comes from the engine's prompt cache (pipeline.h).
// Memory: chunks are planned as the audio arrives and processed one after the other (a few in
// flight: earlier ones decoding while the next is encoded and prefilled); a chunk's PCM, mels,
// audio rows and KV caches are freed when its answers are in (a few prefixes are held until the end
// as tone candidates: at most one per emotion label). With understand_file() (streaming decode)
// nothing grows with the recording's length but the transcript.
//
// Thread-safety: understand() runs on the calling thread and may be called concurrently on one
// Engine; a PromptSet is immutable after loading and may be shared. Progress callbacks run on the
// calling thread or the scheduler's thread (streamed transcript text), never two at once for one
// request; `cancel` may be raised from any thread (Error(canceled)).
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "stepaudio/audio.h"
#include "stepaudio/pipeline.h"
#include "stepaudio/scheduler.h"

namespace stepaudio {

enum class Task { transcribe, summarize, analyze, transcribe_and_summarize };
// "transcribe" | "summarize" | "analyze" | "transcribe_and_summarize"; throws
// Error(invalid_argument) otherwise.
Task parse_task(const std::string& name);
const char* task_name(Task task);

// The prompts the tasks use (versioned JSON, docs/TASKS.md). The default set is compiled in;
// a file replaces it as a whole.
struct LabelQuestion {
  std::string question;                     // asked in a human turn after the audio
  std::vector<std::string> labels;          // closed set, reported names
  std::map<std::string, std::string> text;  // label -> the answer text that is scored
};
struct PromptSet {
  int version = 0;
  std::string system;                   // the shared prefix's system prompt (before the audio)
  std::string transcribe_question;      // empty: the assistant answers the system prompt directly
  std::string summarize_question;       // with {target_length}, {unit}, {language}
  std::string summarize_text_system;    // text-only summary of a transcript (long recordings)
  std::string summarize_text_question;  // with {target_length}, {unit}, {language}, {transcript}
  std::string tone_question;
  std::string urgency_reason_question;  // with {urgency}
  LabelQuestion emotion, urgency;
  std::string source = "built-in";
};
// The compiled-in default set, and a file's. load_prompts throws Error(io) for an unreadable file
// and Error(invalid_argument) naming the problem for malformed JSON, an unknown version, or a
// missing task or field.
const PromptSet& default_prompts();
PromptSet load_prompts(const std::string& path);
PromptSet parse_prompts(const std::string& json, const std::string& source);

struct TaskProgress {
  std::string stage;   // "decode", "mel", "encode", "transcribe", "analyze", "summarize", "done"
  double percent = 0;  // 0..100 over the whole request
  // Stage "transcribe" only: transcript text generated since the previous report (whole UTF-8
  // characters), streamed token by token. Provisional: the repetition guard may later cut a loop's
  // tail from the final segment text, which stays the authority.
  std::string text_delta;
};
using TaskProgressFn = std::function<void(const TaskProgress&)>;

struct TaskOptions {
  Task task = Task::transcribe_and_summarize;
  size_t target_length = 10;      // summary length: words, or characters for zh/ja/ko
  std::string language = "auto";  // summary language: "auto" = the recording's, or ISO 639-1
  // language "auto", one speech chunk: the audio summary starts once this many transcript tokens
  // tell its language (it starts over if the whole transcript tells another); 0: it waits for
  // the whole transcript. The summary is the same either way.
  size_t language_guess_tokens = 16;
  // A recording of several speech chunks: its text summary's prompt is prefilled while the
  // chunks' transcripts come in (as background rows), not all after the last one. The summary is
  // the same either way.
  bool early_text_summary = true;
  const PromptSet* prompts = nullptr;  // null: default_prompts()
  size_t max_transcript_tokens = 448;  // per chunk (25 s of speech is ~100-200 tokens)
  size_t max_tone_tokens = 16, max_reason_tokens = 64;
  size_t max_context = 0;  // positions per prompt (a chunk's, a text summary's); 0: the model's
  double max_audio_seconds = 4 * 3600.0;
  int threads = 0;
  audio::ChunkOptions chunking;
  // no_speech: a chunk whose frames above this level (dBFS, 25 ms RMS) add up to less than
  // min_speech_seconds is not sent to the model.
  double speech_dbfs = -45.0, min_speech_seconds = 0.3;
  // Repetition guard: generation stops when the last `repeat_ngram`-gram has occurred
  // `repeat_count` times (e.g. 4 tokens repeated 4 times in a row, or a single token 12 times).
  size_t repeat_ngram_max = 8, repeat_count = 4, repeat_single = 12;
  // Non-empty: write mel_K.npy per encoded chunk (K = chunk index) and label_scores.json (per
  // scored question: the full prompt ids, the candidates' ids, log-probabilities and normalized
  // probabilities), so tests can recompute the label probabilities with the PyTorch reference.
  std::string dump_dir;
  // false (benchmarks only: `stepaudio bench --task`): every question is run as a separate request
  // would run it: the group's audio is mel'ed and encoded again and system + audio prefilled from
  // scratch for each branch instead of forking one prefix. Same answers, the unshared cost.
  bool share_prefix = true;
  // Where the model work runs: a shared Scheduler (a server's workers: continuous batching across
  // requests; not owned, must outlive the call), or null: an inline one for this request.
  Scheduler* scheduler = nullptr;
  // false (tests and benchmarks): the answers are generated one after another instead of
  // together in one batch. The same answers (bit for bit in the exact modes), one at a time.
  bool batch_branches = true;
};

struct Segment {
  double start = 0, end = 0;  // seconds
  std::string text;
  double confidence = 0;  // exp(mean log-prob of its text tokens)
  bool no_speech = false, repetition_stopped = false;
  size_t tokens = 0;
  double sum_logprob = 0;
};

struct LabelScores {
  std::string label;                     // argmax
  std::map<std::string, double> scores;  // normalized over the set, sum 1
};

struct Understanding {
  std::string id, model;
  Task task = Task::transcribe_and_summarize;
  std::string transcription, summary, language = "und", tone;
  double confidence = 0;
  bool no_speech = false;
  LabelScores emotion, urgency;
  double urgency_score = 0;  // expected level on 0..1: p(medium)/2 + p(high)
  std::string urgency_reason;
  std::vector<Segment> segments;
  double duration_s = 0;
  // The recording ended before the audio its header states (audio::DecodedAudio::truncated): the
  // result covers what decoded, and says so (JSON "truncated", flags.audio_truncated).
  bool audio_truncated = false;
  double stated_duration_s = 0;
  // Guards and reports.
  size_t summary_length = 0;  // in the unit below, after enforcement
  std::string summary_unit = "words";
  bool summary_truncated = false, summary_language_mismatch = false;
  std::string summary_language = "und";
  bool repetition_detected = false;
  size_t groups = 0;  // speech chunks analyzed (each on its own prefix)
  // Where the model ran and how its numbers were measured (stepaudio/remote.h, docs/REMOTE.md):
  // backend "local" | "remote"; label_scoring "full_answer" (every label's whole answer scored),
  // "first_token" (a remote's top_logprobs of the answer's first token) or "one_hot" (a remote
  // without logprobs: the generated answer matched to a label); confidence_measured false when
  // a remote gave no logprobs (confidence 0).
  std::string backend = "local", label_scoring = "full_answer";
  bool confidence_measured = true;
  bool hierarchical_summary = false;
  std::string prompts_source;
  int prompts_version = 0;
  // Timings (ms, wall) and usage. Stages overlap: answers decode together (generate_ms counts
  // the time any of them was decoding once), and prefill/encode calls include the decode steps
  // the scheduler takes between their pieces (and, with a shared scheduler, other requests' work).
  double decode_ms = 0, mel_ms = 0, encode_ms = 0, prefill_ms = 0, generate_ms = 0, total_ms = 0;
  double score_ms = 0;  // the batched label scoring passes (also counted in prefill_ms)
  size_t audio_tokens = 0, prompt_tokens = 0, completion_tokens = 0;
  // Prompt tokens the same answers would prefill if every question (and every label) were run
  // separately from scratch: what the shared prefix and the batched scoring save.
  size_t prompt_tokens_unshared = 0;
  // Prompt tokens whose decoder state came from the engine's prompt cache (counted in
  // prompt_tokens too): the system turn of every chunk once the cache holds it.
  size_t cached_prompt_tokens = 0;
};

// Runs the task on a decoded recording (the PCM is moved in and freed as early as possible).
// Throws Error(too_long) over max_audio_seconds, Error(canceled), and the engine's errors.
Understanding understand(const Engine& engine, audio::DecodedAudio decoded,
                         const TaskOptions& options, const TaskProgressFn& progress = {},
                         const std::atomic<bool>* cancel = nullptr);

// The same on a file, streamed: decoded frame by frame, resampled, chunked and run group by group,
// so memory does not depend on the recording's length (only the current group's PCM, bounded by
// the context, is held). Same result as understand(engine, decode_file(path, decode), ...).
// decode_ms is the time spent decoding and resampling. Also throws audio::decode_file's errors.
Understanding understand_file(const Engine& engine, const std::string& path,
                              const audio::DecodeOptions& decode, const TaskOptions& options,
                              const TaskProgressFn& progress = {},
                              const std::atomic<bool>* cancel = nullptr);

// The result JSON of docs/API.md (plus "no_speech", "task", "flags" and "prompts"), pretty when
// indent
// >= 0. Validated by docs/result.schema.json in the tests.
std::string to_json(const Understanding& result, int indent = 2);

}  // namespace stepaudio
