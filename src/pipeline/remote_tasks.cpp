// understand() over a ChatCompleter (stepaudio/remote.h): the local plan of tasks.cpp with each
// model call a chat request. Per speech chunk (processed one after the other):
//   base        = system prompt + a human turn holding the chunk's audio
//   transcript  = base (+ the transcribe question if the prompts have one), streamed, guarded
//   emotion     = base + question, one token with top_logprobs (or generated and matched)
//   urgency     = the same
// The transcript runs on the calling thread while emotion and urgency go out concurrently from
// helper threads: the remote batches them and caches the shared prefix. Tone and reason are asked
// of the chosen chunks only, as the local runner does (the rules of assemble_results: the reason of
// the most urgent chunk, the tone of the chunk where the recording's emotion is most probable):
//   reason      = base + urgency question + the chosen answer + the reason question
//   tone        = base + question, generated
// While chunks are scored their candidates' audio is held (the most urgent chunk so far, and per
// emotion label the chunk where it is most probable), and finish() asks the two beside the summary.
// The rendered prompts are the local runner's token for token (the same chat template), so a
// greedy remote of the same model gives the same transcript. Combination and summary rules are
// shared with the local runner (task_assemble.h).
#include <algorithm>
#include <cmath>
#include <functional>
#include <future>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include "pipeline/guards.h"
#include "pipeline/task_assemble.h"
#include "pipeline/task_runner.h"
#include "stepaudio/error.h"
#include "stepaudio/remote.h"
#include "text/utf8.h"

namespace stepaudio {
namespace {

using pipeline::Clock;
using pipeline::ms_since;

// Runs `work` on this thread, then waits for every helper (they use the caller's frame, so none may
// outlive it) and rethrows the first error: work's, else the helpers' in order.
void run_then_join(const std::function<void()>& work,
                   std::initializer_list<std::future<void>*> helpers) {
  std::exception_ptr first_error;
  try {
    work();
  } catch (...) {
    first_error = std::current_exception();
  }
  for (std::future<void>* f : helpers) {
    if (!f->valid()) continue;
    try {
      f->get();
    } catch (...) {
      if (!first_error) first_error = std::current_exception();
    }
  }
  if (first_error) std::rethrow_exception(first_error);
}

class RemoteRunner {
 public:
  RemoteRunner(const ChatCompleter& c, const TaskOptions& o, Understanding& u,
               const TaskProgressFn& progress, const std::atomic<bool>* cancel)
      : c_(c),
        o_(o),
        p_(o.prompts ? *o.prompts : default_prompts()),
        u_(u),
        progress_(progress),
        cancel_(cancel) {}

  void begin(double seconds) {
    planned_ = std::max<size_t>(
        1, size_t(std::ceil(seconds / std::max(1.0, o_.chunking.max_seconds - 2))));
  }

  void add_chunk(audio::PlannedChunk c) {
    check_cancel();
    u_.duration_s = c.range.end_s();
    ++seen_;
    const size_t patches = size_t(audio::audio_patch_tokens(audio::mel_frames(c.pcm.size())));
    const bool speech =
        patches > 0 && pipeline::active_seconds(c.pcm.data(), c.pcm.size(), o_.speech_dbfs) >=
                           o_.min_speech_seconds;
    if (!speech) {  // the energy check, before any model work (as locally)
      Segment seg;
      seg.start = c.range.start_s();
      seg.end = c.range.end_s();
      seg.no_speech = true;
      u_.segments.push_back(seg);
      report("transcribe");
      return;
    }
    u_.audio_tokens += patches;
    run_chunk(c);
    // A second speech chunk: the summary will be written from the transcript text.
    if (++u_.groups == 1 && wants_summary())
      first_pcm_ = std::move(c.pcm);
    else
      first_pcm_.reset();
  }

  void finish() {
    u_.no_speech = u_.groups == 0;
    if (u_.no_speech) {
      pipeline::assemble_no_speech(u_, p_, wants_analysis());
      report("done");
      return;
    }
    // Tone and reason decode beside the summary.
    std::string tone, reason;
    std::future<void> tone_done, reason_done;
    const bool analyzed = wants_analysis() && !analyses_.empty();
    if (analyzed) {
      const Held& urgent = held_for(pipeline::most_urgent_chunk(analyses_), urgent_);
      const std::string emotion = pipeline::combined_emotion(analyses_).label;
      const Held& strongest =
          held_for(pipeline::strongest_chunk(analyses_, emotion), strongest_.at(emotion));
      reason_done = std::async(std::launch::async, [&] {
        reason = ask_reason(*urgent.pcm, analyses_[urgent.index].urgency.label);
      });
      tone_done = std::async(std::launch::async, [&] { tone = ask_tone(*strongest.pcm); });
    }
    run_then_join([&] { summarize(); }, {&reason_done, &tone_done});
    if (analyzed) {
      u_.tone = tone;
      u_.urgency_reason = reason;
    }
    report("done");
  }

