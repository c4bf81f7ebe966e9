// understand(): the tasks of issue 6 on one recording (see include/stepaudio/tasks.h for the
// sharing, batching and memory design). Per speech chunk (task_chunk.cpp):
//   prefix  = <|BOT|>system\n{system}<|EOT|><|BOT|>human\n{audio chunk}<|EOT|>   (prefilled once)
//   branches: transcription  = prefix + <|BOT|>assistant\n (the official ASR prompt)
//             emotion/urgency = prefix + <|BOT|>human\n{question}<|EOT|><|BOT|>assistant\n, labels
//                               scored in one batched pass; the reason continues the urgency branch
//             tone            = prefix + its question, generated
// The generated answers of a chunk decode together, and while they do, the next chunk is encoded
// and prefilled (its prefill pieces share passes with their decode rows); a chunk is collected
// once its answers are in and a later one has started (at most kMaxInflight in flight). The
// summary: with the audio present (a fork of the prefix) when the recording is one chunk, else from
// the transcript text, hierarchical when the transcript exceeds the context. Chunks arrive from the
// streaming front end (ChunkPlanner, fed by understand()'s in-memory PCM or understand_file()'s
// decoder).
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
#include "util/log.h"

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

Runner::~Runner() {
  // Branches still in the scheduler (an error or a cancel unwinds the request) refer to sessions
  // of this Runner: end them and wait before anything is freed.
  abort_ = true;
  try {
    if (early_.session) sched_->drop(*early_.session);  // its queued rows go unrun
    wait_for([&] { return active_ == 0; });
  } catch (...) {  // an inline scheduler with nothing left to drive: nothing is running
  }
  if (o_.dump_dir.empty()) return;
  try {
    make_dump_dir(o_.dump_dir);
    std::FILE* f =
        std::fopen((std::filesystem::path(o_.dump_dir) / "label_scores.json").c_str(), "w");
    if (!f) return;
    // Per chunk by name (emotion, urgency), whatever order the questions were scored in.
    std::stable_sort(dump_scores_.begin(), dump_scores_.end(), [](const auto& a, const auto& b) {
      return std::make_pair(a["chunk"].template get<size_t>(),
                            a["name"].template get<std::string>()) <
             std::make_pair(b["chunk"].template get<size_t>(),
                            b["name"].template get<std::string>());
    });
    const std::string s = dump_scores_.dump(1);
    std::fwrite(s.data(), 1, s.size(), f);
    std::fclose(f);
  } catch (...) {  // a debugging aid must not turn a result into a failure
  }
}

size_t Runner::work_per_chunk() const {
  return 2 + (wants_analysis() ? 4 : 0);  // encode, transcript; emotion, urgency, reason, tone
}

void Runner::begin(double expected_seconds) {
  const ModelInfo info = model_info(*e_.model);
  ctx_ = o_.max_context ? o_.max_context : info.max_positions;
  reserve_ = 256 + std::max({o_.max_transcript_tokens, o_.target_length * 2 + 8,
                             o_.max_reason_tokens + 64});
  // Progress work units before the length is known: chunks from the expected duration
  // (report() caps the percentage below 100 until finish()).
  planned_chunks_ = std::max<size_t>(
      1, size_t(std::ceil(expected_seconds / std::max(1.0, o_.chunking.max_seconds - 2))));
  total_work_ = planned_chunks_ * work_per_chunk() + (wants_summary() ? 1 : 0);
}

void Runner::add_chunk(audio::PlannedChunk c, bool last) {
  check_cancel();
  u_.duration_s = c.range.end_s();
  ChunkInfo ci;
  ci.index = n_chunks_++;
  if (n_chunks_ > planned_chunks_) total_work_ += work_per_chunk();  // longer than expected
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
    done_work_ += work_per_chunk();
    return;
  }
  ci.pcm = std::move(c.pcm);
  const size_t need = ci.patches + 64;  // system prompt, turn markers
  if (need + reserve_ > ctx_)
    throw Error(Errc::invalid_argument, "the model's context (" + std::to_string(ctx_) +
                                            " positions) cannot hold one audio chunk");
  start_chunk(std::move(ci), last);
  // Earlier chunks are collected, in order, once their answers are in; one still decoding is
  // waited for only beyond kMaxInflight chunks. Until then its decode rows ride in the next
  // chunks' prompt passes instead of passes of their own, each of which would read every weight
  // for a row or two (a 25 s chunk has ~8 prompt passes, its transcript up to ~100 tokens).
  while (inflight_.size() > kMaxInflight ||
         (inflight_.size() > 1 && answers_in(*inflight_.front()))) {
    collect_chunk(*inflight_.front());
    inflight_.pop_front();
  }
}

