// The per-request task runner behind stepaudio::understand() (include/stepaudio/tasks.h): the
// engine, the options and the result being filled. Split over tasks.cpp (the request plan: chunks
// as they arrive, combining the chunks' answers), task_chunk.cpp (every answer of one chunk) and
// task_answers.cpp (generation in the scheduler's batch with the guards, label scoring,
// summaries). Chunks are pushed in as the front end plans them (begin, add_chunk..., finish), so a
// recording is never held whole: only the chunks in flight.
//
// Model work goes through a Scheduler (include/stepaudio/scheduler.h): the server's shared one, or
// an inline one per request. Every generated answer is a branch of the scheduler's batch: the
// answers of one chunk (transcript, tone, urgency reason) decode together, a chunk's branches keep
// decoding while the next chunk is encoded and prefilled, and with a shared scheduler they decode
// together with other requests' branches.
// Thread-safety: one Runner per request, driven by the calling thread. Branch callbacks run on the
// scheduler's thread and touch only their Pending (under mu_) and the progress stream (under
// progress_mu_); the Runner collects their results on the calling thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pipeline/guards.h"
#include "pipeline/task_assemble.h"
#include "stepaudio/error.h"
#include "stepaudio/prompt.h"
#include "stepaudio/scheduler.h"
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
  std::vector<float> pcm;  // 16 kHz, held until the chunk is encoded
};

// One generated answer in flight. The scheduler's thread writes it (on_token state while the
// branch runs, then result/error/done under Runner::mu_); the Runner reads it once done.
struct Pending {
  GenerateResult result;
  std::exception_ptr error;
  bool done = false;
  RepetitionDetector rep;
  bool loop = false;
  size_t prompt_pos = 0;  // the session's length when generation started
  int stream = -1;        // >= 0: the transcript ordinal whose text is streamed
  bool keep_ids = false;  // a transcript guess_language reads: its tokens so far (under mu_)
  std::vector<int32_t> ids;
  std::atomic<bool> stop{false};  // ends the answer at its next token (a dropped speculation)
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now(), ended;
  Pending(size_t ngram, size_t count, size_t single) : rep(ngram, count, single) {}
};

// A chunk whose answers are being generated: its sessions live here until they are collected.
struct ChunkWork {
  ChunkInfo info;
  std::optional<DecodeSession> prefix;  // system + the chunk's audio (kept for an audio summary)
  std::vector<int32_t> prefix_ids;
  std::optional<DecodeSession> transcript, reason, tone;
  std::shared_ptr<Pending> transcript_out, reason_out, tone_out;
  ChunkAnalysis analysis;  // emotion/urgency filled when scored; tone/reason when collected
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
        cancel_(cancel) {
    if (!o.scheduler) {
      own_sched_ = std::make_unique<Scheduler>(SchedulerOptions{.threaded = false});
      sched_ = own_sched_.get();
    } else {
      sched_ = o.scheduler;
    }
  }

  // expected_seconds: the recording's length if known (0: unknown), for progress only.
  void begin(double expected_seconds);
  // In order, every chunk of the recording; last: no chunk follows (false when not yet known).
  void add_chunk(audio::PlannedChunk chunk, bool last);
  void finish();  // the results over the whole recording

