// report_json (stepaudio/eval.h): one run -> the report every other form is drawn from. Rates are
// corpus rates (sum of edits / sum of reference units), the way sclite and the literature report
// them; the mean of item rates is given beside them because short items weigh as much as long ones
// there. Field meanings: docs/EVAL.md "The report".
#include <algorithm>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "stepaudio/eval.h"

namespace stepaudio::eval {
namespace {

using ordered = nlohmann::ordered_json;

ordered opt(const std::optional<double>& v) {
  return v ? ordered(*v) : ordered(nullptr);
}

ordered distribution(const std::vector<double>& v) {
  if (v.empty())
    return ordered{
        {"n", 0}, {"mean", nullptr}, {"p50", nullptr}, {"p95", nullptr}, {"max", nullptr}};
  const double sum = std::accumulate(v.begin(), v.end(), 0.0);
  return ordered{{"n", v.size()},
                 {"mean", sum / double(v.size())},
                 {"p50", opt(percentile(v, 50))},
                 {"p95", opt(percentile(v, 95))},
                 {"max", *std::max_element(v.begin(), v.end())}};
}

ordered counts_json(const EditCounts& c) {
  return ordered{{"substitutions", c.substitutions},
                 {"deletions", c.deletions},
                 {"insertions", c.insertions},
                 {"hits", c.hits},
                 {"reference_units", c.reference_units()},
                 {"hypothesis_units", c.hypothesis_units()},
                 {"rate", opt(c.rate())}};
}

// Sums of one group of scored items (a unit, or a language and unit).
struct RateSum {
  size_t items = 0;
  EditCounts counts;
  std::vector<double> item_rates;
  void add(const EditCounts& c) {
    ++items;
    counts += c;
    if (auto r = c.rate()) item_rates.push_back(*r);
  }
  ordered to_json() const {
    ordered j{{"items", items}};
    j.update(counts_json(counts));
    j["mean_item_rate"] = item_rates.empty()
                              ? ordered(nullptr)
                              : ordered(std::accumulate(item_rates.begin(), item_rates.end(), 0.0) /
                                        double(item_rates.size()));
    return j;
  }
};

// What one system's items add up to, filled while the items are written.
struct SystemSums {
  size_t ok = 0, failed = 0;
  std::map<std::string, size_t> errors_by_code;
  std::map<std::string, RateSum> by_unit;
  std::map<std::pair<std::string, std::string>, RateSum> by_language;  // (lang, unit)
  std::vector<std::pair<std::string, std::string>> emotion;            // (expected, predicted)
  std::vector<double> rouge;
  std::map<std::string, std::vector<double>> stage_ms;  // "wall" and the system's stages
  std::vector<double> rtf, cost;
  double audio_s = 0, compute_s = 0;
};

ordered item_outcome(const EvalRun& run, size_t s, size_t i, SystemSums& sums) {
  const SystemSpec& spec = run.systems[s];
  const ManifestItem& item = run.items[i];
  const Outcome& o = run.outcomes[s][i];
  const double audio_s = run.audio_seconds[i];
  ordered j{{"ok", o.ok}};
  if (!o.ok) {
    ++sums.failed;
    ++sums.errors_by_code[o.error_code];
    j["error"] = {{"code", o.error_code}, {"message", o.error_message}};
    return j;
  }
  ++sums.ok;
  if (spec.has_transcript) j["transcript"] = o.transcript;
  if (spec.has_summary) j["summary"] = o.summary;
  if (spec.has_emotion) j["emotion"] = o.emotion;
  j["wall_ms"] = o.wall_ms;
  j["attempts"] = o.attempts;
  ordered stages = ordered::object();
  for (const auto& [stage, ms] : o.stage_ms) {
    stages[stage] = ms;
    sums.stage_ms[stage].push_back(ms);
  }
  j["stage_ms"] = stages;
  sums.stage_ms["wall"].push_back(o.wall_ms);
  sums.compute_s += o.wall_ms / 1000.0;
  sums.audio_s += audio_s;
  j["rtf"] = audio_s > 0 ? ordered(o.wall_ms / 1000.0 / audio_s) : ordered(nullptr);
  if (audio_s > 0) sums.rtf.push_back(o.wall_ms / 1000.0 / audio_s);
  std::optional<double> cost;
  if (spec.price_per_hour) cost = o.wall_ms / 1000.0 * *spec.price_per_hour / 3600.0;
  if (spec.price_per_audio_minute) cost = audio_s / 60.0 * *spec.price_per_audio_minute;
  j["cost"] = opt(cost);
  if (cost) sums.cost.push_back(*cost);
  if (spec.has_transcript && item.reference) {
    const TextScore t = score_transcript(*item.reference, o.transcript, item.lang);
    ordered score{{"unit", unit_name(t.unit)},
                  {"reference_norm", t.reference_norm},
                  {"hypothesis_norm", t.hypothesis_norm}};
    score.update(counts_json(t.counts));
    j["score"] = score;
    sums.by_unit[unit_name(t.unit)].add(t.counts);
    sums.by_language[{item.lang.empty() ? "und" : item.lang, unit_name(t.unit)}].add(t.counts);
  }
  if (spec.has_summary && item.reference_summary) {
    const std::optional<double> r = rouge_l_f1(*item.reference_summary, o.summary, item.lang);
    j["rouge_l_f1"] = opt(r);
    if (r) sums.rouge.push_back(*r);
  }
  if (spec.has_emotion && item.emotion) sums.emotion.push_back({*item.emotion, o.emotion});
  return j;
}

ordered emotion_json(const SystemSums& sums) {
  if (sums.emotion.empty()) return nullptr;
  std::set<std::string> label_set;
  for (const auto& [expected, predicted] : sums.emotion) {
    label_set.insert(expected);
    label_set.insert(predicted.empty() ? "(none)" : predicted);
  }
  const std::vector<std::string> labels(label_set.begin(), label_set.end());
  auto index = [&](const std::string& l) {
    return size_t(std::find(labels.begin(), labels.end(), l.empty() ? "(none)" : l) -
                  labels.begin());
  };
  std::vector<std::vector<size_t>> matrix(labels.size(), std::vector<size_t>(labels.size(), 0));
  size_t correct = 0;
  for (const auto& [expected, predicted] : sums.emotion) {
    ++matrix[index(expected)][index(predicted)];
    correct += expected == predicted;
  }
  return ordered{{"items", sums.emotion.size()},
                 {"correct", correct},
                 {"accuracy", double(correct) / double(sums.emotion.size())},
                 {"labels", labels},
                 {"confusion", matrix}};  // rows: expected, columns: predicted
}

ordered cost_json(const SystemSpec& spec, const SystemSums& sums) {
  if (!spec.price_per_hour && !spec.price_per_audio_minute) return nullptr;
  const double total = std::accumulate(sums.cost.begin(), sums.cost.end(), 0.0);
  ordered j;
  if (spec.price_per_hour) {
    j = {{"basis", "compute time"}, {"price_per_hour", *spec.price_per_hour}};
  } else {
    j = {{"basis", "audio minutes"}, {"price_per_audio_minute", *spec.price_per_audio_minute}};
  }
  j["requests"] = sums.cost.size();
  j["total"] = total;
  j["per_request"] =
      sums.cost.empty() ? ordered(nullptr) : ordered(total / double(sums.cost.size()));
  j["per_audio_hour"] =
      sums.audio_s > 0 ? ordered(total / (sums.audio_s / 3600.0)) : ordered(nullptr);
  return j;
}

ordered system_json(const SystemSpec& spec, const SystemSums& sums) {
  ordered accuracy = ordered::object();
  for (const auto& [unit, sum] : sums.by_unit) accuracy[unit] = sum.to_json();
  ordered by_language = ordered::array();
  for (const auto& [key, sum] : sums.by_language) {
    ordered row{{"lang", key.first}, {"unit", key.second}};
    row.update(sum.to_json());
    by_language.push_back(row);
  }
  ordered latency = ordered::object();
  for (const auto& [stage, v] : sums.stage_ms) latency[stage] = distribution(v);
  ordered j{{"name", spec.name},
            {"has_transcript", spec.has_transcript},
            {"has_summary", spec.has_summary},
            {"has_emotion", spec.has_emotion},
            {"items_ok", sums.ok},
            {"items_failed", sums.failed},
            {"errors_by_code", sums.errors_by_code},
            {"accuracy", accuracy},
            {"by_language", by_language},
            {"emotion", spec.has_emotion ? emotion_json(sums) : ordered(nullptr)}};
  j["summary"] =
      sums.rouge.empty()
          ? ordered(nullptr)
          : ordered{{"items", sums.rouge.size()},
                    {"rouge_l_f1_mean", std::accumulate(sums.rouge.begin(), sums.rouge.end(), 0.0) /
                                            double(sums.rouge.size())}};
  j["latency_ms"] = latency;
  j["audio_seconds"] = sums.audio_s;
  j["compute_seconds"] = sums.compute_s;
  j["rtf"] = sums.audio_s > 0 ? ordered(sums.compute_s / sums.audio_s) : ordered(nullptr);
  j["rtf_p50"] = opt(percentile(sums.rtf, 50));
  j["cost"] = cost_json(spec, sums);
  return j;
}

// The cost table: every system with a price, and the hosted reference price over the same audio
// when no baseline ran.
ordered cost_table(const EvalRun& run, const std::vector<SystemSums>& sums) {
  ordered rows = ordered::array();
  bool baseline_ran = false;
  for (size_t s = 0; s < run.systems.size(); ++s) {
    baseline_ran |= run.systems[s].key != "ours";
    ordered c = cost_json(run.systems[s], sums[s]);
    if (c.is_null()) continue;
    ordered row{{"system", run.systems[s].key}, {"name", run.systems[s].name}};
    row.update(c);
    rows.push_back(row);
  }
  if (!baseline_ran && run.reference_price_per_audio_minute && !sums.empty()) {
    SystemSpec ref;
    ref.price_per_audio_minute = run.reference_price_per_audio_minute;
    SystemSums ref_sums;  // the audio ours processed, priced per minute
    for (size_t i = 0; i < run.items.size(); ++i) {
      if (!run.outcomes[0][i].ok) continue;
      ref_sums.audio_s += run.audio_seconds[i];
      ref_sums.cost.push_back(run.audio_seconds[i] / 60.0 * *ref.price_per_audio_minute);
    }
    ordered row{{"system", "reference"}, {"name", run.reference_price_name + " (not run)"}};
    row.update(cost_json(ref, ref_sums));
    rows.push_back(row);
  }
  return rows;
}

}  // namespace

std::string report_json(const EvalRun& run, int indent) {
  std::vector<SystemSums> sums(run.systems.size());
  ordered items = ordered::array();
  for (size_t i = 0; i < run.items.size(); ++i) {
    const ManifestItem& it = run.items[i];
    ordered j{{"index", i},
              {"line", it.line},
              {"path", it.path},
              {"lang", it.lang},
              {"reference", it.reference ? ordered(*it.reference) : ordered(nullptr)},
              {"reference_summary",
               it.reference_summary ? ordered(*it.reference_summary) : ordered(nullptr)},
              {"label", ordered::parse(it.label_json)},
              {"emotion_label", it.emotion ? ordered(*it.emotion) : ordered(nullptr)},
              {"audio_seconds", run.audio_seconds[i]}};
    for (size_t s = 0; s < run.systems.size(); ++s)
      j[run.systems[s].key] = item_outcome(run, s, i, sums[s]);
    items.push_back(j);
  }
  ordered systems = ordered::object();
  for (size_t s = 0; s < run.systems.size(); ++s)
    systems[run.systems[s].key] = system_json(run.systems[s], sums[s]);
  ordered report{{"tool", "stepaudio eval"},
                 {"report_version", 1},
                 {"created", run.created},
                 {"manifest", run.manifest},
                 {"normalization", "docs/EVAL.md#normalization (v1)"},
                 {"options", run.options},
                 {"items_total", run.items.size()},
                 {"systems", systems},
                 {"cost_table", cost_table(run, sums)},
                 {"items", items}};
  return report.dump(indent, ' ', false, ordered::error_handler_t::replace);
}

std::string summary_json(const std::string& report, int indent) {
  ordered j = ordered::parse(report);
  j.erase("items");
  return j.dump(indent, ' ', false, ordered::error_handler_t::replace);
}

}  // namespace stepaudio::eval
