// Runner::start_chunk / collect_chunk: every answer of one speech chunk (see tasks.cpp for the
// plan and task_runner.h for the Runner). start_chunk encodes the chunk, prefills system + audio
// once, scores emotion and urgency on forks of it and starts the generated answers (transcript,
// tone, urgency reason) in the scheduler's batch; collect_chunk waits for them and writes them
// into the result. Between the two, the next chunk is prepared while these branches decode.
#include <cmath>
#include <filesystem>

#include "pipeline/task_runner.h"
#include "stepaudio/npy.h"

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
  // Each encoder block is a pause point: other branches in the batch keep decoding meanwhile.
  sched_->run_yielding([&](const std::function<void()>& yield) {
    rows = encode_audio(*e_.model, mels, o_.threads, {}, cancel_, yield);
  });
  u_.encode_ms += ms_since(t0);
  return rows;
}

void Runner::start_chunk(ChunkInfo c, bool last) {
  check_cancel();
  if (n_speech_ == 1) summary_src_.reset();  // more than one chunk: the summary reads the text
  auto work = std::make_unique<ChunkWork>();
  ChunkWork& w = *work;
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
  w.prefix_ids = render({text::Message::text("system", p_.system),
                         text::Message::list("human", {text::Part::audio(c.patches)})},
                        false);
  const std::vector<int32_t>& prefix = w.prefix_ids;
  if (share) {
    w.prefix.emplace(e_.model, prefix.size(), o_.threads);
    append(*w.prefix, prefix, audio);
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

  // Every question's fork gets its suffix in one scheduler request, so they share passes (and
  // ride with the decoding branches) instead of one pass each; then the answers start.
  std::vector<std::vector<int32_t>> suffixes;
  suffixes.reserve(5);  // at most five questions: the references below stay valid
  std::vector<AppendRequest> asks;
  auto ask = [&](std::optional<DecodeSession>& session, const std::string& question,
                 size_t extra) -> const std::vector<int32_t>& {
    suffixes.push_back(question_suffix(question));
    session.emplace(branch(suffixes.back().size() + extra));
    asks.push_back({&*session, suffixes.back(), nullptr});
    return suffixes.back();
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
  if (wants_transcript()) ask(w.transcript, p_.transcribe_question, o_.max_transcript_tokens);
  if (wants_analysis()) {
    check_cancel();
    emotion_q = &ask(emotion, p_.emotion.question, label_room(p_.emotion));
    // The urgency branch goes on to the reason, with the chosen answer in place.
    urgency_q =
        &ask(w.reason, p_.urgency.question,
             label_room(p_.urgency) + tok_.encode(reason_q).size() + 32 + o_.max_reason_tokens);
    ask(w.tone, p_.tone_question, o_.max_tone_tokens);
  }
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
    w.tone_out = start_generate(*w.tone, o_.max_tone_tokens);
    chunk_index_ = c.index;
    ChunkAnalysis& a = w.analysis;
    a.weight = double(c.range.end - c.range.begin);
    // Emotion and urgency: the labels after each question, both trees in one pass.
    std::vector<LabelScores> scores =
        score_labels({{&*emotion, &p_.emotion, "emotion", *emotion_q},
                      {&*w.reason, &p_.urgency, "urgency", *urgency_q}},
                     prefix);
    a.emotion = std::move(scores[0]);
    a.urgency = std::move(scores[1]);
    emotion.reset();
    done_work_ += 2;
    report("analyze");
    std::vector<int32_t> cont = tok_.encode(p_.urgency.text.at(a.urgency.label));
    cont.push_back(tok_.eos_id());
    const std::vector<int32_t> q =
        question_suffix(replace_all(reason_q, "{urgency}", a.urgency.label));
    cont.insert(cont.end(), q.begin(), q.end());
    append(*w.reason, cont);
    w.reason_out = start_generate(*w.reason, o_.max_reason_tokens);
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
  inflight_.push_back(std::move(work));
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
  }
  done_work_ += 1;
  report("transcribe");
  if (after_transcript) after_transcript();
  if (wants_analysis()) {
    w.analysis.reason = collect(*w.reason_out).text;
    done_work_ += 1;
    w.analysis.tone = collect(*w.tone_out).text;
    done_work_ += 1;
    report("analyze");
    w.reason.reset();
    w.tone.reset();
    analyses_.push_back(std::move(w.analysis));
  }
}

// The summary with the audio present, for a recording of one speech chunk: a fork of its prefix
// (unshared: the chunk encoded and prefilled again), started in the batch; finish() collects it.
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
  summary_src_.reset();
  append(*s, suffix);
  summary_out_ = start_generate(*s, cap);
}

}  // namespace stepaudio::pipeline