 private:
  bool wants_transcript() const { return pipeline::wants_transcript(o_.task); }
  bool wants_summary() const { return pipeline::wants_summary(o_.task); }
  bool wants_analysis() const { return pipeline::wants_analysis(o_.task); }
  // The total work is an estimate until the recording ends: percentages stay monotone and below
  // 100 until "done".
  void report(const std::string& stage) {
    if (!progress_) return;
    std::lock_guard<std::mutex> lk(progress_mu_);
    double pct = 100.0;
    if (stage != "done") {
      pct = total_work_ ? 100.0 * double(done_work_) / double(total_work_) : 0.0;
      pct = std::clamp(pct, last_pct_, 99.0);
    }
    last_pct_ = pct;
    progress_({stage, pct, {}});
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
  // A prefill through the scheduler (in pieces, the batch stepping between them).
  void append(DecodeSession& s, std::span<const int32_t> ids,
              const std::vector<AudioEmbedding>& audio = {}, Priority priority = Priority::normal) {
    const auto t0 = Clock::now();
    sched_->append(s, ids, audio, priority);
    u_.prefill_ms += ms_since(t0);
    u_.prompt_tokens += ids.size();
  }
  // Several sessions' prompts in one scheduler request (they share passes).
  void append(std::span<const AppendRequest> asks, Priority priority = Priority::normal) {
    const auto t0 = Clock::now();
    sched_->append(asks, priority);
    u_.prefill_ms += ms_since(t0);
    for (const AppendRequest& a : asks) u_.prompt_tokens += a.ids.size();
  }
  struct Generated {
    std::vector<int32_t> text_ids;
    double sum_logprob = 0;
    bool repetition = false;
    std::string text;
  };
  // Starts an answer in the batch (task_answers.cpp). stream_ordinal >= 0: a transcript whose
  // text is reported as "transcribe" progress deltas, in ordinal order. With
  // TaskOptions::batch_branches false it also waits for the answer (one at a time).
  std::shared_ptr<Pending> start_generate(DecodeSession& s, size_t max_tokens,
                                          int stream_ordinal = -1);
  // Waits for a started answer (driving an inline scheduler) and turns it into text, adding its
  // usage to the result; rethrows the branch's error.
  Generated collect(Pending& p);
  Generated generate(DecodeSession& s, size_t max_tokens) {
    return collect(*start_generate(s, max_tokens));
  }
  // Until ready() holds (evaluated under mu_): an inline scheduler is driven meanwhile.
  void wait_for(const std::function<bool()>& ready);
  void stream_text(int ordinal, std::string delta);  // under progress_mu_
  void stream_end(int ordinal);
  // One closed-set question asked on its branch (the prompt so far: prefix + suffix).
  struct LabelAsk {
    DecodeSession* branch;
    const LabelQuestion* question;
    const char* name;  // for the dump
    const std::vector<int32_t>& suffix;
  };
  // Scores every ask's labels, all trees in one scheduler request (task_answers.cpp).
  std::vector<LabelScores> score_labels(const std::vector<LabelAsk>& asks,
                                        const std::vector<int32_t>& prefix,
                                        Priority priority = Priority::normal);
  std::string summarize_text(const std::string& transcript, int depth);
  // The text summary's prompt around `transcript`, with the assistant turn opened.
  std::vector<int32_t> text_summary_prompt(const std::string& transcript,
                                           const std::string& lang) const;
  // A recording of several speech chunks is summarized from its transcript text, which is whole
  // only at the end: its prompt was prefilled after the last chunk's transcript (~900 rows, ~15
  // passes, for 10 minutes of speech). The early text summary (TaskOptions::early_text_summary)
  // prefills it while the chunks come in: after each chunk's transcript, the prompt's ids that
  // later text cannot change (all but the last kEarlyHold, at most a quarter of the context) are
  // queued as background rows, which fill the room of decode passes (e.g. beside the last
  // transcripts) or else go as normal rows after their wait. summarize_text continues that session
  // if its prompt (the whole transcript's, or its first piece's when the transcript exceeds the
  // context) starts with those ids (same language, same tokens at the joins), else starts
  // afresh: the answer is the same either way.
  void grow_text_summary(const std::string& segment_text);
  // The early session, waited for, if `ids` continue it; null if not. Taken once.
  std::optional<DecodeSession> take_early_summary(const std::vector<int32_t>& ids);
  static constexpr size_t kEarlyHold = 8;  // the turn's end (4 ids) and the text's last tokens
  struct EarlySummary {
    std::string transcript;  // the collected chunks' text, joined as assemble_results does
    std::optional<DecodeSession> session;
    std::vector<int32_t> ids;  // appended or queued in it
    bool failed = false;       // diverged or failed: not grown or continued
    bool busy = false;         // a piece in the scheduler (under mu_; counts in active_)
    std::exception_ptr error;  // its failure (under mu_)
  } early_;
  std::vector<AudioEmbedding> encode_chunk(const ChunkInfo& c);
  // A session for a chunk's prefix `ids`, holding their head (the system turn) already: a copy
  // from the engine's prompt cache, or prefilled here and put there. Returns how many ids it holds.
  size_t start_prefix(std::optional<DecodeSession>& s, const std::vector<int32_t>& ids);
  // task_chunk.cpp: every answer of one chunk started; last: the recording ends with it.
  void start_chunk(ChunkInfo c, bool last);
  // Its answers collected into the result; after_transcript runs once the transcript is in.
  void collect_chunk(ChunkWork& w, const std::function<void()>& after_transcript = {});
  void start_audio_summary(ChunkWork& w);
  // A recording of one speech chunk in language "auto": the language of its transcript's first
  // TaskOptions::language_guess_tokens tokens (waiting for them, or for the whole transcript if
  // shorter), so that the audio summary can start while the transcript decodes; "und" when they
  // show no letters.
  std::string guess_language(Pending& transcript);
  void drop_summary();  // the summary started in a guessed language that proved wrong
  // Recordings of several speech chunks (shared prefixes): tone and reason are generated for the
  // chunks whose answers the result keeps only (assemble_results' rules: the most urgent chunk's
  // reason, the tone of the chunk where the recording's emotion is most probable), not for every
  // chunk: ~100 of a 25 s chunk's ~550 decoder rows. Until the last chunk is scored the candidates
  // are held (hold_answers): the most urgent chunk's urgency branch, and per emotion label a copy
  // of the prefix of the chunk where that label is most probable (at most one per label, ~38 MB
  // each at full size). start_deferred asks both once every chunk is scored; finish() collects.
  void hold_answers(ChunkWork& w, size_t ordinal);
  std::vector<int32_t> reason_turn(const std::string& urgency) const;  // the urgency branch's
  void start_deferred();
  void collect_deferred();

  const Engine& e_;
  const text::Tokenizer& tok_;
  const TaskOptions& o_;
  const PromptSet& p_;
  Understanding& u_;
  const TaskProgressFn& progress_;
  const std::atomic<bool>* cancel_;
  std::unique_ptr<Scheduler> own_sched_;  // inline, when the options bring none
  Scheduler* sched_ = nullptr;
  size_t total_work_ = 0, done_work_ = 0;
  double last_pct_ = 0;
  size_t ctx_ = 0, reserve_ = 0;  // positions of the model's context, and kept for the answers
  size_t n_chunks_ = 0, n_speech_ = 0, planned_chunks_ = 1;
  size_t work_per_chunk() const;  // progress units
  std::vector<ChunkAnalysis> analyses_;
  std::string summary_lang_;
  std::unique_ptr<ChunkWork> summary_src_;  // the first chunk's prefix, for an audio summary
  // A one-chunk recording's audio summary in flight: its session and its answer.
  std::optional<DecodeSession> summary_session_;
  std::shared_ptr<Pending> summary_out_;
  struct Held {
    size_t ordinal = 0;  // the speech chunk's, i.e. its index in analyses_
    double score = 0;    // urgency level, or the label's probability
    std::string label;   // the reason's: the chunk's urgency answer
    std::shared_ptr<DecodeSession> session;
  };
  std::optional<Held> reason_hold_;
  std::map<std::string, Held> tone_hold_;
  std::vector<ChunkAnalysis> scored_;  // every held chunk's scores and weight, in chunk order
  std::optional<DecodeSession> deferred_tone_;
  std::shared_ptr<DecodeSession> deferred_reason_;
  std::shared_ptr<Pending> deferred_tone_out_, deferred_reason_out_;
  size_t deferred_tone_at_ = 0, deferred_reason_at_ = 0;
  nlohmann::json dump_scores_ = nlohmann::json::array();
  size_t chunk_index_ = 0;  // the chunk being scored, for the dump
  // When each collected answer decoded: generate_ms is their union (answers overlap in a batch).
  std::vector<std::pair<Clock::time_point, Clock::time_point>> gen_spans_;
  double generate_wall_ms() const;
  // Branches of this request in the scheduler (mu_ guards Pending fields and active_).
  std::mutex mu_;
  std::condition_variable cv_;
  size_t active_ = 0;
  std::atomic<bool> abort_{false};  // ends this request's branches (cancel, or unwinding)
  // Transcript deltas in chunk order: ordinal stream_next_ streams, later ones are held.
  std::mutex progress_mu_;
  int stream_next_ = 0;
  std::map<int, std::string> stream_held_;
  std::map<int, bool> stream_ended_;
  // Chunks in flight, oldest first. ~Runner waits for their branches before any member goes.
  std::deque<std::unique_ptr<ChunkWork>> inflight_;
  static constexpr size_t kMaxInflight = 4;  // each holds its answers' caches (~45 MB at full size)
  bool answers_in(const ChunkWork& w) {      // every answer of w has ended
    std::lock_guard<std::mutex> lk(mu_);
    for (const auto* p : {&w.transcript_out, &w.reason_out, &w.tone_out})
      if (*p && !(*p)->done) return false;
    return true;
  }

 public:
  ~Runner();  // ends this request's branches, then writes the label_scores.json dump
};

}  // namespace stepaudio::pipeline
