// run_task_bench() (include/stepaudio/task_bench.h): the understanding tasks, shared vs
// sequential vs separate, and N requests at once.
#include "stepaudio/task_bench.h"

#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "pipeline/prompt_cache.h"
#include "stepaudio/error.h"
#include "stepaudio/pipeline.h"
#include "stepaudio/scheduler.h"
#include "stepaudio/tokenizer.h"
#include "util/log.h"

namespace stepaudio {

namespace {
using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}
size_t peak_rss() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<size_t>(ru.ru_maxrss) * 1024;
}
}  // namespace

std::vector<float> speech_like_signal(double seconds) {
  const size_t n = static_cast<size_t>(std::llround(seconds * audio::kSampleRate));
  std::vector<float> x(n);
  uint64_t state = 0x9E3779B97F4A7C15ull;
  for (size_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(i) / audio::kSampleRate;
    // Voiced 70% of each 2 s period, pitch 140..220 Hz wobbling at 3 Hz: energy well above the
    // no_speech threshold (-45 dBFS) in the bursts, pauses for the chunk planner to cut at.
    const double env = std::sin(2 * M_PI * 0.5 * t) > -0.3 ? 1.0 : 0.0;
    const double tone = std::sin(2 * M_PI * (180 + 40 * std::sin(2 * M_PI * 3 * t)) * t);
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const double noise = (static_cast<double>(state >> 11) / 9007199254740992.0 - 0.5) * 0.01;
    x[i] = static_cast<float>(env * 0.2 * tone + noise);
  }
  return x;
}

