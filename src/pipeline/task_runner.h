// The per-request task runner behind stepaudio::understand() (include/stepaudio/tasks.h): the
// engine, the options and the result being filled. Split over tasks.cpp (the request plan: chunks,
// groups, branches, aggregation) and task_answers.cpp (one answer: generation with the guards,
// label scoring, summaries) and task_group.cpp (every answer of one group of chunks). Chunks are
// pushed in as the front end plans them (begin, add_chunk..., finish), so a recording is never held
// whole: only the current group's PCM. Internal to src/pipeline/.
// Thread-safety: one Runner per request, used by the calling thread only.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "stepaudio/error.h"
#include "stepaudio/prompt.h"
#include "stepaudio/session.h"
#include "stepaudio/tasks.h"
#include "stepaudio/tokenizer.h"

namespace stepaudio::pipeline {

using Clock = std::chrono::steady_clock;
inline double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// s with every occurrence of key replaced by value (prompt placeholders).
std::string replace_all(std::string s, const std::string& key, const std::string& value);
// An English name of an ISO 639-1 code for the prompts; "the language of the recording" if unknown.
std::string language_name(const std::string& code);

struct ChunkInfo {
  size_t index = 0;  // in the recording
  audio::Chunk range;
  size_t patches = 0;
  bool speech = false;
  std::vector<float> pcm;  // 16 kHz, held while its group waits and runs
};

// Emotion/urgency distributions, tone and reason of one group, and its weight (samples).
struct GroupAnalysis {
  LabelScores emotion, urgency;
  std::string tone, reason;
  double weight = 0;
};

// One request's state: the engine, the options and the running result.
class Runner {
 public:
  Runner(const Engine& e, const TaskOptions& o, Understanding& u, const TaskProgressFn& progress,
         const std::atomic<bool>* cancel)
      : e_(e),
        tok_(*e.tokenizer),
        o_(o),
        p_(o.prompts ? *o.prompts : default_prompts()),
        u_(u),
        progress_(progress),
        cancel_(cancel) {}

  // expected_seconds: the recording's length if known (0: unknown), for progress only.
  void begin(double expected_seconds);
  void add_chunk(audio::PlannedChunk chunk);  // in order, every chunk of the recording
  void finish();                              // the results over the whole recording

 private:
  bool wants_transcript() const { return o_.task != Task::analyze; }
  bool wants_summary() const {
    return o_.task == Task::summarize || o_.task == Task::transcribe_and_summarize;
  }
  bool wants_analysis() const {
    return o_.task == Task::analyze || o_.task == Task::transcribe_and_summarize;
  }
  // The total work is an estimate until the recording ends: percentages stay monotone and below
  // 100 until "done".
  void report(const std::string& stage) {
    if (!progress_) return;
    double pct = 100.0;
    if (stage != "done") {
      pct = total_work_ ? 100.0 * double(done_work_) / double(total_work_) : 0.0;
      pct = std::clamp(pct, last_pct_, 99.0);
    }
    last_pct_ = pct;
    progress_({stage, pct});
  }
  void check_cancel() const {
    if (cancel_ && cancel_->load(std::memory_order_relaxed))
      throw Error(Errc::canceled, "request canceled");
  }

  std::vector<int32_t> render(const std::vector<text::Message>& msgs, bool open_assistant) const {
    return text::render_prompt(tok_, msgs, open_assistant).ids;
  }
  // "<|BOT|>human\n{q}<|EOT|><|BOT|>assistant\n", or just the assistant header when q is empty.
  std::vector<int32_t> question_suffix(const std::string& q) const {
    if (q.empty()) return render({}, true);
    return render({text::Message::text("human", q, /*trusted=*/false)}, true);
  }
  void append(DecodeSession& s, const std::vector<int32_t>& ids,
              const std::vector<AudioEmbedding>& audio = {}) {
    const auto t0 = Clock::now();
    s.append(ids, audio);
    u_.prefill_ms += ms_since(t0);
    u_.prompt_tokens += ids.size();
  }
  struct Generated {
    std::vector<int32_t> text_ids;
    double sum_logprob = 0;
    bool repetition = false;
    std::string text;
  };
  // stream_text: report each new piece of text as a "transcribe" progress with text_delta.
  Generated generate(DecodeSession& s, size_t max_tokens, bool stream_text = false);
  LabelScores score_labels(DecodeSession& branch, const LabelQuestion& q, const std::string& name,
                           const std::vector<int32_t>& prompt);
  std::string summarize_text(const std::string& transcript, int depth);
  void run_group(bool only_group);
  void process_group(bool only_group);  // task_group.cpp
  void enforce_summary();

  const Engine& e_;
  const text::Tokenizer& tok_;
  const TaskOptions& o_;
  const PromptSet& p_;
  Understanding& u_;
  const TaskProgressFn& progress_;
  const std::atomic<bool>* cancel_;
  size_t total_work_ = 0, done_work_ = 0;
  double last_pct_ = 0;
  size_t ctx_ = 0, reserve_ = 0;  // positions per group prompt, and kept free for the answers
  size_t n_chunks_ = 0;
  std::vector<ChunkInfo> group_;  // the open group (speech chunks)
  size_t group_tokens_ = 0;
  std::vector<GroupAnalysis> analyses_;
  std::string group_summary_;  // with the audio present: only when there is a single group
  std::string summary_lang_;
  nlohmann::json dump_scores_ = nlohmann::json::array();
  size_t group_index_ = 0;

 public:
  ~Runner();  // writes the label_scores.json dump
};

}  // namespace stepaudio::pipeline
