// Runner::process_group(): every answer of one group of speech chunks (see tasks.cpp for the plan
// and task_runner.h for the Runner). The group's PCM, mels, audio rows and KV caches live only
// while it runs.
#include <cmath>
#include <filesystem>
#include <optional>

#include "pipeline/guards.h"
#include "pipeline/task_runner.h"
#include "stepaudio/npy.h"

namespace stepaudio::pipeline {

void Runner::process_group(bool only_group) {
  const Model& model = *e_.model;
  const std::vector<ChunkInfo>& g = group_;
  std::vector<size_t> all(g.size());
  for (size_t k = 0; k < g.size(); ++k) all[k] = k;
  check_cancel();
  // Mel + encode of some of this group's chunks (the rows are freed with the group).
  auto encode_chunks = [&](const std::vector<size_t>& which) {
    std::vector<MelChunk> mels;
    auto t0 = Clock::now();
    for (size_t k : which) {
      const ChunkInfo& c = g[k];
      const size_t ci = c.index;
      audio::LogMel mel = audio::log_mel(c.pcm.data(), c.pcm.size());
      if (!o_.dump_dir.empty()) {
        std::filesystem::create_directories(o_.dump_dir);
        write_npy(
            (std::filesystem::path(o_.dump_dir) / ("mel_" + std::to_string(ci) + ".npy")).string(),
            mel.data.data(), {size_t(audio::kNumMels), size_t(mel.frames)});
      }
      mels.push_back({std::move(mel.data), size_t(audio::kNumMels), size_t(mel.frames)});
    }
    u_.mel_ms += ms_since(t0);
    report("mel");
    t0 = Clock::now();
    std::vector<AudioEmbedding> rows = encode_audio(model, mels, o_.threads, {}, cancel_);
    u_.encode_ms += ms_since(t0);
    return rows;
  };
  const bool share = o_.share_prefix;
  // Shared: encoded once here. Unshared (benchmark): every branch encodes what it needs itself.
  std::vector<AudioEmbedding> audio;
  if (share) {
    audio = encode_chunks(all);
    for (const auto& a : audio) u_.audio_tokens += a.n_rows;
  } else {
    for (const ChunkInfo& c : g) u_.audio_tokens += c.patches;
  }
  done_work_ += g.size();
  report("encode");

  std::vector<text::Part> parts;
  for (const ChunkInfo& c : g) parts.push_back(text::Part::audio(c.patches));
  const std::vector<int32_t> prefix = render(
      {text::Message::text("system", p_.system), text::Message::list("human", parts)}, false);
  // The shared system + audio prefix, prefilled only when a branch will use it (a multi-chunk
  // group that is only transcribed, or summarized from the text, never needs it).
  const bool single = g.size() == 1;
  std::optional<DecodeSession> shared_state;
  const bool audio_summary = wants_summary() && only_group;  // else text-only, later
  if (share && (wants_analysis() || audio_summary || (single && wants_transcript()))) {
    shared_state.emplace(e_.model, prefix.size(), o_.threads);
    append(*shared_state, prefix, audio);
  }
  // A branch continuing system + audio with room for `extra` more positions: a fork of the
  // shared prefix, or (unshared) the whole prefix encoded and prefilled again from scratch.
  auto branch = [&](size_t extra) {
    if (share) return shared_state->fork(shared_state->pos() + extra);
    DecodeSession s(e_.model, prefix.size() + extra, o_.threads);
    append(s, prefix, encode_chunks(all));
    return s;
  };

  // Transcription: per chunk (segments keep the chunk times).
  if (wants_transcript()) {
    const std::vector<int32_t> suffix = question_suffix(p_.transcribe_question);
    for (size_t k = 0; k < g.size(); ++k) {
      const ChunkInfo& c = g[k];
      const size_t cap_tokens = o_.max_transcript_tokens;
      DecodeSession branch_state = [&] {
        if (single) return branch(suffix.size() + cap_tokens);
        const std::vector<int32_t> one =
            render({text::Message::text("system", p_.system),
                    text::Message::list("human", {text::Part::audio(c.patches)})},
                   false);
        DecodeSession s(e_.model, one.size() + suffix.size() + cap_tokens, o_.threads);
        append(s, one, share ? std::vector<AudioEmbedding>{audio[k]} : encode_chunks({k}));
        return s;
      }();
      append(branch_state, suffix);
      Generated t = generate(branch_state, cap_tokens, /*stream_text=*/true);
      Segment seg;
      seg.start = c.range.start_s();
      seg.end = c.range.end_s();
      seg.text = t.text;
      seg.repetition_stopped = t.repetition;
      seg.tokens = t.text_ids.size();
      seg.sum_logprob = t.sum_logprob;
      seg.confidence = seg.tokens ? std::exp(seg.sum_logprob / double(seg.tokens)) : 0.0;
      u_.segments.push_back(seg);
      done_work_ += 1;
      report("transcribe");
    }
  } else {
    done_work_ += g.size();
  }
  audio.clear();
  audio.shrink_to_fit();

  if (wants_analysis()) {
    check_cancel();
    GroupAnalysis a;
    for (const ChunkInfo& c : g) a.weight += double(c.range.end - c.range.begin);
    // Emotion and urgency: the question after the audio, labels scored in one batched pass.
    std::vector<int32_t> scored_prompt;  // prefix + question, for the dump
    auto label_branch = [&](const LabelQuestion& q, size_t extra) {
      const std::vector<int32_t> suffix = question_suffix(q.question);
      scored_prompt = prefix;
      scored_prompt.insert(scored_prompt.end(), suffix.begin(), suffix.end());
      size_t label_tokens = 0;
      for (const auto& l : q.labels) label_tokens += tok_.encode(q.text.at(l)).size() + 1;
      DecodeSession b = branch(suffix.size() + label_tokens + extra);
      append(b, suffix);
      return b;
    };
    {
      DecodeSession b = label_branch(p_.emotion, 0);
      a.emotion = score_labels(b, p_.emotion, "emotion", scored_prompt);
    }
    done_work_ += 1;
    report("analyze");
    {
      std::string reason_q = p_.urgency_reason_question;
      const size_t reason_room = tok_.encode(reason_q).size() + 32 + o_.max_reason_tokens;
      DecodeSession b = label_branch(p_.urgency, reason_room);
      a.urgency = score_labels(b, p_.urgency, "urgency", scored_prompt);
      done_work_ += 1;
      report("analyze");
      // The reason continues the urgency branch with the chosen answer in place.
      std::vector<int32_t> cont = tok_.encode(p_.urgency.text.at(a.urgency.label));
      cont.push_back(tok_.eos_id());
      const std::vector<int32_t> q =
          question_suffix(replace_all(reason_q, "{urgency}", a.urgency.label));
      cont.insert(cont.end(), q.begin(), q.end());
      append(b, cont);
      a.reason = generate(b, o_.max_reason_tokens).text;
      done_work_ += 1;
      report("analyze");
    }
    {
      const std::vector<int32_t> suffix = question_suffix(p_.tone_question);
      DecodeSession b = branch(suffix.size() + o_.max_tone_tokens);
      append(b, suffix);
      a.tone = generate(b, o_.max_tone_tokens).text;
      done_work_ += 1;
      report("analyze");
    }
    analyses_.push_back(std::move(a));
  }

  // Summary with the audio present, when the whole recording is this one group.
  if (audio_summary) {
    std::string transcript;
    for (const Segment& s : u_.segments) transcript += s.text;
    summary_lang_ = o_.language != "auto" ? o_.language : pipeline::detect_language(transcript);
    const bool chars = pipeline::counts_characters(summary_lang_);
    const size_t cap = chars ? o_.target_length * 3 / 2 + 8 : o_.target_length * 2 + 8;
    std::string q =
        replace_all(p_.summarize_question, "{target_length}", std::to_string(o_.target_length));
    q = replace_all(q, "{unit}", chars ? "characters" : "words");
    q = replace_all(q, "{language}", language_name(summary_lang_));
    const std::vector<int32_t> suffix = question_suffix(q);
    DecodeSession b = branch(suffix.size() + cap);
    append(b, suffix);
    group_summary_ = generate(b, cap).text;
  }
  done_work_ += 1;
  report("group");
  ++group_index_;
}

}  // namespace stepaudio::pipeline