 private:
  // The audio of a chunk whose tone or reason may be asked, and its index in analyses_.
  struct Held {
    size_t index = 0;
    std::shared_ptr<const std::vector<float>> pcm;
  };

  // The candidate for `chosen` (the rules' pick): the same chunk, as both follow the same rules.
  static const Held& held_for(size_t chosen, const Held& held) {
    if (held.index != chosen || !held.pcm)
      throw Error(Errc::internal, "remote tasks: the held chunk is not the chosen one");
    return held;
  }

  // Called with each analyzed chunk before it joins analyses_: keeps its audio where it is the
  // most urgent so far, or where an emotion label is more probable than in any earlier chunk
  // (ties: the earliest, as most_urgent_chunk and strongest_chunk).
  void hold_candidates(const pipeline::ChunkAnalysis& a, const std::vector<float>& pcm) {
    const size_t index = analyses_.size();
    std::shared_ptr<const std::vector<float>> shared;
    auto held = [&] {
      if (!shared) shared = std::make_shared<const std::vector<float>>(pcm);
      return Held{index, shared};
    };
    if (!urgent_.pcm || pipeline::urgency_level(a.urgency) >
                            pipeline::urgency_level(analyses_[urgent_.index].urgency))
      urgent_ = held();
    for (const auto& [label, p] : a.emotion.scores) {
      auto it = strongest_.find(label);
      if (it == strongest_.end() || p > analyses_[it->second.index].emotion.scores.at(label))
        strongest_[label] = held();
    }
  }

  std::string ask_reason(const std::vector<float>& pcm, const std::string& urgency) {
    std::vector<ChatMessage> m = base(pcm);
    m.push_back(ChatMessage::text("human", p_.urgency.question));
    m.push_back(ChatMessage::text("assistant", p_.urgency.text.at(urgency)));
    m.push_back(ChatMessage::text(
        "human", pipeline::replace_all(p_.urgency_reason_question, "{urgency}", urgency)));
    return generate(m, o_.max_reason_tokens).text;
  }

  std::string ask_tone(const std::vector<float>& pcm) {
    std::vector<ChatMessage> m = base(pcm);
    m.push_back(ChatMessage::text("human", p_.tone_question));
    return generate(m, o_.max_tone_tokens).text;
  }

  // The chunks' answers combined (tone and reason: finish() sets them) and the summary.
  void summarize() {
    pipeline::assemble_results(u_, analyses_);
    if (!wants_summary()) return;
    report("summarize");
    const std::string lang = o_.language != "auto" ? o_.language : u_.language;
    if (first_pcm_) {  // one speech chunk: summarized with its audio present
      std::vector<ChatMessage> m = base(*first_pcm_);
      m.push_back(
          ChatMessage::text("human", pipeline::summary_question(p_, o_.target_length, lang)));
      u_.summary = generate(m, pipeline::summary_token_cap(o_.target_length, lang)).text;
    } else {
      u_.summary = summarize_text(u_.transcription, lang, 0);
    }
    pipeline::enforce_summary(u_, o_.target_length, lang);
  }

  bool wants_transcript() const { return pipeline::wants_transcript(o_.task); }
  bool wants_summary() const { return pipeline::wants_summary(o_.task); }
  bool wants_analysis() const { return pipeline::wants_analysis(o_.task); }
  void check_cancel() const {
    if (cancel_ && cancel_->load(std::memory_order_relaxed))
      throw Error(Errc::canceled, "request canceled");
  }
  void report(const std::string& stage, std::string delta = {}) {
    if (!progress_) return;
    std::lock_guard lk(progress_mu_);
    double pct = 100;
    if (stage != "done") pct = std::min(99.0, 100.0 * double(seen_) / double(planned_ + 1));
    pct = std::max(pct, last_pct_);
    last_pct_ = pct;
    progress_({stage, pct, std::move(delta)});
  }

  std::vector<ChatMessage> base(const std::vector<float>& pcm) const {
    return {ChatMessage::text("system", p_.system),
            ChatMessage::list("human", {ChatPart::audio(pcm)})};
  }

