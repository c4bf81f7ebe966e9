// understand(): the tasks of issue 6 on one recording (see include/stepaudio/tasks.h for the
// sharing and memory design). Per group of speech chunks:
//   prefix  = <|BOT|>system\n{system}<|EOT|><|BOT|>human\n{audio chunks}<|EOT|>   (prefilled once)
//   branches: transcription  = prefix + <|BOT|>assistant\n (the official ASR prompt, 1-chunk group)
//             emotion/urgency = prefix + <|BOT|>human\n{question}<|EOT|><|BOT|>assistant\n, labels
//                               scored in one batched pass; the reason continues the urgency branch
//             tone, summary   = prefix + their question, generated
// A group with several chunks transcribes each chunk with its own one-chunk prompt (segments keep
// chunk times) from the rows already encoded; its summary is then a text-only pass over the
// transcript, hierarchical when the transcript exceeds the context.
#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <random>

#include "pipeline/guards.h"
#include "pipeline/task_runner.h"
#include "stepaudio/error.h"
#include "stepaudio/npy.h"

namespace stepaudio {

Task parse_task(const std::string& name) {
  if (name == "transcribe") return Task::transcribe;
  if (name == "summarize") return Task::summarize;
  if (name == "analyze") return Task::analyze;
  if (name == "transcribe_and_summarize") return Task::transcribe_and_summarize;
  throw Error(Errc::invalid_argument, "unknown task \"" + name +
                                          "\" (transcribe, summarize, analyze, "
                                          "transcribe_and_summarize)");
}

const char* task_name(Task t) {
  switch (t) {
    case Task::transcribe:
      return "transcribe";
    case Task::summarize:
      return "summarize";
    case Task::analyze:
      return "analyze";
    case Task::transcribe_and_summarize:
      return "transcribe_and_summarize";
  }
  return "?";
}

namespace pipeline {
namespace {
std::string new_request_id() {
  static std::atomic<uint64_t> counter{0};
  std::random_device rd;
  const uint64_t x = (uint64_t(rd()) << 32) ^ rd() ^ (counter++ << 48);
  char buf[32];
  std::snprintf(buf, sizeof buf, "req_%016llx", static_cast<unsigned long long>(x));
  return buf;
}
}  // namespace

Runner::~Runner() {
  if (o_.dump_dir.empty()) return;
  try {
    std::filesystem::create_directories(o_.dump_dir);
    std::FILE* f =
        std::fopen((std::filesystem::path(o_.dump_dir) / "label_scores.json").c_str(), "w");
    if (!f) return;
    const std::string s = dump_scores_.dump(1);
    std::fwrite(s.data(), 1, s.size(), f);
    std::fclose(f);
  } catch (...) {  // a debugging aid must not turn a result into a failure
  }
}

void Runner::run(std::vector<float> pcm) {
  const Model& model = *e_.model;
  const ModelInfo info = model_info(model);
  u_.duration_s = double(pcm.size()) / audio::kSampleRate;

  // Chunks and the energy check, before any model work.
  std::vector<ChunkInfo> chunks;
  for (const audio::Chunk& c : audio::plan_chunks(pcm.data(), pcm.size(), o_.chunking)) {
    ChunkInfo ci{c, size_t(audio::audio_patch_tokens(audio::mel_frames(c.end - c.begin))), false};
    ci.speech = ci.patches > 0 && pipeline::active_seconds(pcm.data() + c.begin, c.end - c.begin,
                                                           o_.speech_dbfs) >= o_.min_speech_seconds;
    chunks.push_back(ci);
  }
  // Groups of consecutive speech chunks whose prompt fits the context with room for the answers.
  const size_t ctx = o_.max_context ? o_.max_context : info.max_positions;
  const size_t reserve = 256 + std::max({o_.max_transcript_tokens, o_.target_length * 2 + 8,
                                         o_.max_reason_tokens + 64});
  std::vector<std::vector<size_t>> groups;
  size_t group_tokens = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    if (!chunks[i].speech) continue;
    const size_t need = chunks[i].patches + 2;
    if (need + reserve + 64 > ctx)
      throw Error(Errc::invalid_argument, "the model's context (" + std::to_string(ctx) +
                                              " positions) cannot hold one audio chunk");
    if (groups.empty() || group_tokens + need + reserve + 64 > ctx) {
      groups.emplace_back();
      group_tokens = 0;
    }
    groups.back().push_back(i);
    group_tokens += need;
  }
  u_.groups = groups.size();
  u_.no_speech = groups.empty();
  for (const ChunkInfo& c : chunks)
    if (!c.speech) {
      Segment seg;
      seg.start = c.range.start_s();
      seg.end = c.range.end_s();
      seg.no_speech = true;
      u_.segments.push_back(seg);
    }
  if (u_.no_speech) {
    // Nothing for the model to hear: report that instead of asking it (it would hallucinate).
    u_.emotion.label = "neutral";
    for (const auto& l : p_.emotion.labels) u_.emotion.scores[l] = l == "neutral" ? 1.0 : 0.0;
    u_.urgency.label = "low";
    for (const auto& l : p_.urgency.labels) u_.urgency.scores[l] = l == "low" ? 1.0 : 0.0;
    u_.tone = wants_analysis() ? "silent" : "";
    u_.urgency_reason = wants_analysis() ? "No speech was detected in the recording." : "";
    report("done");
    return;
  }

