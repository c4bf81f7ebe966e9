// `stepaudio eval`: accuracy, latency and cost over a manifest of labelled recordings
// (docs/EVAL.md). Each item runs through our pipeline (the public tasks API, as `stepaudio run
// --task` does) and, with --compare, through an OpenAI-compatible transcription endpoint; the
// library (stepaudio/eval.h) scores the outcomes and writes the report. Items run one after another
// so the latencies are those of a lone request. A bad item is the item's error; the run goes on.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "commands.h"
#include "eval_baseline.h"
#include "options.h"
#include "stepaudio/audio.h"
#include "stepaudio/error.h"
#include "stepaudio/eval.h"
#include "stepaudio/tasks.h"

namespace stepaudio::cli {

namespace {
struct EvalOptions {
  std::string model, manifest, report_dir, task = "transcribe_and_summarize", quant = "bf16";
  std::string compare, compare_key, compare_model = "whisper-1", progress = "auto";
  int threads = 0;
  size_t limit = 0, max_tokens = 448, target_length = 10;
  double compare_timeout_s = 300;
  std::optional<double> price_per_hour;
  double compare_price_per_minute = 0.006;  // OpenAI whisper-1 list price, USD per audio minute
  bool json = false;
};

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

eval::Outcome run_ours(const Engine& engine, const eval::ManifestItem& item,
                       const TaskOptions& task, double* audio_s) {
  eval::Outcome o;
  const auto t0 = Clock::now();
  try {
    Understanding u = understand_file(engine, item.resolved, {}, task);
    o.wall_ms = ms_since(t0);
    o.ok = true;
    o.transcript = u.transcription;
    o.summary = u.summary;
    o.emotion = u.emotion.label;
    o.stage_ms = {{"decode", u.decode_ms},   {"mel", u.mel_ms},           {"encode", u.encode_ms},
                  {"prefill", u.prefill_ms}, {"generate", u.generate_ms}, {"total", u.total_ms}};
    *audio_s = u.duration_s;
  } catch (const Error& e) {
    o.error_code = e.code_name();
    o.error_message = e.what();
  } catch (const std::exception& e) {
    o.error_code = "internal";
    o.error_message = e.what();
  }
  return o;
}

// The recording's duration when our pipeline did not give it: decoded (streamed, nothing kept),
// else the manifest's duration_s, else 0 (the item then adds no audio time to the cost).
double audio_seconds(const eval::ManifestItem& item) {
  try {
    return audio::decode_file_stream(item.resolved, {},
                                     [](const audio::StreamInfo&, const float*, size_t) {})
        .seconds;
  } catch (const Error&) {
    return item.duration_s;
  }
}

// ISO 639-1 only: OpenAI's API takes nothing else ("yue", "wuu" are not sent).
std::string api_language(const std::string& lang) {
  std::string l = lang.substr(0, lang.find_first_of("-_"));
  if (l.size() != 2 || !std::islower(uint8_t(l[0])) || !std::islower(uint8_t(l[1]))) return "";
  return l;
}

// One line per item on stderr, or a bar redrawn in place on a terminal.
class Progress {
 public:
  Progress(const std::string& mode, size_t total)
      : bar_(mode == "on" || (mode == "auto" && isatty(STDERR_FILENO))), total_(total) {}
  void item_done(size_t i, const eval::ManifestItem& item, const std::string& what) {
    if (!bar_) {
      std::fprintf(stderr, "eval: %zu/%zu %s: %s\n", i + 1, total_, printable(item.path).c_str(),
                   printable(what).c_str());
      return;
    }
    const int width = 30, fill = int(double(i + 1) / double(total_) * width + 0.5);
    std::string name =
        item.path.size() > 40 ? "..." + item.path.substr(item.path.size() - 37) : item.path;
    std::fprintf(stderr, "\r[%-*s] %zu/%zu %-40s", width, std::string(fill, '#').c_str(), i + 1,
                 total_, name.c_str());
    if (i + 1 == total_) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }

 private:
  bool bar_;
  size_t total_;
};

std::string describe(const char* who, const eval::Outcome& o, const eval::ManifestItem& item,
                     bool scored) {
  std::string s = who;
  if (!o.ok) return s + " error [" + o.error_code + "] " + o.error_message;
  s += " " + fmt("%.2f s", o.wall_ms / 1000.0);
  if (scored && item.reference) {
    const eval::TextScore t = eval::score_transcript(*item.reference, o.transcript, item.lang);
    const auto rate = t.counts.rate();
    s += std::string(" ") + eval::unit_name(t.unit) + " " +
         (rate ? fmt("%.2f%%", 100 * *rate) : std::string("n/a"));
  }
  if (!o.emotion.empty() && item.emotion) s += " emotion " + o.emotion + " (" + *item.emotion + ")";
  return s;
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  out.close();
  if (!out) throw Error(Errc::io, "cannot write " + path.string());
}

int run_eval(const EvalOptions& o) {
  if (o.model.empty() && o.compare.empty())
    throw Error(Errc::invalid_argument,
                "give --model (our pipeline), --compare (a baseline), or both");
  // Everything that can be checked is checked before the model loads.
  std::vector<eval::ManifestItem> items = eval::read_manifest(o.manifest);
  if (o.limit && items.size() > o.limit) items.resize(o.limit);
  TaskOptions task;
  task.task = parse_task(o.task);
  task.threads = o.threads;
  task.max_transcript_tokens = o.max_tokens;
  task.target_length = o.target_length;
  const Quant quant = parse_quant(o.quant);
  std::optional<BaselineClient> baseline;
  if (!o.compare.empty()) {
    baseline.emplace(
        BaselineOptions{o.compare, o.compare_key, o.compare_model, o.compare_timeout_s, 3});
    baseline->check_reachable();
  }
  if (!o.report_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(o.report_dir, ec);
    if (ec || !std::filesystem::is_directory(o.report_dir))
      throw Error(Errc::io, "cannot create the report folder " + o.report_dir +
                                (ec ? ": " + ec.message() : std::string()));
  }

  eval::EvalRun run;
  run.manifest = o.manifest;
  run.items = items;
  run.created = utc_now();
  run.audio_seconds.assign(items.size(), 0.0);
  run.options = {{"task", o.task},
                 {"quant", o.quant},
                 {"threads", std::to_string(o.threads)},
                 {"limit", std::to_string(o.limit)},
                 {"max_tokens", std::to_string(o.max_tokens)},
                 {"compare_price_per_minute", fmt("%g", o.compare_price_per_minute)}};
  if (o.price_per_hour) run.options["price_per_hour"] = fmt("%g", *o.price_per_hour);
  std::shared_ptr<const Engine> engine;
  if (!o.model.empty()) {
    const auto t0 = Clock::now();
    engine = load_engine(o.model, {quant});
    run.options["model"] = o.model;
    run.options["load_ms"] = fmt("%.0f", ms_since(t0));
    eval::SystemSpec ours;
    ours.key = "ours";
    ours.name = "stepaudio " + engine->model_id + " " + o.quant + " " + o.task;
    ours.has_transcript = task.task != Task::analyze;
    ours.has_summary = task.task == Task::transcribe_and_summarize;
    ours.has_emotion = task.task != Task::transcribe;
    ours.price_per_hour = o.price_per_hour;
    run.systems.push_back(ours);
    run.outcomes.emplace_back(items.size());
  }
  if (baseline) {
    run.options["compare"] = o.compare;
    run.options["compare_model"] = o.compare_model;
    eval::SystemSpec b;
    b.key = "baseline";
    b.name = o.compare_model + " at " + baseline->endpoint();
    b.price_per_audio_minute = o.compare_price_per_minute;
    run.systems.push_back(b);
    run.outcomes.emplace_back(items.size());
  } else {
    run.reference_price_per_audio_minute = o.compare_price_per_minute;
    run.reference_price_name = "hosted transcription at " + fmt("$%g", o.compare_price_per_minute) +
                               " per audio minute (OpenAI whisper-1 list price)";
  }

  Progress progress(o.progress, items.size());
  int unreachable_in_a_row = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const eval::ManifestItem& item = items[i];
    std::string line;
    size_t s = 0;
    double audio_s = 0;
    if (engine) {
      run.outcomes[s][i] = run_ours(*engine, item, task, &audio_s);
      line += describe("ours", run.outcomes[s][i], item, run.systems[s].has_transcript);
      ++s;
    }
    if (audio_s <= 0) audio_s = audio_seconds(item);  // ours failed or did not run
    if (baseline) {
      eval::Outcome& b = run.outcomes[s][i];
      if (unreachable_in_a_row >= 3) {
        b.error_code = "unreachable";
        b.error_message = "not sent: the baseline was unreachable for 3 items in a row";
      } else {
        const BaselineResult r = baseline->transcribe(item.resolved, api_language(item.lang));
        unreachable_in_a_row = r.unreachable ? unreachable_in_a_row + 1 : 0;
        b.ok = r.ok;
        b.transcript = r.text;
        b.error_code = r.error_code;
        b.error_message = r.error_message;
        b.wall_ms = r.wall_ms;
        b.attempts = r.attempts;
      }
      line += std::string(line.empty() ? "" : " | ") + describe("baseline", b, item, true);
    }
    run.audio_seconds[i] = audio_s;
    progress.item_done(i, item, line);
  }

