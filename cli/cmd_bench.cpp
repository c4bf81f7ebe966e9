// `stepaudio bench`: stage speeds as ratios to this machine's limits, text or JSON.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "commands.h"
#include "options.h"
#include "stepaudio/bench.h"
#include "stepaudio/error.h"
#include "stepaudio/task_bench.h"

namespace stepaudio::cli {

namespace {
struct BenchCli {
  std::string model, synthetic, quant = "q4";
  std::vector<double> audio_seconds = {10};
  int threads = 0, reps = 3;
  size_t decode_tokens = 32;
  bool json = false;
  size_t kl_steps = 0;  // > 0: the quantization accuracy report instead of speed
  std::string kl_reference = "f32";
  // --task: the understanding tasks' costs (task_bench.h) instead of the stage speeds.
  std::vector<std::string> tasks;
  std::string tokenizer, audio, mode = "both", language = "en";
  size_t max_new_tokens = 32, target_length = 10;
  std::string prefill_act = "int8", encoder_act = "int8";
  size_t concurrency = 0;  // with --task: N requests at once (the continuous-batching scheduler)
  std::string passes = "shared";
};

nlohmann::json run_json(const TaskBenchRun& r) {
  return {{"task", task_name(r.task)},
          {"audio_seconds", r.audio_seconds},
          {"mode", r.mode},
          {"chunks", r.chunks},
          {"groups", r.groups},
          {"audio_tokens", r.audio_tokens},
          {"prompt_tokens", r.prompt_tokens},
          {"completion_tokens", r.completion_tokens},
          {"prompt_tokens_unshared", r.prompt_tokens_unshared},
          {"cached_prompt_tokens", r.cached_prompt_tokens},
          {"ms",
           {{"audio", r.audio_ms},
            {"mel", r.mel_ms},
            {"encode", r.encode_ms},
            {"prefill", r.prefill_ms},
            {"score", r.score_ms},
            {"generate", r.generate_ms},
            {"total", r.total_ms}}},
          {"peak_rss_bytes", r.peak_rss_bytes},
          {"answers", nlohmann::json::parse(r.answers_json)}};
}

// `bench --task`: each run printed as it finishes (full-size runs take minutes), then the savings.
int task_report(const BenchCli& c) {
  TaskBenchOptions o;
  o.model = c.model;
  o.synthetic = c.synthetic;
  o.tokenizer = c.tokenizer;
  o.quant = parse_quant(c.quant);
  o.tasks.clear();
  for (const std::string& t : c.tasks) o.tasks.push_back(parse_task(t));
  o.audio_seconds = c.audio_seconds;
  for (double s : o.audio_seconds)
    if (!(s >= 0.5 && s <= 4 * 3600))
      throw Error(Errc::invalid_argument, "--audio-seconds with --task: 0.5 to 14400");
  o.audio = c.audio;
  o.max_new_tokens = c.max_new_tokens;
  o.target_length = c.target_length;
  o.language = c.language;
  o.shared = c.mode == "both" || c.mode == "shared" || c.mode == "all";
  o.separate = c.mode == "both" || c.mode == "separate" || c.mode == "all";
  o.sequential = c.mode == "sequential" || c.mode == "all";
  o.concurrency = c.concurrency;
  o.separate_passes = c.passes == "separate";
  o.threads = c.threads;
  bool header = false;  // printed with the first run, so an early error stands alone
  const TaskBenchReport rep = run_task_bench(
      o,
      [&](const TaskBenchRun& r) {
        if (c.json) return;
        if (!header)
          std::printf("%-24s %6s %-8s %6s %9s %9s %6s %8s %9s %9s %8s %9s %9s %8s\n", "task",
                      "audio", "mode", "chunks", "audio_tok", "prompt", "gen", "front_ms",
                      "encode_ms", "prefill_ms", "score_ms", "gen_ms", "total_ms", "rss_GB");
        header = true;
        std::printf(
            "%-24s %5.0fs %-8s %6zu %9zu %9zu %6zu %8.0f %9.0f %9.0f %8.0f %9.0f %9.0f %8.2f\n",
            task_name(r.task), r.audio_seconds, r.mode.c_str(), r.chunks, r.audio_tokens,
            r.prompt_tokens, r.completion_tokens, r.mel_ms + r.audio_ms, r.encode_ms, r.prefill_ms,
            r.score_ms, r.generate_ms, r.total_ms, r.peak_rss_bytes / 1e9);
        std::fflush(stdout);
      },
      [&](const TaskBenchConcurrency& x) {
        if (c.json) return;
        std::printf(
            "parallel %-24s %5.0fs: %zu at once done in %.1f s = %.2f x one alone (%.1f s); %zu "
            "decode steps of %.1f rows, %zu of them sharing a pass with %zu prompt rows; answers "
            "%s; rss %.2f GB\n",
            task_name(x.task), x.audio_seconds, x.requests, x.wall_ms / 1e3,
            x.wall_ms / x.single_wall_ms, x.single_wall_ms / 1e3, x.steps, x.mean_batch,
            x.shared_steps, x.prompt_rows, x.answers_equal ? "equal to the lone run's" : "DIFFER",
            x.peak_rss_bytes / 1e9);
        std::fflush(stdout);
      });
  // Savings: separate / shared, per (task, seconds) measured both ways.
  nlohmann::json savings = nlohmann::json::array();
  for (const TaskBenchRun& a : rep.runs) {
    if (a.mode != "shared") continue;
    for (const TaskBenchRun& b : rep.runs) {
      if (b.mode != "separate" || b.task != a.task || b.audio_seconds != a.audio_seconds) continue;
      const double time_x = b.total_ms / a.total_ms;
      const double prompt_x = double(b.prompt_tokens) / double(a.prompt_tokens);
      savings.push_back({{"task", task_name(a.task)},
                         {"audio_seconds", a.audio_seconds},
                         {"separate_over_shared_time", time_x},
                         {"separate_over_shared_prompt_tokens", prompt_x},
                         {"encoder_ms_saved", b.encode_ms - a.encode_ms},
                         {"prefill_ms_saved", b.prefill_ms - a.prefill_ms}});
      if (!c.json)
        std::printf(
            "saving   %-24s %5.0fs: separate takes %.2fx the time (%.1f s vs %.1f s), "
            "prefills %.2fx the tokens (%zu vs %zu)\n",
            task_name(a.task), a.audio_seconds, time_x, b.total_ms / 1e3, a.total_ms / 1e3,
            prompt_x, b.prompt_tokens, a.prompt_tokens);
    }
  }
  // Batched answers: sequential / shared, same run.
  nlohmann::json batching = nlohmann::json::array();
  for (const TaskBenchRun& a : rep.runs) {
    if (a.mode != "shared") continue;
    for (const TaskBenchRun& b : rep.runs) {
      if (b.mode != "sequential" || b.task != a.task || b.audio_seconds != a.audio_seconds)
        continue;
      batching.push_back({{"task", task_name(a.task)},
                          {"audio_seconds", a.audio_seconds},
                          {"sequential_over_shared_time", b.total_ms / a.total_ms},
                          {"answers_equal", a.answers_json == b.answers_json}});
      if (!c.json)
        std::printf(
            "batching %-24s %5.0fs: answers one at a time take %.2fx the time (%.1f s "
            "vs %.1f s); answers %s\n",
            task_name(a.task), a.audio_seconds, b.total_ms / a.total_ms, b.total_ms / 1e3,
            a.total_ms / 1e3, a.answers_json == b.answers_json ? "equal" : "DIFFER");
    }
  }
  nlohmann::json concurrency = nlohmann::json::array();
  for (const TaskBenchConcurrency& x : rep.concurrency)
    concurrency.push_back({{"task", task_name(x.task)},
                           {"audio_seconds", x.audio_seconds},
                           {"requests", x.requests},
                           {"wall_ms", x.wall_ms},
                           {"single_wall_ms", x.single_wall_ms},
                           {"answers_equal", x.answers_equal},
                           {"mean_batch", x.mean_batch},
                           {"steps", x.steps},
                           {"shared_steps", x.shared_steps},
                           {"prompt_rows", x.prompt_rows},
                           {"peak_rss_bytes", x.peak_rss_bytes}});
  if (c.json) {
    nlohmann::json runs = nlohmann::json::array();
    for (const TaskBenchRun& r : rep.runs) runs.push_back(run_json(r));
    const nlohmann::json j = {{"quant", rep.quant},
                              {"threads", rep.threads},
                              {"load_s", rep.load_s},
                              {"model_bytes", rep.model_bytes},
                              {"max_new_tokens", rep.max_new_tokens},
                              {"runs", runs},
                              {"savings", savings},
                              {"batching", batching},
                              {"concurrency", concurrency}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf(
        "model    %s, %.2f GB of weights, built/loaded in %.1f s; answers capped at %zu "
        "new tokens (tone min(16, cap), summary 2 x target + 8; labels batched in both modes)\n",
        rep.quant.c_str(), rep.model_bytes / 1e9, rep.load_s, rep.max_new_tokens);
  }
  return 0;
}

// `bench --kl N`: mean KL of q8/q4 next-token distributions vs the reference (bench.h quant_kl).
int kl_report(const BenchCli& c) {
  KlOptions o;
  o.model = c.model;
  o.synthetic = c.synthetic;
  o.reference = parse_quant(c.kl_reference);
  o.steps = c.kl_steps;
  o.int8_encoder = c.encoder_act == "int8";
  // bf16 against f32 too: the floor any 16-bit storage has, for scale.
  if (o.reference == Quant::f32) o.quants = {Quant::bf16, Quant::q8, Quant::q4};
  o.threads = c.threads;
  const std::vector<KlResult> rs = quant_kl(o);
  if (c.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& r : rs)
      j.push_back({{"quant", quant_name(r.quant)},
                   {"mode", r.mode},
                   {"reference", c.kl_reference},
                   {"steps", r.steps},
                   {"mean_kl_nats", r.mean_kl},
                   {"max_kl_nats", r.max_kl},
                   {"top1_agreement", r.top1_agreement},
                   {"encoder_nmse", r.encoder_nmse}});
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  for (const auto& r : rs)
    std::printf(
        "%-4s %-12s vs %-4s  %zu teacher-forced steps: mean KL %.3g nats (max %.3g), top-1 "
        "agreement %.1f%%\n",
        quant_name(r.quant), r.mode.c_str(), c.kl_reference.c_str(), r.steps, r.mean_kl, r.max_kl,
        100 * r.top1_agreement);
  for (const auto& r : rs)
    if (r.encoder_nmse >= 0)
      std::printf("%-4s encoder (%s) vs %-4s  adapter output of 10 s: NMSE %.3g\n",
                  quant_name(r.quant),
                  r.quant == Quant::q8 || r.quant == Quant::q4
                      ? (c.encoder_act == "int8" ? "int8 where AVX-512" : "bf16 GEMM")
                      : "exact",
                  c.kl_reference.c_str(), r.encoder_nmse);
  return 0;
}

nlohmann::json stat(const BenchStat& s) {
  return {{"median", s.median}, {"min", s.min}, {"max", s.max}};
}

// Options of one mode given in another would be silently ignored: refused instead.
void refuse_misplaced(const CLI::App& app, const BenchCli& c) {
  if (c.tasks.empty())
    refuse_given(app,
                 {"--tokenizer", "--audio", "--max-new-tokens", "--target-length", "--mode",
                  "--concurrency"},
                 "only applies with --task");
  if (c.kl_steps == 0) refuse_given(app, {"--kl-reference"}, "only applies with --kl");
  if (c.kl_steps > 0 && !c.tasks.empty())
    throw Error(Errc::invalid_argument, "--kl and --task are two different reports: pick one");
}

int bench(const BenchCli& c) {
  if (c.model.empty() == c.synthetic.empty())
    throw Error(Errc::invalid_argument, "bench needs exactly one of --model or --synthetic");
  if (c.kl_steps > 0) return kl_report(c);
  if (!c.tasks.empty()) return task_report(c);
  if (c.audio_seconds.size() != 1 || !(c.audio_seconds[0] >= 0.1 && c.audio_seconds[0] <= 30))
    throw Error(Errc::invalid_argument,
                "--audio-seconds: one value from 0.1 to 30 (several only with --task)");
  BenchOptions o;
  o.model = c.model;
  o.synthetic = c.synthetic;
  o.quant = parse_quant(c.quant);
  o.audio_seconds = c.audio_seconds[0];
  o.threads = c.threads;
  o.reps = c.reps;
  o.decode_tokens = c.decode_tokens;
  o.int8_prefill = c.prefill_act == "int8";
  o.int8_encoder = c.encoder_act == "int8";
  const BenchReport r = run_bench(o);
  const double dec_ratio = r.decode_tps.median / r.decode_bound_tps;
  const double pre_ratio = r.prefill_tps.median / r.prefill_bound_tps;
  const double enc_ratio = r.encoder_bound_ms / r.encoder_ms.median;
  nlohmann::json decode_batch = nlohmann::json::array();
  for (const DecodeBatchStat& d : r.decode_batch)
    decode_batch.push_back(
        {{"sessions", d.sessions}, {"step_ms", d.step_ms.median}, {"spread", stat(d.step_ms)}});
  if (c.json) {
    nlohmann::json j = {{"machine",
                         {{"read_gbps", r.read_gbps},
                          {"read_gbps_1thread", r.read_gbps_1thread},
                          {"read_gbps_weights", r.read_gbps_weights},
                          {"peak_fp32_gflops", r.peak_fp32_gflops},
                          {"peak_bf16_gflops", r.peak_bf16_gflops},
                          {"peak_int8_gops", r.peak_int8_gops},
                          {"threads", r.threads},
                          {"isa", r.isa}}},
                        {"quant", r.quant},
                        {"weight_bytes", r.weight_bytes},
                        {"model_bytes", r.model_bytes},
                        {"load_s", r.load_s},
                        {"decode",
                         {{"tokens_per_s", r.decode_tps.median},
                          {"ratio_to_bound", dec_ratio},
                          {"bound_tokens_per_s", r.decode_bound_tps},
                          {"tokens", r.decode_tokens},
                          {"spread", stat(r.decode_tps)}}},
                        {"prefill",
                         {{"tokens", r.prefill_tokens},
                          {"tokens_per_s", r.prefill_tps.median},
                          {"ratio_to_bound", pre_ratio},
                          {"bound_tokens_per_s", r.prefill_bound_tps},
                          {"peak", r.prefill_peak},
                          {"gflop_per_token", r.prefill_gflop_per_token},
                          {"bf16_activations_tokens_per_s", r.prefill_bf16_tps.median},
                          {"spread", stat(r.prefill_tps)}}},
                        {"encoder",
                         {{"audio_seconds", r.audio_seconds},
                          {"ms", r.encoder_ms.median},
                          {"ratio_to_bound", enc_ratio},
                          {"bound_ms", r.encoder_bound_ms},
                          {"peak", r.compute_peak},
                          {"gflop", r.encoder_gflop},
                          {"spread", stat(r.encoder_ms)}}},
                        {"decode_batch", decode_batch},
                        {"end_to_end_ms", r.end_to_end_ms.median},
                        {"peak_rss_bytes", r.peak_rss_bytes},
                        {"rss_to_weights", static_cast<double>(r.peak_rss_bytes) / r.model_bytes}};
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf(
      "machine   %d threads (%s): read %.1f GB/s (1 thread %.1f); peaks fp32 %.0f GFLOP/s, "
      "bf16 %.0f GFLOP/s, int8 %.0f GOP/s\n",
      r.threads, r.isa.c_str(), r.read_gbps, r.read_gbps_1thread, r.peak_fp32_gflops,
      r.peak_bf16_gflops, r.peak_int8_gops);
  std::printf(
      "model     quant %s, %.2f GB of weights, %.2f GB read per decoded token, load %.1f s\n",
      r.quant.c_str(), r.model_bytes / 1e9, r.weight_bytes / 1e9, r.load_s);
  std::printf(
      "encoder   %.0f s audio: %.0f ms (min %.0f, max %.0f); bound %.0f ms (%s) -> %.0f%%\n",
      r.audio_seconds, r.encoder_ms.median, r.encoder_ms.min, r.encoder_ms.max, r.encoder_bound_ms,
      r.compute_peak.c_str(), 100 * enc_ratio);
  std::printf(
      "prefill   %zu tokens: %.1f tokens/s (min %.1f, max %.1f); bound %.1f (%s) -> %.0f%%\n",
      r.prefill_tokens, r.prefill_tps.median, r.prefill_tps.min, r.prefill_tps.max,
      r.prefill_bound_tps, r.prefill_peak.c_str(), 100 * pre_ratio);
  if (r.prefill_bf16_tps.median > 0)
    std::printf("          bf16 activations: %.1f tokens/s (min %.1f, max %.1f): int8 is %.2fx\n",
                r.prefill_bf16_tps.median, r.prefill_bf16_tps.min, r.prefill_bf16_tps.max,
                r.prefill_tps.median / r.prefill_bf16_tps.median);
  std::printf(
      "decode    %.2f tokens/s (min %.2f, max %.2f); bound %.2f (weights read at %.1f GB/s) -> "
      "%.0f%%\n",
      r.decode_tps.median, r.decode_tps.min, r.decode_tps.max, r.decode_bound_tps,
      r.read_gbps_weights, 100 * dec_ratio);
  const double one = r.decode_batch.empty() ? 0 : r.decode_batch.front().step_ms.median;
  for (const DecodeBatchStat& d : r.decode_batch)
    std::printf("batch     %zu sessions: %.1f ms per step (min %.1f, max %.1f) = %.2f x one\n",
                d.sessions, d.step_ms.median, d.step_ms.min, d.step_ms.max,
                one > 0 ? d.step_ms.median / one : 0.0);
  std::printf("end2end   %.0f ms (encode + prefill + %zu tokens)\n", r.end_to_end_ms.median,
              r.decode_tokens);
  std::printf("memory    peak RSS %.2f GB = %.2f x weights\n", r.peak_rss_bytes / 1e9,
              static_cast<double>(r.peak_rss_bytes) / r.model_bytes);
  return 0;
}
}  // namespace

void add_bench_command(CLI::App& root, std::vector<Command>& commands) {
  auto* app = root.add_subcommand("bench", "Measure every stage against this machine's limits");
  auto c = std::make_shared<BenchCli>();
  auto* model = app->add_option("--model", c->model, "checkpoint folder or .gguf file");
  app->add_option("--synthetic", c->synthetic,
                  "random model: step-audio-2-mini | tiny; cheaper partial ones: "
                  "step-audio-2-mini-1layer (one decoder layer + encoder block), "
                  "-1layer-full-vocab, -encoder (whole encoder, one decoder layer)")
      ->excludes(model);
  app->add_option("--quant", c->quant,
                  "weights: f32 | bf16 | q8 | q4 (default q4; a .gguf file is used as stored)")
      ->check(CLI::IsMember({"f32", "bf16", "q8", "q4"}));
  app->add_option("--audio-seconds", c->audio_seconds,
                  "audio length for encoder/prefill (0.1..30); with --task, one or more lengths")
      ->expected(1, 16);
  app->add_option("--threads", c->threads, "compute threads (0 = every core)")
      ->check(thread_count());
  app->add_option("--reps", c->reps, "timed repetitions per stage (after 1 warm-up)")
      ->check(in_range(1, 100));
  app->add_option("--decode-tokens", c->decode_tokens, "tokens per decode measurement")
      ->check(in_range(1, 4096));
  app->add_flag("--json", c->json, "one JSON object (keys in docs/PERF.md)");
  app->add_option("--prefill-act", c->prefill_act,
                  "q8/q4 prefill activations: int8 (VNNI GEMM, default) | bf16")
      ->check(CLI::IsMember({"int8", "bf16"}));
  app->add_option("--encoder-act", c->encoder_act,
                  "q8/q4 encoder on AVX-512: int8 (Q8_0 weights, VNNI GEMM, default) | bf16")
      ->check(CLI::IsMember({"int8", "bf16"}));
  app->add_option(
         "--kl", c->kl_steps,
         "accuracy instead of speed: mean KL of (bf16,) q8 and q4 vs --kl-reference over this "
         "many teacher-forced decode steps")
      ->check(in_range(1, 4096));
  app->add_option("--kl-reference", c->kl_reference, "reference weights for --kl: f32 | bf16")
      ->check(CLI::IsMember({"f32", "bf16"}));
  app->add_option("--task", c->tasks,
                  "the tasks' costs instead: transcribe | summarize | analyze | "
                  "transcribe_and_summarize (one or more), shared prefix vs separate requests")
      ->expected(1, 4);
  app->add_option("--tokenizer", c->tokenizer,
                  "with --task: folder with tokenizer.json (required with --synthetic)");
  app->add_option("--audio", c->audio,
                  "with --task: a recording repeated/cut to each length (default: a synthetic "
                  "speech-like signal)");
  app->add_option("--max-new-tokens", c->max_new_tokens,
                  "with --task: cap per generated answer (transcript per chunk, reason; tone "
                  "min(16, N))")
      ->check(in_range(1, 4096));
  app->add_option("--target-length", c->target_length, "with --task: summary length in words")
      ->check(in_range(1, 1000));
  app->add_option("--language", c->language,
                  "with --task: the summary's language, ISO 639-1 or auto (default en: auto picks "
                  "the unit from the random model's text)");
  app->add_option("--mode", c->mode,
                  "with --task: both (shared + separate) | shared | sequential (answers one at a "
                  "time) | separate | all")
      ->check(CLI::IsMember({"both", "shared", "sequential", "separate", "all"}));
  app->add_option("--passes", c->passes,
                  "with --task: shared (decode rows ride in prompt passes, default) | separate "
                  "(each in its own pass: the scheduling before, for comparison)")
      ->check(CLI::IsMember({"shared", "separate"}));
  app->add_option("--concurrency", c->concurrency,
                  "with --task: also run N shared requests at once (continuous batching)")
      ->check(in_range(2, 64));
  commands.push_back({app, [c, app] {
                        refuse_misplaced(*app, *c);
                        refuse_contradicting_quant(*app, c->model, c->quant);
                        return bench(*c);
                      }});
}

}  // namespace stepaudio::cli
