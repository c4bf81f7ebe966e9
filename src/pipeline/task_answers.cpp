// One answer of a task (see task_runner.h): generation with the repetition guard, closed-set label
// scoring in one batched pass, and the summaries (text-only, hierarchical when the transcript does
// not fit the context) with their length and language enforcement.
#include <algorithm>
#include <cmath>
#include <set>

#include "pipeline/guards.h"
#include "pipeline/task_runner.h"
#include "util/log.h"

namespace stepaudio::pipeline {

std::string replace_all(std::string s, const std::string& key, const std::string& value) {
  for (size_t at = s.find(key); at != std::string::npos; at = s.find(key, at + value.size()))
    s.replace(at, key.size(), value);
  return s;
}

std::string language_name(const std::string& code) {
  static const std::pair<const char*, const char*> kNames[] = {
      {"zh", "Chinese"},    {"en", "English"}, {"ja", "Japanese"}, {"ko", "Korean"},
      {"fr", "French"},     {"de", "German"},  {"es", "Spanish"},  {"it", "Italian"},
      {"pt", "Portuguese"}, {"ru", "Russian"}, {"ar", "Arabic"},   {"nl", "Dutch"},
      {"he", "Hebrew"},     {"el", "Greek"},   {"th", "Thai"},     {"hi", "Hindi"}};
  for (auto& [c, n] : kNames)
    if (code == c) return n;
  return "the language of the recording";
}

std::shared_ptr<Pending> Runner::start_generate(DecodeSession& s, size_t max_tokens,
                                                int stream_ordinal) {
  check_cancel();
  auto p = std::make_shared<Pending>(o_.repeat_ngram_max, o_.repeat_count, o_.repeat_single);
  p->prompt_pos = s.pos();
  p->stream = progress_ ? stream_ordinal : -1;
  // Only what guess_language reads: the first chunk's transcript when the language is "auto".
  p->keep_ids = stream_ordinal == 0 && o_.language == "auto" && o_.language_guess_tokens > 0;
  SessionGenerateOptions g;
  g.max_new_tokens = std::min(max_tokens, s.capacity() + 1 - s.pos());
  g.cancel = &abort_;  // this request's branches end together (see ~Runner)
  // The decoder (StreamDecoder) for the streamed text lives with the callback.
  auto stream = std::make_shared<text::StreamDecoder>(tok_, /*skip_special=*/true);
  g.on_token = [this, p, stream](int32_t id, float) {  // on the scheduler's thread
    if (cancel_ && cancel_->load(std::memory_order_relaxed))
      throw Error(Errc::canceled, "request canceled");
    if (p->stop.load(std::memory_order_relaxed)) return false;
    if (p->keep_ids) {  // guess_language waits for the first language_guess_tokens of them
      std::lock_guard<std::mutex> lk(mu_);
      p->ids.push_back(id);
      if (p->ids.size() == o_.language_guess_tokens) cv_.notify_all();
    }
    if (p->rep.push(id)) p->loop = true;
    if (p->stream >= 0 && !p->loop && id < tok_.first_non_text_id() && id != tok_.eos_id()) {
      std::string delta = stream->push(id);
      if (!delta.empty()) stream_text(p->stream, std::move(delta));
    }
    return !p->loop;
  };
  {
    std::lock_guard<std::mutex> lk(mu_);
    ++active_;
  }
  auto done = [this, p](GenerateResult r, std::exception_ptr e) {
    // The last touch of this Runner: once active_ drops, the request thread may return and
    // destroy it, so the stream is flushed first and the waiter is notified under the lock.
    try {
      if (p->stream >= 0) stream_end(p->stream);
    } catch (...) {  // a progress callback's failure must not leave the answer pending
    }
    std::lock_guard<std::mutex> lk(mu_);
    p->result = std::move(r);
    p->error = e;
    p->ended = Clock::now();
    p->done = true;
    --active_;
    cv_.notify_all();
  };
  sched_->generate(s, g, std::move(done), /*owner=*/this);  // see task_chunk.cpp's encode
  if (!o_.batch_branches) wait_for([&] { return p->done; });
  return p;
}

void Runner::wait_for(const std::function<bool()>& ready) {
  if (sched_->threaded()) {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, ready);
    return;
  }
  for (;;) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (ready()) return;
    }
    if (!sched_->drive()) {
      std::lock_guard<std::mutex> lk(mu_);
      if (ready()) return;
      throw Error(Errc::internal, "waiting for an answer that is not generating");
    }
  }
}

Runner::Generated Runner::collect(Pending& p) {
  wait_for([&] { return p.done; });
  if (p.error) std::rethrow_exception(p.error);
  const GenerateResult& r = p.result;
  u_.prompt_tokens_unshared += p.prompt_pos;  // a separate run would prefill this whole prompt
  gen_spans_.push_back({p.started, p.ended});
  u_.completion_tokens += r.tokens.size();
  Generated out;
  out.repetition = p.loop;
  size_t keep = p.loop ? p.rep.keep() : r.tokens.size();
  for (size_t i = 0; i < keep; ++i) {
    const int32_t id = r.tokens[i];
    if (id < tok_.first_non_text_id() && id != tok_.eos_id()) {
      out.text_ids.push_back(id);
      out.sum_logprob += r.logprobs[i];
    }
  }
  out.text = tok_.decode(out.text_ids, /*skip_special=*/true);
  if (p.loop) u_.repetition_detected = true;
  return out;
}