void Runner::finish() {
  // A recording of one speech chunk is summarized with its audio present: the summary starts as
  // soon as its language is known (given: start_chunk asked it already when the chunk was the
  // last; else detected from the transcript) and decodes together with the chunk's other answers.
  // Detected: the language of the transcript's first tokens starts it while the transcript still
  // decodes, and if the whole transcript says otherwise it starts over in that language (the
  // prompt is then the one waiting would have given, so the answer is the same either way).
  if (n_speech_ == 1 && wants_summary() && summary_src_) {
    ChunkWork& w = *inflight_.front();
    if (o_.language != "auto") {
      summary_lang_ = o_.language;
      start_audio_summary(*summary_src_);
      collect_chunk(w);
    } else {
      if (w.transcript_out && o_.language_guess_tokens > 0) {
        const std::string guess = guess_language(*w.transcript_out);
        if (guess != "und") {
          summary_lang_ = guess;
          start_audio_summary(*summary_src_);
        }
      }
      collect_chunk(w, [&] {
        const std::string lang = pipeline::detect_language(u_.segments.back().text);
        if (summary_out_ && lang == summary_lang_) return;
        if (summary_out_) {
          SA_DEBUG("tasks: the summary starts over in %s (guessed %s)", lang.c_str(),
                   summary_lang_.c_str());
          drop_summary();
        }
        summary_lang_ = lang;
        start_audio_summary(*summary_src_);
      });
    }
    summary_src_.reset();
    inflight_.pop_front();
  }
  while (!inflight_.empty()) {
    collect_chunk(*inflight_.front());
    inflight_.pop_front();
  }
  start_deferred();  // when no chunk came marked as the last (else started already)
  u_.no_speech = u_.groups == 0;
  if (u_.no_speech) {
    // Nothing for the model to hear: report that instead of asking it (it would hallucinate).
    assemble_no_speech(u_, p_, wants_analysis());
    u_.generate_ms = generate_wall_ms();
    report("done");
    return;
  }
  assemble_results(u_, analyses_);  // task_assemble.cpp: the rules the remote runner shares

  if (wants_summary()) {
    if (summary_lang_.empty()) summary_lang_ = o_.language != "auto" ? o_.language : u_.language;
    if (summary_out_) {
      u_.summary = collect(*summary_out_).text;
      summary_session_.reset();
    } else {
      report("summarize");
      u_.summary = summarize_text(u_.transcription, 0);
    }
    done_work_ += 1;
    enforce_summary(u_, o_.target_length, summary_lang_);
  }
  collect_deferred();  // they decoded beside the summary
  done_work_ = total_work_;
  u_.generate_ms = generate_wall_ms();
  report("done");
}
}  // namespace pipeline

namespace {
// The checks and fields every entry point starts with.
Understanding start(const Engine& engine, const TaskOptions& options) {
  pipeline::check_task_options(options);
  // The summary's token budget (2 per word + 8, Runner::begin) must fit beside the fixed reserve
  // and one full chunk's audio: say how long a summary this model can give, in the option's own
  // units.
  const size_t ctx =
      options.max_context ? options.max_context : model_info(*engine.model).max_positions;
  const size_t chunk = size_t(audio::audio_patch_tokens(audio::mel_frames(
                           size_t(options.chunking.max_seconds * audio::kSampleRate)))) +
                       64 + 256 + 8;
  const size_t most = ctx > chunk ? (ctx - chunk) / 2 : 0;
  if (options.target_length > most)
    throw Error(Errc::invalid_argument,
                "target length " + std::to_string(options.target_length) +
                    " is more than this model's context (" + std::to_string(ctx) +
                    " positions) can hold: at most " + std::to_string(most) +
                    " (words, or characters for Chinese/Japanese/Korean/Thai)");
  return pipeline::new_understanding(engine.model_id, options);
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
    // What the planner hands out now ends the recording: the runner learns which chunk is last.
    std::vector<audio::PlannedChunk> rest;
    audio::PlannedChunk c;
    while (planner.next(c)) rest.push_back(std::move(c));
    for (size_t i = 0; i < rest.size(); ++i)
      runner.add_chunk(std::move(rest[i]), /*last=*/i + 1 == rest.size());
    runner.finish();
  }
  void drain() {
    audio::PlannedChunk c;
    while (planner.next(c)) runner.add_chunk(std::move(c), /*last=*/false);
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
  u.audio_truncated = decoded.truncated;
  u.stated_duration_s = decoded.stated_seconds;
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
    const audio::StreamInfo got = audio::decode_file_stream(
        path, d, [&](const audio::StreamInfo& info, const float* x, size_t n) {
          if (!resampler) {
            resampler.emplace(info.sample_rate, audio::kSampleRate);
            runner.begin(info.seconds);
          }
          resampler->push(x, n, pcm);
          feed_pcm();
        });
    u.audio_truncated = got.truncated;
    u.stated_duration_s = got.stated_seconds;
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
