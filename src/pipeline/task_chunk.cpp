// Runner::start_chunk / collect_chunk: every answer of one speech chunk (see tasks.cpp for the
// plan and task_runner.h for the Runner). start_chunk encodes the chunk, prefills system + audio
// once, scores emotion and urgency on forks of it and starts the generated answers (transcript,
// tone, urgency reason) in the scheduler's batch; collect_chunk waits for them and writes them
// into the result. Between the two, the next chunk is prepared while these branches decode.
// In a recording of several chunks, tone and reason are asked of the chosen chunks only, once
// every chunk is scored (hold_answers, start_deferred).
#include <cmath>
#include <filesystem>

#include "pipeline/prompt_cache.h"
#include "pipeline/task_runner.h"
#include "stepaudio/npy.h"
#include "util/log.h"

namespace stepaudio::pipeline {

std::vector<AudioEmbedding> Runner::encode_chunk(const ChunkInfo& c) {
  auto t0 = Clock::now();
  audio::LogMel mel = audio::log_mel(c.pcm.data(), c.pcm.size());
  if (!o_.dump_dir.empty()) {
    make_dump_dir(o_.dump_dir);
    write_npy(
        (std::filesystem::path(o_.dump_dir) / ("mel_" + std::to_string(c.index) + ".npy")).string(),
        mel.data.data(), {size_t(audio::kNumMels), size_t(mel.frames)});
  }
  std::vector<MelChunk> mels;
  mels.push_back({std::move(mel.data), size_t(audio::kNumMels), size_t(mel.frames)});
  u_.mel_ms += ms_since(t0);
  t0 = Clock::now();
  std::vector<AudioEmbedding> rows;
  // Each encoder block is a pause point: other requests' branches keep decoding meanwhile. This
  // request's own (earlier chunks' transcripts) wait for its next prompt passes, where their rows
  // cost their arithmetic only, not a decode-only pass's whole weight read per few rows.
  sched_->run_yielding(
      [&](const std::function<void()>& yield) {
        rows = encode_audio(*e_.model, mels, o_.threads, {}, cancel_, yield);
      },
      this);
  u_.encode_ms += ms_since(t0);
  return rows;
}

size_t Runner::start_prefix(std::optional<DecodeSession>& s, const std::vector<int32_t>& ids) {
  const std::span<const int32_t> head = prompt_head(ids, model_info(*e_.model).audio_patch_id);
  if (!e_.prompt_cache || head.empty()) {
    s.emplace(e_.model, ids.size(), o_.threads);
    return 0;
  }
  if ((s = e_.prompt_cache->fork(head, ids.size(), o_.threads))) {
    u_.prompt_tokens += head.size();  // the prompt holds them; none was computed
    u_.cached_prompt_tokens += head.size();
    return head.size();
  }
  DecodeSession computed(e_.model, head.size(), o_.threads);
  append(computed, head);
  e_.prompt_cache->put(head, computed);
  s.emplace(computed.fork(ids.size()));
  return head.size();
}

void Runner::start_chunk(ChunkInfo c, bool last) {
  check_cancel();
  if (n_speech_ == 1) summary_src_.reset();  // more than one chunk: the summary reads the text
  // In flight from the start: once a branch generates on one of its sessions, an error or a
  // cancel that unwinds this function must not free them under it (~Runner ends the branches,
  // then frees inflight_).
  inflight_.push_back(std::make_unique<ChunkWork>());
  ChunkWork& w = *inflight_.back();
  const bool share = o_.share_prefix;
  // Shared: encoded once here. Unshared (benchmark): every branch encodes it again itself.
  std::vector<AudioEmbedding> audio;
  if (share) {
    audio = encode_chunk(c);
    u_.audio_tokens += audio.empty() ? 0 : audio[0].n_rows;
  } else {
    u_.audio_tokens += c.patches;
  }
  report("mel");
  done_work_ += 1;
  report("encode");
  w.prefix_ids = chunk_prefix_ids(tok_, p_.system, c.patches);
  const std::vector<int32_t>& prefix = w.prefix_ids;
  if (share) {
    const size_t held = start_prefix(w.prefix, prefix);
    append(*w.prefix, std::span<const int32_t>(prefix).subspan(held), audio);
    audio.clear();
  }
  // A branch continuing system + audio with room for `extra` more positions: a fork of the
  // prefix, or (unshared) the whole prefix encoded and prefilled again from scratch.
  auto branch = [&](size_t extra) {
    if (share) return w.prefix->fork(w.prefix->pos() + extra);
    DecodeSession s(e_.model, prefix.size() + extra, o_.threads);
    append(s, prefix, encode_chunk(c));
    return s;
  };

  // The questions whose answers something waits for get their suffixes in one scheduler
  // request, so they share passes (and ride with the decoding branches) instead of one pass
  // each; then the answers start.
  std::vector<std::vector<int32_t>> suffixes;
  suffixes.reserve(5);  // at most five questions: the references below stay valid
  std::vector<AppendRequest> asks;
  // A fork for `question` with room for `extra` more positions; its suffix.
  auto fork_for = [&](std::optional<DecodeSession>& session, const std::string& question,
                      size_t extra) -> const std::vector<int32_t>& {
    suffixes.push_back(question_suffix(question));
    session.emplace(branch(suffixes.back().size() + extra));
    return suffixes.back();
  };
  auto ask = [&](std::optional<DecodeSession>& session, const std::string& question,
                 size_t extra) -> const std::vector<int32_t>& {
    const std::vector<int32_t>& suffix = fork_for(session, question, extra);
    asks.push_back({&*session, suffix, nullptr});
    return suffix;
  };
  // Room for scoring a label set: one position per candidate token.
  auto label_room = [&](const LabelQuestion& q) {
    size_t n = 0;
    for (const auto& l : q.labels) n += tok_.encode(q.text.at(l)).size() + 1;
    return n;
  };
  std::optional<DecodeSession> emotion;
  const std::vector<int32_t>*emotion_q = nullptr, *urgency_q = nullptr;
  const std::string& reason_q = p_.urgency_reason_question;
  // The only speech chunk of the recording asks tone and reason now; others hold their
  // candidates (an unshared run, the benchmark's "separate", asks every chunk: no prefix to hold).
  const bool defer = share && !(last && n_speech_ == 0);
  // The urgency branch goes on to the reason, with the chosen answer in place: the longest chain
  // (question, labels, reason turn, then its tokens), so it is asked first.
  if (wants_analysis())
    urgency_q =
        &ask(w.reason, p_.urgency.question,
             label_room(p_.urgency) + tok_.encode(reason_q).size() + 32 + o_.max_reason_tokens);
  if (wants_transcript()) ask(w.transcript, p_.transcribe_question, o_.max_transcript_tokens);
  // A held chunk needs both scores at once (hold_answers); otherwise emotion is asked below.
  if (wants_analysis() && defer)
    emotion_q = &ask(emotion, p_.emotion.question, label_room(p_.emotion));
  // A recording of one speech chunk in a given language: its audio summary (a fork of this
  // prefix) is asked with the other questions. Otherwise finish() asks it once the language or
  // the recording's end is known (summary_src_ below).
  const bool summary_now = last && n_speech_ == 0 && wants_summary() && o_.language != "auto";
  const size_t summary_cap = summary_token_cap(o_.target_length, o_.language);
  if (summary_now) {
    summary_lang_ = o_.language;
    ask(summary_session_, summary_question(p_, o_.target_length, summary_lang_), summary_cap);
  }
  append(asks);
  if (wants_transcript())
    w.transcript_out =
        start_generate(*w.transcript, o_.max_transcript_tokens, static_cast<int>(n_speech_));
  if (summary_now) summary_out_ = start_generate(*summary_session_, summary_cap);
  if (wants_analysis()) {
    check_cancel();
    chunk_index_ = c.index;
    ChunkAnalysis& a = w.analysis;
    a.weight = double(c.range.end - c.range.begin);
    if (defer) {  // emotion and urgency: the labels after each question, both trees in one pass
      std::vector<LabelScores> scores =
          score_labels({{&*emotion, &p_.emotion, "emotion", *emotion_q},
                        {&*w.reason, &p_.urgency, "urgency", *urgency_q}},
                       prefix);
      a.emotion = std::move(scores[0]);
      a.urgency = std::move(scores[1]);
      hold_answers(w, n_speech_);
      if (last) start_deferred();
    } else {
      a.urgency =
          std::move(score_labels({{&*w.reason, &p_.urgency, "urgency", *urgency_q}}, prefix)[0]);
      append(*w.reason, reason_turn(a.urgency.label));
      w.reason_out = start_generate(*w.reason, o_.max_reason_tokens);
      // Nothing waits for tone (a short answer) and emotion (no tokens) before the other answers'
      // last tokens: their rows fill the room of the decode passes (Priority::background).
      const std::vector<int32_t>& tone_q = fork_for(w.tone, p_.tone_question, o_.max_tone_tokens);
      append(*w.tone, tone_q, {}, Priority::background);
      w.tone_out = start_generate(*w.tone, o_.max_tone_tokens);
      emotion_q = &fork_for(emotion, p_.emotion.question, label_room(p_.emotion));
      append(*emotion, *emotion_q, {}, Priority::background);
      a.emotion = std::move(score_labels({{&*emotion, &p_.emotion, "emotion", *emotion_q}}, prefix,
                                         Priority::background)[0]);
    }
    emotion.reset();
    done_work_ += 2;
    report("analyze");
  }
  // The first chunk's prefix stays while an audio summary may still fork it, until it is known
  // whether the recording has more speech (finish() or the next chunk).
  if (wants_summary() && n_speech_ == 0 && !summary_now) {
    summary_src_ = std::make_unique<ChunkWork>();
    summary_src_->prefix = std::move(w.prefix);
    summary_src_->prefix_ids = w.prefix_ids;
    summary_src_->info = c;  // unshared: with its PCM, to be encoded again for the summary
  }
  w.prefix.reset();
  c.pcm = {};
  w.info = std::move(c);
  ++n_speech_;
  ++u_.groups;
}

void Runner::collect_chunk(ChunkWork& w, const std::function<void()>& after_transcript) {
  const ChunkInfo& c = w.info;
  if (w.transcript_out) {
    Generated t = collect(*w.transcript_out);
    Segment seg;
    seg.start = c.range.start_s();
    seg.end = c.range.end_s();
    seg.text = t.text;
    seg.repetition_stopped = t.repetition;
    seg.tokens = t.text_ids.size();
    seg.sum_logprob = t.sum_logprob;
    seg.confidence = seg.tokens ? std::exp(seg.sum_logprob / double(seg.tokens)) : 0.0;
    u_.segments.push_back(seg);
    w.transcript.reset();
    if (n_speech_ > 1) grow_text_summary(seg.text);  // one chunk: summarized with its audio
  }
  done_work_ += 1;
  report("transcribe");
  if (after_transcript) after_transcript();
  if (wants_analysis()) {
    if (w.reason_out) w.analysis.reason = collect(*w.reason_out).text;  // else held or deferred
    done_work_ += 1;
    if (w.tone_out) w.analysis.tone = collect(*w.tone_out).text;
    done_work_ += 1;
    report("analyze");
    w.reason.reset();
    w.tone.reset();
    analyses_.push_back(std::move(w.analysis));
  }
}

// The urgency branch's next turn: the chosen answer, closed, then the reason question.
std::vector<int32_t> Runner::reason_turn(const std::string& urgency) const {
  std::vector<int32_t> ids = tok_.encode(p_.urgency.text.at(urgency));
  ids.push_back(tok_.eos_id());
  const std::vector<int32_t> q =
      question_suffix(replace_all(p_.urgency_reason_question, "{urgency}", urgency));
  ids.insert(ids.end(), q.begin(), q.end());
  return ids;
}

// The summary with the audio present, for a recording of one speech chunk: a fork of its prefix
// (unshared: the chunk encoded and prefilled again), started in the batch; finish() collects it
// and lets the prefix go.
void Runner::start_audio_summary(ChunkWork& w) {
  const size_t cap = summary_token_cap(o_.target_length, summary_lang_);
  const std::string q = summary_question(p_, o_.target_length, summary_lang_);
  const std::vector<int32_t> suffix = question_suffix(q);
  std::optional<DecodeSession>& s = summary_session_;
  if (o_.share_prefix) {
    s.emplace(w.prefix->fork(w.prefix->pos() + suffix.size() + cap));
  } else {
    s.emplace(e_.model, w.prefix_ids.size() + suffix.size() + cap, o_.threads);
    append(*s, w.prefix_ids, encode_chunk(w.info));
  }
  append(*s, suffix);
  summary_out_ = start_generate(*s, cap);
}

std::string Runner::guess_language(Pending& t) {
  wait_for([&] { return t.done || t.ids.size() >= o_.language_guess_tokens; });
  std::vector<int32_t> text;
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (int32_t id : t.ids)
      if (id < tok_.first_non_text_id() && id != tok_.eos_id()) text.push_back(id);
  }
  return detect_language(tok_.decode(text, /*skip_special=*/true));
}

