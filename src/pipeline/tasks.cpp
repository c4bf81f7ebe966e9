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
// Chunks arrive from the streaming front end (ChunkPlanner, fed by understand()'s in-memory PCM or
// understand_file()'s decoder); a group runs (task_group.cpp) as soon as the next speech chunk
// does not fit it, or at the end of the recording, when it is known whether it was the only one.
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

void Runner::begin(double expected_seconds) {
  const ModelInfo info = model_info(*e_.model);
  ctx_ = o_.max_context ? o_.max_context : info.max_positions;
  reserve_ = 256 + std::max({o_.max_transcript_tokens, o_.target_length * 2 + 8,
                             o_.max_reason_tokens + 64});
  // Progress work units before the length is known: chunks from the expected duration, one group
  // (report() caps the percentage below 100 until finish()).
  const size_t chunks = std::max<size_t>(
      1, size_t(std::ceil(expected_seconds / std::max(1.0, o_.chunking.max_seconds - 2))));
  total_work_ = 2 * chunks + (wants_analysis() ? 4 : 0) + 1 + (wants_summary() ? 1 : 0);
}

void Runner::add_chunk(audio::PlannedChunk c) {
  check_cancel();
  u_.duration_s = c.range.end_s();
  ChunkInfo ci;
  ci.index = n_chunks_++;
  ci.range = c.range;
  ci.patches = size_t(audio::audio_patch_tokens(audio::mel_frames(c.pcm.size())));
  // The energy check, before any model work.
  ci.speech = ci.patches > 0 && pipeline::active_seconds(c.pcm.data(), c.pcm.size(),
                                                         o_.speech_dbfs) >= o_.min_speech_seconds;
  if (!ci.speech) {
    Segment seg;
    seg.start = c.range.start_s();
    seg.end = c.range.end_s();
    seg.no_speech = true;
    u_.segments.push_back(seg);
    return;
  }
  ci.pcm = std::move(c.pcm);
  // Groups of consecutive speech chunks whose prompt fits the context with room for the answers.
  // A group runs as soon as the next speech chunk does not fit it: only one group's PCM is held.
  const size_t need = ci.patches + 2;
  if (need + reserve_ + 64 > ctx_)
    throw Error(Errc::invalid_argument, "the model's context (" + std::to_string(ctx_) +
                                            " positions) cannot hold one audio chunk");
  if (!group_.empty() && group_tokens_ + need + reserve_ + 64 > ctx_) {
    total_work_ += (wants_analysis() ? 4 : 0) + 1;  // one more group than planned
    run_group(/*only_group=*/false);
  }
  group_tokens_ += need;
  group_.push_back(std::move(ci));
}

void Runner::run_group(bool only_group) {
  ++u_.groups;
  process_group(only_group);
  group_.clear();
  group_.shrink_to_fit();
  group_tokens_ = 0;
}

void Runner::finish() {
  if (!group_.empty()) run_group(/*only_group=*/u_.groups == 0);
  u_.no_speech = u_.groups == 0;
  if (u_.no_speech) {
    // Nothing for the model to hear: report that instead of asking it (it would hallucinate).
    std::sort(u_.segments.begin(), u_.segments.end(),
              [](const Segment& a, const Segment& b) { return a.start < b.start; });
    u_.emotion.label = "neutral";
    for (const auto& l : p_.emotion.labels) u_.emotion.scores[l] = l == "neutral" ? 1.0 : 0.0;
    u_.urgency.label = "low";
    for (const auto& l : p_.urgency.labels) u_.urgency.scores[l] = l == "low" ? 1.0 : 0.0;
    u_.tone = wants_analysis() ? "silent" : "";
    u_.urgency_reason = wants_analysis() ? "No speech was detected in the recording." : "";
    report("done");
    return;
  }
  const std::vector<GroupAnalysis>& analyses = analyses_;

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
    if (u_.groups == 1) {
      u_.summary = group_summary_;
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

namespace {
// The checks and fields every entry point starts with.
Understanding start(const Engine& engine, const TaskOptions& options) {
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
  return u;
}

// 16 kHz PCM -> chunk planner -> runner, chunk by chunk.
struct ChunkFeed {
  audio::ChunkPlanner planner;
  pipeline::Runner& runner;
  void push(const float* pcm, size_t n) {
    planner.push(pcm, n);
    drain();
  }
  void finish() {
    planner.finish();
    drain();
    runner.finish();
  }
  void drain() {
    audio::PlannedChunk c;
    while (planner.next(c)) runner.add_chunk(std::move(c));
  }
};
}  // namespace

Understanding understand(const Engine& engine, audio::DecodedAudio decoded,
                         const TaskOptions& options, const TaskProgressFn& progress,
                         const std::atomic<bool>* cancel) {
  const auto t0 = pipeline::Clock::now();
  if (decoded.duration_s() > options.max_audio_seconds)
    throw Error(Errc::too_long, "the recording lasts " + std::to_string(decoded.duration_s()) +
                                    " s, over the maximum of " +
                                    std::to_string(options.max_audio_seconds) + " s");
  Understanding u = start(engine, options);
  // 16 kHz sources are taken over without a copy; others are resampled and the source freed.
  std::vector<float> pcm = decoded.sample_rate == audio::kSampleRate ? std::move(decoded.samples)
                                                                     : audio::to_16k(decoded);
  std::vector<float>().swap(decoded.samples);
  {
    pipeline::Runner runner(engine, options, u, progress, cancel);
    runner.begin(double(pcm.size()) / audio::kSampleRate);
    ChunkFeed feed{audio::ChunkPlanner(options.chunking), runner};
    constexpr size_t kBlock = 10 * audio::kSampleRate;
    for (size_t at = 0; at < pcm.size(); at += kBlock)
      feed.push(pcm.data() + at, std::min(kBlock, pcm.size() - at));
    feed.finish();
  }
  u.total_ms = pipeline::ms_since(t0);
  return u;
}

Understanding understand_file(const Engine& engine, const std::string& path,
                              const audio::DecodeOptions& decode, const TaskOptions& options,
                              const TaskProgressFn& progress, const std::atomic<bool>* cancel) {
  const auto t0 = pipeline::Clock::now();
  Understanding u = start(engine, options);
  audio::DecodeOptions d = decode;
  d.max_seconds = std::min(d.max_seconds, options.max_audio_seconds);  // too_long while decoding
  double model_ms = 0;  // time spent in the runner, i.e. not decoding or resampling
  {
    pipeline::Runner runner(engine, options, u, progress, cancel);
    ChunkFeed feed{audio::ChunkPlanner(options.chunking), runner};
    std::optional<audio::StreamResampler> resampler;
    std::vector<float> pcm;  // one decoded frame at 16 kHz
    auto feed_pcm = [&] {
      const auto t = pipeline::Clock::now();
      feed.push(pcm.data(), pcm.size());
      pcm.clear();
      model_ms += pipeline::ms_since(t);
    };
    audio::decode_file_stream(path, d,
                              [&](const audio::StreamInfo& info, const float* x, size_t n) {
                                if (!resampler) {
                                  resampler.emplace(info.sample_rate, audio::kSampleRate);
                                  runner.begin(info.seconds);
                                }
                                resampler->push(x, n, pcm);
                                feed_pcm();
                              });
    resampler->finish(pcm);  // the decoder throws before here when nothing was decoded
    feed_pcm();
    const auto t = pipeline::Clock::now();
    feed.finish();
    model_ms += pipeline::ms_since(t);
  }
  u.total_ms = pipeline::ms_since(t0);
  u.decode_ms = u.total_ms - model_ms;
  return u;
}

}  // namespace stepaudio