TaskBenchReport run_task_bench(
    const TaskBenchOptions& o, const std::function<void(const TaskBenchRun&)>& on_run,
    const std::function<void(const TaskBenchConcurrency&)>& on_concurrency) {
  if (o.model.empty() == o.synthetic.empty())
    throw Error(Errc::invalid_argument, "bench --task needs exactly one of --model or --synthetic");
  // Only the full-size presets share the real vocabulary (and so a real tokenizer); a tiny model
  // for --task is a tiny checkpoint folder, whose tokenizer it carries.
  const char* kTinyHint =
      "for a quick run use --model DIR with a tiny checkpoint (tests/reference/make_tiny_model.py "
      "DIR --shared ../shared/data)";
  if (!o.synthetic.empty() && o.synthetic.rfind("step-audio-2-mini", 0) != 0)
    throw Error(Errc::invalid_argument, "bench --task --synthetic " + o.synthetic +
                                            ": its vocabulary matches no tokenizer; " + kTinyHint);
  if (!o.synthetic.empty() && o.tokenizer.empty())
    throw Error(Errc::invalid_argument,
                "bench --task --synthetic needs --tokenizer DIR (a folder with the real "
                "tokenizer.json, e.g. a checkpoint's, or a tiny checkpoint's, which carries the "
                "real vocabulary); " +
                    std::string(kTinyHint));
  if (o.max_new_tokens == 0) throw Error(Errc::invalid_argument, "--max-new-tokens must be >= 1");
  TaskBenchReport rep;
  rep.quant = quant_name(o.quant);
  rep.max_new_tokens = o.max_new_tokens;
  rep.threads = o.threads;

  auto t0 = Clock::now();
  Engine engine;
  if (!o.synthetic.empty()) {
    engine.model = make_synthetic_model(o.synthetic, 0, o.quant);
    engine.model_id = o.synthetic;
  } else if (o.tokenizer.empty()) {
    engine = *load_engine(o.model, {o.quant});
  } else {
    engine.model = load_model(o.model, {o.quant});
    engine.model_id = std::filesystem::path(o.model).filename().string();
  }
  if (!o.tokenizer.empty()) engine.tokenizer = text::Tokenizer::load(o.tokenizer);
  rep.load_s = ms_since(t0) / 1e3;
  const ModelInfo info = model_info(*engine.model);
  rep.model_bytes = info.weight_bytes;
  // The tokenizer's ids must exist in the model (the 1024-row vocabulary of the 1-layer preset
  // would be indexed out of range) and agree on the ids the engine splices and stops at.
  const text::Tokenizer& tok = *engine.tokenizer;
  const std::optional<int32_t> patch = tok.token_id("<audio_patch>");
  if (static_cast<size_t>(tok.first_non_text_id()) > info.vocab || tok.eos_id() != info.eos_id ||
      !patch || *patch != info.audio_patch_id)
    throw Error(Errc::invalid_argument,
                "the tokenizer (" + tok.source() + ") does not match the model's vocabulary (" +
                    std::to_string(info.vocab) + " ids, <|EOT|> " + std::to_string(info.eos_id) +
                    ", <audio_patch> " + std::to_string(info.audio_patch_id) + "); " + kTinyHint);
  // The prompt cache as a server holds it after its first request (for the tokenizer in use), so
  // that the first run is not the only one to prefill the system turn.
  engine.prompt_cache = std::make_shared<PromptCache>();
  pipeline::warm_prompt_cache(engine, default_prompts().system, o.threads);

  // The recording, decoded once (its decode + resample time is reported with every run).
  std::vector<float> source;
  double source_ms = 0;
  if (!o.audio.empty()) {
    t0 = Clock::now();
    source = audio::to_16k(audio::decode_file(o.audio));
    source_ms = ms_since(t0);
    if (source.empty()) throw Error(Errc::bad_audio, o.audio + " holds no samples");
  }

  auto recording = [&](double seconds) {
    audio::DecodedAudio a;
    a.sample_rate = audio::kSampleRate;
    a.source_channels = 1;
    if (source.empty()) {
      a.samples = speech_like_signal(seconds);
    } else {  // the recording repeated (or cut) to `seconds`
      a.samples.resize(static_cast<size_t>(std::llround(seconds * audio::kSampleRate)));
      for (size_t i = 0; i < a.samples.size(); ++i) a.samples[i] = source[i % source.size()];
    }
    return a;
  };
  auto options = [&](Task task, double seconds, const std::string& mode) {
    TaskOptions t;
    t.task = task;
    t.target_length = o.target_length;
    t.language = o.language;
    t.threads = o.threads;
    t.max_transcript_tokens = o.max_new_tokens;
    t.max_tone_tokens = std::min<size_t>(16, o.max_new_tokens);
    t.max_reason_tokens = o.max_new_tokens;
    t.repeat_ngram_max = 0;  // the repetition guard off: every answer runs to its cap
    t.repeat_single = 0;
    t.share_prefix = mode != "separate";
    t.batch_branches = mode == "shared";
    t.max_audio_seconds = std::max(t.max_audio_seconds, seconds + 1);
    return t;
  };
  auto answers = [](const Understanding& u) {
    return nlohmann::json{{"transcription", u.transcription},
                          {"summary", u.summary},
                          {"tone", u.tone},
                          {"urgency_reason", u.urgency_reason},
                          {"emotion", u.emotion.scores},
                          {"urgency", u.urgency.scores}}
        .dump();
  };
  SchedulerOptions sched_options;
  if (o.separate_passes) {
    sched_options.share_passes = false;
    sched_options.yield_interval_ms = 0;
    sched_options.prefill_chunk = 128;
  }
  // One request alone, on an inline scheduler of these options (what understand() makes itself
  // by default).
  auto understand_alone = [&](audio::DecodedAudio a, TaskOptions t) {
    SchedulerOptions inline_options = sched_options;
    inline_options.threaded = false;
    Scheduler inline_sched(inline_options);
    t.scheduler = &inline_sched;
    return understand(engine, std::move(a), t);
  };
  for (Task task : o.tasks) {
    for (double seconds : o.audio_seconds) {
      std::optional<size_t> single;  // index of the shared run in rep.runs
      for (const char* mode : {"shared", "sequential", "separate"}) {
        const std::string m = mode;
        if ((m == "shared" && !o.shared) || (m == "sequential" && !o.sequential) ||
            (m == "separate" && !o.separate))
          continue;
        audio::DecodedAudio a = recording(seconds);
        const size_t n_chunks = audio::plan_chunks(a.samples.data(), a.samples.size()).size();
        SA_INFO("bench --task %s, %.0f s, %s", task_name(task), seconds, mode);
        const Understanding u = understand_alone(std::move(a), options(task, seconds, m));
        TaskBenchRun r;
        r.task = task;
        r.audio_seconds = seconds;
        r.mode = m;
        r.shared = m != "separate";
        r.groups = u.groups;
        r.chunks = n_chunks;
        r.audio_tokens = u.audio_tokens;
        r.prompt_tokens = u.prompt_tokens;
        r.completion_tokens = u.completion_tokens;
        r.prompt_tokens_unshared = u.prompt_tokens_unshared;
        r.cached_prompt_tokens = u.cached_prompt_tokens;
        r.audio_ms = source_ms;
        r.mel_ms = u.mel_ms;
        r.encode_ms = u.encode_ms;
        r.prefill_ms = u.prefill_ms;
        r.score_ms = u.score_ms;
        r.generate_ms = u.generate_ms;
        r.total_ms = u.total_ms + source_ms;
        r.peak_rss_bytes = peak_rss();
        r.answers_json = answers(u);
        if (on_run) on_run(r);
        rep.runs.push_back(r);
        if (m == "shared") single = rep.runs.size() - 1;
      }
      if (o.concurrency < 2) continue;
      // N shared requests at once, each on its own thread, all model work on one scheduler.
      TaskBenchConcurrency c;
      c.task = task;
      c.audio_seconds = seconds;
      c.requests = o.concurrency;
      std::string lone = single ? rep.runs[*single].answers_json : "";
      if (!single) {  // one alone first, for the ratio
        auto t1 = Clock::now();
        lone = answers(understand_alone(recording(seconds), options(task, seconds, "shared")));
        c.single_wall_ms = ms_since(t1) + source_ms;
      } else {
        c.single_wall_ms = rep.runs[*single].total_ms;
      }
      SA_INFO("bench --task %s, %.0f s, %zu at once", task_name(task), seconds, o.concurrency);
      std::vector<std::string> got(o.concurrency);
      std::vector<std::exception_ptr> err(o.concurrency);
      Scheduler sched(sched_options);
      TaskOptions t = options(task, seconds, "shared");
      t.scheduler = &sched;
      auto t1 = Clock::now();
      {
        std::vector<std::thread> threads;
        for (size_t i = 0; i < o.concurrency; ++i)
          threads.emplace_back([&, i] {
            try {
              got[i] = answers(understand(engine, recording(seconds), t));
            } catch (...) {
              err[i] = std::current_exception();
            }
          });
        for (auto& th : threads) th.join();
      }
      c.wall_ms = ms_since(t1) + source_ms;
      for (auto& e : err)
        if (e) std::rethrow_exception(e);
      c.answers_equal = true;
      for (const std::string& g : got) c.answers_equal = c.answers_equal && g == lone;
      const SchedulerStats st = sched.stats();
      c.mean_batch = st.steps ? double(st.step_rows) / double(st.steps) : 0.0;
      c.steps = st.steps;
      c.shared_steps = st.shared_steps;
      c.prompt_rows = st.prompt_rows;
      c.peak_rss_bytes = peak_rss();
      if (on_concurrency) on_concurrency(c);
      rep.concurrency.push_back(c);
    }
  }
  return rep;
}

}  // namespace stepaudio