void Runner::drop_summary() {
  summary_out_->stop = true;
  wait_for([&] { return summary_out_->done; });
  summary_out_.reset();  // its question's rows stay counted: they were computed
  summary_session_.reset();
}

// A scored chunk of a recording of several: its scores are kept, and its urgency branch and a
// copy of its prefix while it is the best candidate for the reason or for some label's tone.
// Strictly better replaces the held one, as assemble_results' scans keep the earliest on ties.
void Runner::hold_answers(ChunkWork& w, size_t ordinal) {
  const ChunkAnalysis& a = w.analysis;
  scored_.push_back({a.emotion, a.urgency, {}, {}, a.weight});
  const double level = urgency_level(a.urgency);
  if (!reason_hold_ || level > reason_hold_->score)
    reason_hold_ = Held{ordinal, level, a.urgency.label,
                        std::make_shared<DecodeSession>(std::move(*w.reason))};
  w.reason.reset();
  std::shared_ptr<DecodeSession> prefix;  // one copy, whatever the number of labels it leads
  for (const auto& [label, p] : a.emotion.scores) {
    auto it = tone_hold_.find(label);
    if (it != tone_hold_.end() && !(p > it->second.score)) continue;
    if (!prefix) prefix = std::make_shared<DecodeSession>(w.prefix->fork());
    tone_hold_[label] = Held{ordinal, p, {}, prefix};
  }
}