  total_work_ = 0;
  for (const auto& g : groups) total_work_ += 2 * g.size() + (wants_analysis() ? 4 : 0) + 1;
  total_work_ += wants_summary() ? 1 : 0;

  struct GroupAnalysis {
    LabelScores emotion, urgency;
    std::string tone, reason;
    double weight = 0;
  };
  std::vector<GroupAnalysis> analyses;
  std::string group_summary;

  for (const auto& g : groups) {
    check_cancel();
    // Mel + encode this group's chunks (freed at the end of the iteration).
    std::vector<MelChunk> mels;
    auto t0 = Clock::now();
    for (size_t ci : g) {
      const audio::Chunk& c = chunks[ci].range;
      audio::LogMel mel = audio::log_mel(pcm.data() + c.begin, c.end - c.begin);
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
    std::vector<AudioEmbedding> audio = encode_audio(model, mels, o_.threads, {}, cancel_);
    mels.clear();
    mels.shrink_to_fit();
    u_.encode_ms += ms_since(t0);
    done_work_ += g.size();
    report("encode");
    for (const auto& a : audio) u_.audio_tokens += a.n_rows;

    std::vector<text::Part> parts;
    for (size_t ci : g) parts.push_back(text::Part::audio(chunks[ci].patches));
    const std::vector<int32_t> prefix = render(
        {text::Message::text("system", p_.system), text::Message::list("human", parts)}, false);
    // The shared system + audio prefix, prefilled only when a branch will use it (a multi-chunk
    // group that is only transcribed, or summarized from the text, never needs it).
    const bool single = g.size() == 1;
    std::optional<DecodeSession> shared_state;
    const bool audio_summary = wants_summary() && groups.size() == 1;  // else text-only, later
    if (wants_analysis() || audio_summary || (single && wants_transcript())) {
      shared_state.emplace(e_.model, prefix.size(), o_.threads);
      append(*shared_state, prefix, audio);
    }

    // Transcription: per chunk (segments keep the chunk times).
    if (wants_transcript()) {
      const std::vector<int32_t> suffix = question_suffix(p_.transcribe_question);
      for (size_t k = 0; k < g.size(); ++k) {
        const ChunkInfo& c = chunks[g[k]];
        const size_t cap_tokens = o_.max_transcript_tokens;
        DecodeSession branch = [&] {
          if (single) return shared_state->fork(shared_state->pos() + suffix.size() + cap_tokens);
          const std::vector<int32_t> one =
              render({text::Message::text("system", p_.system),
                      text::Message::list("human", {text::Part::audio(c.patches)})},
                     false);
          DecodeSession s(e_.model, one.size() + suffix.size() + cap_tokens, o_.threads);
          append(s, one, {audio[k]});
          return s;
        }();
        append(branch, suffix);
        Generated t = generate(branch, cap_tokens);
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
      for (size_t ci : g) a.weight += double(chunks[ci].range.end - chunks[ci].range.begin);
      // Emotion and urgency: the question after the audio, labels scored in one batched pass.
      std::vector<int32_t> scored_prompt;  // prefix + question, for the dump
      auto label_branch = [&](const LabelQuestion& q, size_t extra) {
        const std::vector<int32_t> suffix = question_suffix(q.question);
        scored_prompt = prefix;
        scored_prompt.insert(scored_prompt.end(), suffix.begin(), suffix.end());
        size_t label_tokens = 0;
        for (const auto& l : q.labels) label_tokens += tok_.encode(q.text.at(l)).size() + 1;
        DecodeSession b =
            shared_state->fork(shared_state->pos() + suffix.size() + label_tokens + extra);
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
        DecodeSession b =
            shared_state->fork(shared_state->pos() + suffix.size() + o_.max_tone_tokens);
        append(b, suffix);
        a.tone = generate(b, o_.max_tone_tokens).text;
        done_work_ += 1;
        report("analyze");
      }
      analyses.push_back(std::move(a));
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
      DecodeSession b = shared_state->fork(shared_state->pos() + suffix.size() + cap);
      append(b, suffix);
      group_summary = generate(b, cap).text;
    }
    done_work_ += 1;
    report("group");
    ++group_index_;
  }

  // Results over the whole recording.
  std::sort(u_.segments.begin(), u_.segments.end(),
            [](const Segment& a, const Segment& b) { return a.start < b.start; });
  size_t n_tokens = 0;
  double sum_lp = 0;
  for (const Segment& s : u_.segments) {
    if (s.text.empty()) continue;
    if (!u_.transcription.empty() &&
        !pipeline::counts_characters(pipeline::detect_language(s.text)))
      u_.transcription += ' ';
    u_.transcription += s.text;
    n_tokens += s.tokens;
    sum_lp += s.sum_logprob;
  }
  // Overall confidence: exp of the mean log-probability over every transcript token.
  u_.confidence = n_tokens ? std::exp(sum_lp / double(n_tokens)) : 0.0;
  u_.language = pipeline::detect_language(u_.transcription);

  if (!analyses.empty()) {
    // Duration-weighted mean of the groups' label distributions.
    double wsum = 0;
    for (const auto& a : analyses) wsum += a.weight;
    auto combine = [&](const LabelQuestion& q, auto pick) {
      LabelScores out;
      for (const auto& l : q.labels) {
        double p = 0;
        for (const auto& a : analyses) p += a.weight / wsum * pick(a).scores.at(l);
        out.scores[l] = p;
      }
      out.label = std::max_element(out.scores.begin(), out.scores.end(), [](auto& x, auto& y) {
                    return x.second < y.second;
                  })->first;
      return out;
    };
    u_.emotion =
        combine(p_.emotion, [](const GroupAnalysis& a) -> const LabelScores& { return a.emotion; });
    u_.urgency =
        combine(p_.urgency, [](const GroupAnalysis& a) -> const LabelScores& { return a.urgency; });
    u_.urgency_score = u_.urgency.scores["medium"] * 0.5 + u_.urgency.scores["high"];
    // Tone and reason of the group that speaks most for the final urgency label.
    const GroupAnalysis* best = &analyses[0];
    for (const auto& a : analyses)
      if (a.urgency.scores.at(u_.urgency.label) > best->urgency.scores.at(u_.urgency.label))
        best = &a;
    u_.tone = best->tone;
    u_.urgency_reason = best->reason;
  }

  if (wants_summary()) {
    if (summary_lang_.empty()) summary_lang_ = o_.language != "auto" ? o_.language : u_.language;
    if (groups.size() == 1) {
      u_.summary = group_summary;
    } else {
      report("summarize");
      u_.summary = summarize_text(u_.transcription, 0);
    }
    done_work_ += 1;
    enforce_summary();
  }
  done_work_ = total_work_;
  report("done");
}
}  // namespace pipeline

Understanding understand(const Engine& engine, audio::DecodedAudio decoded,
                         const TaskOptions& options, const TaskProgressFn& progress,
                         const std::atomic<bool>* cancel) {
  const auto t0 = pipeline::Clock::now();
  if (decoded.duration_s() > options.max_audio_seconds)
    throw Error(Errc::too_long, "the recording lasts " + std::to_string(decoded.duration_s()) +
                                    " s, over the maximum of " +
                                    std::to_string(options.max_audio_seconds) + " s");
  const std::string& lang = options.language;
  if (lang != "auto" && !(lang.size() == 2 && std::islower(static_cast<unsigned char>(lang[0])) &&
                          std::islower(static_cast<unsigned char>(lang[1]))))
    throw Error(
        Errc::invalid_argument,
        "language must be \"auto\" or an ISO 639-1 code such as \"en\", not \"" + lang + "\"");
  if (options.target_length == 0)
    throw Error(Errc::invalid_argument, "target_length must be at least 1");
  Understanding u;
  u.id = pipeline::new_request_id();
  u.model = engine.model_id;
  u.task = options.task;
  const PromptSet& prompts = options.prompts ? *options.prompts : default_prompts();
  u.prompts_source = prompts.source;
  u.prompts_version = prompts.version;
  // 16 kHz sources are taken over without a copy; others are resampled and the source freed.
  std::vector<float> pcm = decoded.sample_rate == audio::kSampleRate ? std::move(decoded.samples)
                                                                     : audio::to_16k(decoded);
  std::vector<float>().swap(decoded.samples);
  pipeline::Runner(engine, options, u, progress, cancel).run(std::move(pcm));
  u.total_ms = pipeline::ms_since(t0);
  return u;
}

}  // namespace stepaudio