double Runner::generate_wall_ms() const {
  std::vector<std::pair<Clock::time_point, Clock::time_point>> v = gen_spans_;
  std::sort(v.begin(), v.end());
  double ms = 0;
  Clock::time_point end{};
  for (const auto& [a, b] : v) {
    const Clock::time_point from = std::max(a, end);
    if (b > from) ms += std::chrono::duration<double, std::milli>(b - from).count();
    end = std::max(end, b);
  }
  return ms;
}

// Transcript text streams in chunk order: while an earlier chunk's transcript is still decoding,
// a later one's text is held and sent when its turn comes.
void Runner::stream_text(int ordinal, std::string delta) {
  std::lock_guard<std::mutex> lk(progress_mu_);
  if (ordinal != stream_next_) {
    stream_held_[ordinal] += delta;
    return;
  }
  progress_({"transcribe", last_pct_, std::move(delta)});
}

void Runner::stream_end(int ordinal) {
  std::lock_guard<std::mutex> lk(progress_mu_);
  stream_ended_[ordinal] = true;
  while (stream_ended_.count(stream_next_)) {
    stream_ended_.erase(stream_next_);
    ++stream_next_;
    auto it = stream_held_.find(stream_next_);
    if (it != stream_held_.end()) {
      if (!it->second.empty()) progress_({"transcribe", last_pct_, std::move(it->second)});
      stream_held_.erase(it);
    }
  }
}

std::vector<LabelScores> Runner::score_labels(const std::vector<LabelAsk>& asks,
                                              const std::vector<int32_t>& prefix,
                                              Priority priority) {
  std::vector<std::vector<std::vector<int32_t>>> cands(asks.size());
  std::vector<ScoreRequest> requests;
  for (size_t k = 0; k < asks.size(); ++k) {
    const LabelAsk& ask = asks[k];
    for (const std::string& l : ask.question->labels) {
      std::vector<int32_t> ids = tok_.encode(ask.question->text.at(l));
      ids.push_back(tok_.eos_id());  // a complete answer, not a prefix of a longer one
      cands[k].push_back(std::move(ids));
    }
    // Decoder rows of the batched pass: the distinct proper prefixes (the trie's inner nodes).
    std::set<std::vector<int32_t>> inner;
    for (const auto& c : cands[k]) {
      for (size_t i = 1; i < c.size(); ++i) inner.emplace(c.begin(), c.begin() + i);
      u_.prompt_tokens_unshared += ask.branch->pos() + c.size() - 1;  // one run per label
    }
    u_.prompt_tokens += inner.size();
    requests.push_back({ask.branch, &cands[k]});
  }
  const auto t0 = Clock::now();
  const std::vector<std::vector<ContinuationScore>> sc = sched_->score(requests, priority);
  const double score_ms = ms_since(t0);
  u_.prefill_ms += score_ms;
  u_.score_ms += score_ms;
  std::vector<LabelScores> out(asks.size());
  for (size_t k = 0; k < asks.size(); ++k) {
    const LabelQuestion& q = *asks[k].question;
    std::vector<double> lp;
    for (const auto& c : sc[k]) lp.push_back(c.logprob);
    std::vector<double> p = normalize_logprobs(lp);
    for (size_t i = 0; i < q.labels.size(); ++i) out[k].scores[q.labels[i]] = p[i];
    out[k].label = q.labels[std::max_element(p.begin(), p.end()) - p.begin()];
    if (o_.dump_dir.empty()) continue;
    std::vector<int32_t> prompt = prefix;
    prompt.insert(prompt.end(), asks[k].suffix.begin(), asks[k].suffix.end());
    dump_scores_.push_back({{"name", asks[k].name},
                            {"chunk", chunk_index_},
                            {"labels", q.labels},
                            {"prompt_ids", prompt},
                            {"candidates", cands[k]},
                            {"logprobs", lp},
                            {"probs", p}});
  }
  return out;
}

std::vector<int32_t> Runner::text_summary_prompt(const std::string& transcript,
                                                 const std::string& lang) const {
  return render(
      {text::Message::text("system", p_.summarize_text_system, false),
       text::Message::text("human", summary_text_question(p_, o_.target_length, lang, transcript),
                           false)},
      true);
}