// Every chunk is scored: the reason continues the most urgent chunk's branch and the tone is
// asked of the chunk where the recording's emotion is most probable, both in the batch.
void Runner::start_deferred() {
  if (scored_.empty() || deferred_reason_) return;  // nothing held, or started already
  const size_t urgent = most_urgent_chunk(scored_);
  const std::string emotion = combined_emotion(scored_).label;
  const size_t strongest = strongest_chunk(scored_, emotion);
  auto held_tone = tone_hold_.find(emotion);
  if (!reason_hold_ || reason_hold_->ordinal != urgent || held_tone == tone_hold_.end() ||
      held_tone->second.ordinal != strongest)
    throw Error(Errc::internal, "the held tone and reason are not the chosen chunks'");
  const std::vector<int32_t> tone_q = question_suffix(p_.tone_question);
  const DecodeSession& prefix = *held_tone->second.session;
  deferred_tone_.emplace(prefix.fork(prefix.pos() + tone_q.size() + o_.max_tone_tokens));
  deferred_reason_ = std::move(reason_hold_->session);
  const std::vector<int32_t> cont = reason_turn(reason_hold_->label);
  deferred_reason_at_ = urgent;
  deferred_tone_at_ = strongest;
  SA_DEBUG("tasks: the reason of speech chunk %zu and the tone of chunk %zu (%s), of %zu", urgent,
           strongest, emotion.c_str(), scored_.size());
  reason_hold_.reset();
  tone_hold_.clear();  // the other chunks' prefixes go
  const AppendRequest asks[] = {{deferred_reason_.get(), cont, nullptr},
                                {&*deferred_tone_, tone_q, nullptr}};
  append(asks);
  deferred_reason_out_ = start_generate(*deferred_reason_, o_.max_reason_tokens);
  deferred_tone_out_ = start_generate(*deferred_tone_, o_.max_tone_tokens);
}

// The deferred answers into the result, after assemble_results chose the same chunks from the
// collected analyses (checked: the two must agree).
void Runner::collect_deferred() {
  if (!deferred_reason_out_) return;
  if (most_urgent_chunk(analyses_) != deferred_reason_at_ ||
      strongest_chunk(analyses_, u_.emotion.label) != deferred_tone_at_)
    throw Error(Errc::internal, "the deferred tone and reason are not the chosen chunks'");
  u_.urgency_reason = collect(*deferred_reason_out_).text;
  u_.tone = collect(*deferred_tone_out_).text;
  deferred_reason_out_.reset();
  deferred_tone_out_.reset();
  deferred_reason_.reset();
  deferred_tone_.reset();
}

}  // namespace stepaudio::pipeline