  // One generation: greedy (as the local tasks), usage and timing added to the result.
  ChatResult call(const std::vector<ChatMessage>& m, ChatOptions opt,
                  const ChatDeltaFn& on_delta = {}, const std::atomic<bool>* stop = nullptr) {
    const auto t0 = Clock::now();
    ChatResult r = c_.complete(m, opt, on_delta, cancel_, stop);
    std::lock_guard lk(usage_mu_);
    u_.generate_ms += ms_since(t0);
    u_.prompt_tokens += r.prompt_tokens;
    u_.prompt_tokens_unshared += r.prompt_tokens;
    u_.completion_tokens += std::max({r.tokens.size(), r.completion_tokens, r.logprobs.size()});
    return r;
  }
  // A generated answer with the repetition guard (as every local answer), its text tokens'
  // count and logprob sum. stream: the transcript, whose text deltas go to progress.
  struct Answer {
    std::string text;
    size_t tokens = 0;
    double sum_logprob = 0;
    bool loop = false, measured = true;
  };
  Answer generate(const std::vector<ChatMessage>& m, size_t max_tokens, bool stream = false) {
    ChatOptions opt;
    opt.max_new_tokens = max_tokens;
    opt.logprobs = true;
    // The guard over the streamed tokens: a token's bytes stand for its id.
    pipeline::RepetitionDetector rep(o_.repeat_ngram_max, o_.repeat_count, o_.repeat_single);
    std::map<std::string, int32_t> ids;
    std::vector<ChatTokenLogprob> kept;
    std::atomic<bool> loop{false};
    const ChatResult r = call(
        m, opt,
        [&](const ChatDelta& d) {
          if (loop) return;
          for (const ChatTokenLogprob& t : d.logprobs) {
            kept.push_back(t);
            const int32_t id = ids.emplace(t.bytes, int32_t(ids.size())).first->second;
            if (rep.push(id)) {
              loop = true;
              kept.resize(rep.keep());
              return;  // the loop's text is not streamed (the answer keeps one copy)
            }
          }
          if (stream && !d.text.empty()) report("transcribe", d.text);
        },
        &loop);
    Answer out;
    out.text = r.text;
    if (loop) {
      // The text of the kept tokens: audio/tts and other added tokens (<|...|>) are not text.
      std::string raw;
      for (const auto& t : kept)
        if (is_text_token(t.bytes) && !(t.bytes.starts_with("<|") && t.bytes.ends_with("|>")))
          raw += t.bytes;
      out.text.clear();
      text::append_utf8_lossy(out.text, raw, /*hold_tail=*/false);
      out.loop = true;
      std::lock_guard lk(usage_mu_);
      u_.repetition_detected = true;
    } else {
      kept = r.logprobs;
    }
    for (const auto& t : kept)
      if (is_text_token(t.bytes)) {
        ++out.tokens;
        out.sum_logprob += t.logprob;
      }
    out.measured = !(kept.empty() && !r.text.empty());  // text without logprobs
    return out;
  }

  void run_chunk(const audio::PlannedChunk& c) {
    pipeline::ChunkAnalysis a;
    a.weight = double(c.range.end - c.range.begin);
    std::future<void> emotion, urgency;
    if (wants_analysis()) {
      emotion = std::async(std::launch::async, [&] { a.emotion = score(c.pcm, p_.emotion); });
      urgency = std::async(std::launch::async, [&] { a.urgency = score(c.pcm, p_.urgency); });
    }
    run_then_join(
        [&] {
          if (wants_transcript()) u_.segments.push_back(transcribe(c));
        },
        {&emotion, &urgency});
    report("analyze");
    if (!wants_analysis()) return;
    hold_candidates(a, c.pcm);
    analyses_.push_back(std::move(a));
  }

  Segment transcribe(const audio::PlannedChunk& c) {
    std::vector<ChatMessage> m = base(c.pcm);
    if (!p_.transcribe_question.empty())
      m.push_back(ChatMessage::text("human", p_.transcribe_question));
    const Answer a = generate(m, o_.max_transcript_tokens, /*stream=*/true);
    Segment seg;
    seg.start = c.range.start_s();
    seg.end = c.range.end_s();
    seg.text = a.text;
    seg.repetition_stopped = a.loop;
    seg.tokens = a.tokens;
    seg.sum_logprob = a.sum_logprob;
    seg.confidence = seg.tokens ? std::exp(seg.sum_logprob / double(seg.tokens)) : 0.0;
    if (!a.measured) u_.confidence_measured = false;
    return seg;
  }

  // A label question: one answer token with its top alternatives; without logprobs, the
  // answer generated and matched (one-hot). No match at all: the set's first label.
  LabelScores score(const std::vector<float>& pcm, const LabelQuestion& q) {
    std::vector<ChatMessage> m = base(pcm);
    m.push_back(ChatMessage::text("human", q.question));
    ChatOptions opt;
    opt.max_new_tokens = 1;
    opt.logprobs = true;
    opt.top_logprobs = 20;  // the most OpenAI's protocol allows
    const ChatResult r = call(m, opt);
    if (!r.logprobs.empty())
      if (auto s = score_labels_first_token(q, r.logprobs[0].top)) {
        set_scoring("first_token");
        return *s;
      }
    set_scoring("one_hot");
    if (auto s = match_label(q, generate(m, 8).text)) return *s;
    LabelScores s;
    s.label = q.labels.front();
    for (const auto& l : q.labels) s.scores[l] = l == s.label ? 1.0 : 0.0;
    return s;
  }
  void set_scoring(const char* how) {
    std::lock_guard lk(usage_mu_);
    if (u_.label_scoring != "one_hot") u_.label_scoring = how;  // the weakest one is reported
  }