void Runner::grow_text_summary(const std::string& segment_text) {
  EarlySummary& es = early_;
  if (!o_.early_text_summary || !wants_summary() || es.failed) return;
  // Queued up to its cap (below): later text cannot add to it, so it is not kept or tokenized
  // again (a long recording's transcript would be, whole, after every chunk).
  if (es.ids.size() >= ctx_ / 4) return;
  append_transcript_text(es.transcript, segment_text);
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (es.busy) return;  // this text goes with the next piece
    if (es.error) es.failed = true;
  }
  const std::string lang = o_.language != "auto" ? o_.language : detect_language(es.transcript);
  std::vector<int32_t> ids = text_summary_prompt(es.transcript, lang);
  es.failed = es.failed || ids.size() < es.ids.size() + kEarlyHold ||
              !std::equal(es.ids.begin(), es.ids.end(), ids.begin());
  if (es.failed) {  // (a language guessed from the first chunks that proved wrong, say)
    SA_DEBUG("tasks: the early text summary stops after %zu ids", es.ids.size());
    es.session.reset();
    return;
  }
  // At most a quarter of the context: a transcript too long for one prompt is summarized in
  // pieces of up to half the context in tokens counted word by word (summarize_text), which
  // counts each word's trailing space as a token of its own: a first piece holds at least a
  // quarter's worth of text, so it then continues this prompt.
  const size_t upto = std::min(ids.size() - kEarlyHold, ctx_ / 4);
  if (upto <= es.ids.size()) return;
  // Positions are only reserved: the cache's pages are touched as rows fill them.
  if (!es.session) es.session.emplace(e_.model, ctx_, o_.threads);
  const size_t from = es.ids.size();
  es.ids.assign(ids.begin(), ids.begin() + upto);
  {
    std::lock_guard<std::mutex> lk(mu_);
    es.busy = true;
    ++active_;
  }
  try {
    sched_->append_async(*es.session, std::span(es.ids).subspan(from), Priority::background,
                         [this](std::exception_ptr e) {  // the last touch of this Runner (see done)
                           std::lock_guard<std::mutex> lk(mu_);
                           early_.error = e;
                           early_.busy = false;
                           --active_;
                           cv_.notify_all();
                         });
  } catch (...) {  // refused before anything was queued: summarize_text starts afresh
    std::lock_guard<std::mutex> lk(mu_);
    es.busy = false;
    --active_;
    es.failed = true;
    return;
  }
  u_.prompt_tokens += es.ids.size() - from;
}

std::optional<DecodeSession> Runner::take_early_summary(const std::vector<int32_t>& ids) {
  EarlySummary& es = early_;
  if (!es.session) return std::nullopt;
  sched_->expedite(*es.session);  // the summary waits for these rows now
  wait_for([&] { return !es.busy; });
  std::optional<DecodeSession> s;
  s.swap(es.session);  // taken once, whichever prompt asks first
  if (!es.failed && !es.error && ids.size() > es.ids.size() &&
      std::equal(es.ids.begin(), es.ids.end(), ids.begin())) {
    SA_DEBUG("tasks: the text summary continues its %zu early ids", es.ids.size());
    return s;
  }
  SA_DEBUG("tasks: the text summary starts afresh (%zu early ids do not lead its prompt)",
           es.ids.size());
  return std::nullopt;
}

// Text-only summary: one pass when the transcript fits the context, else summaries of pieces that
// fit, joined and summarized again (each level shrinks the text to ~target_length per piece).
std::string Runner::summarize_text(const std::string& transcript, int depth) {
  const size_t cap = summary_token_cap(o_.target_length, summary_lang_);
  const size_t ctx = o_.max_context ? o_.max_context : model_info(*e_.model).max_positions;
  std::vector<int32_t> ids = text_summary_prompt(transcript, summary_lang_);
  if (ids.size() + cap <= ctx || depth >= 6) {
    if (ids.size() + cap > ctx) {  // give up on hierarchy: keep the head that fits
      ids.resize(ctx > cap + 8 ? ctx - cap - 8 : 0);
      std::vector<int32_t> tail = render({}, true);
      ids.insert(ids.end(), tail.begin(), tail.end());
    }
    // The whole transcript's prompt, or that of its first piece, continues the early one.
    if (std::optional<DecodeSession> early = take_early_summary(ids)) {
      append(*early, std::span(ids).subspan(early->pos()));
      return generate(*early, cap).text;
    }
    DecodeSession s(e_.model, ids.size() + cap, o_.threads);
    append(s, ids);
    return generate(s, cap).text;
  }
  u_.hierarchical_summary = true;
  // Split on whitespace-separated pieces sized to half the context (in tokens, measured).
  const size_t budget = ctx / 2;
  std::vector<std::string> pieces(1);
  size_t piece_tokens = 0;
  std::vector<std::string> words;
  for (size_t i = 0; i < transcript.size();) {  // split after spaces and CJK sentence ends
    size_t j = transcript.find_first_of(" \n", i);
    j = j == std::string::npos ? transcript.size() : j + 1;
    words.push_back(transcript.substr(i, j - i));
    i = j;
  }
  for (const std::string& w : words) {
    size_t n = tok_.encode(w).size();
    if (piece_tokens + n > budget && !pieces.back().empty())
      pieces.emplace_back(), piece_tokens = 0;
    pieces.back() += w;
    piece_tokens += n;
  }
  std::string joined;
  for (const std::string& piece : pieces) {
    check_cancel();
    if (!joined.empty()) joined += ' ';
    joined += summarize_text(piece, depth + 1);
  }
  return summarize_text(joined, depth + 1);
}

}  // namespace stepaudio::pipeline