  const std::string report = eval::report_json(run);
  if (!o.report_dir.empty()) {
    const std::filesystem::path dir(o.report_dir);
    write_file(dir / "report.json", report + "\n");
    write_file(dir / "report.md", eval::report_markdown(report));
    write_file(dir / "report.html", eval::report_html(report));
    std::fprintf(stderr, "eval: report written to %s (report.json, report.md, report.html)\n",
                 o.report_dir.c_str());
  }
  if (o.json)
    std::printf("%s\n", eval::summary_json(report).c_str());
  else
    std::printf("%s", eval::report_markdown(report).c_str());

  // Every item of every system failed: the report says why, and the exit code too.
  for (const auto& outcomes : run.outcomes)
    for (const auto& out : outcomes)
      if (out.ok) return 0;
  const eval::Outcome& first = run.outcomes[0][0];
  std::fprintf(
      stderr, "stepaudio: error [%s]: %s\n", first.error_code.c_str(),
      printable("every item failed; the first: " + items[0].path + ": " + first.error_message)
          .c_str());
  return 1;
}
}  // namespace

void add_eval_command(CLI::App& root, std::vector<Command>& commands) {
  auto* app = root.add_subcommand(
      "eval", "Accuracy, latency and cost over a manifest of labelled recordings (docs/EVAL.md)");
  auto o = std::make_shared<EvalOptions>();
  app->add_option("--model", o->model, "checkpoint folder or .gguf file (our pipeline)");
  app->add_option("--manifest", o->manifest,
                  "JSON Lines: path, lang, reference, label, reference_summary per line; paths "
                  "relative to the manifest's folder")
      ->required();
  app->add_option("--report", o->report_dir, "write report.json, report.md and report.html here");
  app->add_option("--task", o->task,
                  "transcribe_and_summarize (default: transcript, summary, emotion), transcribe, "
                  "or analyze (emotion only)")
      ->check(CLI::IsMember({"transcribe", "transcribe_and_summarize", "analyze"}));
  app->add_option("--quant", o->quant, "weights: f32 | bf16 | q8 | q4 (default bf16)")
      ->check(CLI::IsMember({"f32", "bf16", "q8", "q4"}));
  app->add_option("--threads", o->threads, "compute threads (0 = physical cores)")
      ->check(thread_count());
  app->add_option("--limit", o->limit, "only the first N items")->check(in_range(1, 1 << 30));
  app->add_option("--max-tokens", o->max_tokens, "transcript tokens per 25 s chunk (default 448)")
      ->check(in_range(1, 1 << 20));
  app->add_option("--target-length", o->target_length, "summary length (as run --task)")
      ->check(in_range(1, 100000));
  app->add_option(
      "--compare", o->compare,
      "baseline: an OpenAI-compatible transcription endpoint, openai://HOST[:PORT][/v1] "
      "(plain HTTP) or https://HOST[/v1]");
  app->add_option("--compare-key", o->compare_key, "API key of the baseline (Bearer)")
      ->envname("STEPAUDIO_COMPARE_KEY");
  app->add_option("--compare-model", o->compare_model,
                  "model name sent to the baseline (default whisper-1)");
  app->add_option("--compare-timeout", o->compare_timeout_s,
                  "seconds per baseline request (default 300)")
      ->check(in_range(1, 86400));
  app->add_option("--price-per-hour", o->price_per_hour,
                  "USD per hour of the machine running our pipeline: cost = compute time x price "
                  "(no cost shown without it)")
      ->check(in_range(0, 1e6));
  app->add_option(
         "--compare-price-per-minute", o->compare_price_per_minute,
         "USD per audio minute of the baseline (default 0.006: OpenAI whisper-1 list price)")
      ->check(in_range(0, 1e6));
  app->add_flag("--json", o->json,
                "print the JSON summary (the report without its items) instead "
                "of the Markdown tables");
  app->add_option("--progress", o->progress,
                  "progress bar on stderr: auto (on a terminal), on, off")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  commands.push_back({app, [o, app] {
                        // Options that would be silently ignored are refused (as `run` does).
                        if (o->compare.empty())
                          refuse_given(*app, {"--compare-model", "--compare-timeout"},
                                       "only applies with --compare");
                        if (o->model.empty())
                          refuse_given(*app,
                                       {"--task", "--quant", "--threads", "--max-tokens",
                                        "--target-length", "--price-per-hour"},
                                       "only applies with --model (our pipeline)");
                        else
                          refuse_contradicting_quant(*app, o->model, o->quant);
                        return run_eval(*o);
                      }});
}

}  // namespace stepaudio::cli