  // The transcript summarized as text; hierarchical when it exceeds half the context (tokens
  // estimated as bytes / 3: a gateway has no tokenizer).
  std::string summarize_text(const std::string& transcript, const std::string& lang, int depth) {
    check_cancel();
    const size_t ctx = o_.max_context ? o_.max_context : 8192;
    const size_t cap = pipeline::summary_token_cap(o_.target_length, lang);
    if (transcript.size() / 3 + cap + 256 <= ctx || depth >= 6) {
      std::vector<ChatMessage> m = {
          ChatMessage::text("system", p_.summarize_text_system),
          ChatMessage::text(
              "human", pipeline::summary_text_question(p_, o_.target_length, lang, transcript))};
      return generate(m, cap).text;
    }
    u_.hierarchical_summary = true;
    const size_t budget = ctx / 2 * 3;  // bytes
    std::string joined, piece;
    auto flush = [&] {
      if (piece.empty()) return;
      if (!joined.empty()) joined += ' ';
      joined += summarize_text(piece, lang, depth + 1);
      piece.clear();
    };
    for (size_t i = 0; i < transcript.size();) {
      size_t j = transcript.find_first_of(" \n", i);
      j = j == std::string::npos ? transcript.size() : j + 1;
      if (piece.size() + (j - i) > budget) flush();
      piece.append(transcript, i, j - i);
      i = j;
    }
    flush();
    return summarize_text(joined, lang, depth + 1);
  }

  const ChatCompleter& c_;
  const TaskOptions& o_;
  const PromptSet& p_;
  Understanding& u_;
  const TaskProgressFn& progress_;
  const std::atomic<bool>* cancel_;
  std::mutex progress_mu_, usage_mu_;
  double last_pct_ = 0;
  size_t planned_ = 1, seen_ = 0;
  std::vector<pipeline::ChunkAnalysis> analyses_;
  Held urgent_;                            // the most urgent chunk so far
  std::map<std::string, Held> strongest_;  // per emotion label: where it is most probable so far
  std::optional<std::vector<float>> first_pcm_;  // a one-speech-chunk recording's audio
};

}  // namespace

Understanding understand(const ChatCompleter& completer, audio::DecodedAudio decoded,
                         const TaskOptions& options, const TaskProgressFn& progress,
                         const std::atomic<bool>* cancel) {
  const auto t0 = Clock::now();
  if (decoded.duration_s() > options.max_audio_seconds)
    throw Error(Errc::too_long, "the recording lasts " + std::to_string(decoded.duration_s()) +
                                    " s, over the maximum of " +
                                    std::to_string(options.max_audio_seconds) + " s");
  pipeline::check_task_options(options);
  Understanding u = pipeline::new_understanding(completer.model_id(), options);
  u.backend = "remote";
  u.label_scoring = options.task == Task::analyze || options.task == Task::transcribe_and_summarize
                        ? "first_token"
                        : "full_answer";
  u.audio_truncated = decoded.truncated;
  u.stated_duration_s = decoded.stated_seconds;
  std::vector<float> pcm = decoded.sample_rate == audio::kSampleRate ? std::move(decoded.samples)
                                                                     : audio::to_16k(decoded);
  std::vector<float>().swap(decoded.samples);
  RemoteRunner runner(completer, options, u, progress, cancel);
  runner.begin(double(pcm.size()) / audio::kSampleRate);
  // Fed in 10 s blocks, each chunk run as soon as it is planned (the planner holds one chunk and
  // its look-ahead, not the recording).
  audio::ChunkPlanner planner(options.chunking);
  audio::PlannedChunk c;
  constexpr size_t kBlock = 10 * audio::kSampleRate;
  for (size_t at = 0; at < pcm.size(); at += kBlock) {
    planner.push(pcm.data() + at, std::min(kBlock, pcm.size() - at));
    while (planner.next(c)) runner.add_chunk(std::move(c));
  }
  std::vector<float>().swap(pcm);
  planner.finish();
  while (planner.next(c)) runner.add_chunk(std::move(c));
  runner.finish();
  u.total_ms = ms_since(t0);
  return u;
}

}  // namespace stepaudio
