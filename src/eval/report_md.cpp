// report_markdown (stepaudio/eval.h): the report's tables in Markdown, drawn from report_json so
// the two can never disagree.
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "stepaudio/eval.h"

namespace stepaudio::eval {
namespace {

using ordered = nlohmann::ordered_json;

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string cell(std::string s) {
  std::string out;
  for (char c : s) {
    if (c == '|')
      out += "\\|";
    else if (c == '\n' || c == '\r')
      out += ' ';
    else
      out += c;
  }
  return out;
}

// " text |": one table cell (appended piecewise: GCC 12 warns falsely on " " + string + " |").
std::string col(const std::string& s) {
  std::string out = " ";
  out += cell(s);
  out += " |";
  return out;
}

std::string percent(const ordered& v) {
  return v.is_number() ? fmt("%.2f%%", 100.0 * v.get<double>()) : "n/a";
}

// Three significant digits without exponent: $0.0000123, $0.0345, $1.23, $1234.56.
std::string format_money(double v) {
  if (!(v > 0)) return "$0";
  const int decimals = std::max(2, 2 - int(std::floor(std::log10(v))));
  char buf[64];
  std::snprintf(buf, sizeof buf, "$%.*f", std::min(decimals, 12), v);
  return buf;
}

std::string money(const ordered& v) {
  return v.is_number() ? format_money(v.get<double>()) : "n/a";
}

std::string seconds(const ordered& ms) {
  return ms.is_number() ? fmt("%.2f s", ms.get<double>() / 1000.0) : "n/a";
}

std::string rate_cell(const ordered& acc) {
  if (acc.is_null()) return "n/a";
  return percent(acc["rate"]) + " (S " + std::to_string(acc["substitutions"].get<size_t>()) +
         ", D " + std::to_string(acc["deletions"].get<size_t>()) + ", I " +
         std::to_string(acc["insertions"].get<size_t>()) + " of " +
         std::to_string(acc["reference_units"].get<size_t>()) + ")";
}

void summary_table(const ordered& r, std::string& md) {
  const ordered& systems = r["systems"];
  md += "| |";
  std::string rule = "|---|";
  for (const auto& [key, s] : systems.items()) {
    md += col(key + ": " + s["name"].get<std::string>());
    rule += "---|";
  }
  md += "\n" + rule + "\n";
  auto row = [&](const std::string& name, auto value) {
    md += '|';
    md += col(name);
    for (const auto& [key, s] : systems.items()) md += col(value(s));
    md += "\n";
  };
  row("items ok / failed", [](const ordered& s) {
    return std::to_string(s["items_ok"].get<size_t>()) + " / " +
           std::to_string(s["items_failed"].get<size_t>());
  });
  for (const char* unit : {"cer", "wer", "mer"}) {
    bool any = false;
    for (const auto& [key, s] : systems.items()) any |= s["accuracy"].contains(unit);
    if (!any) continue;
    row(std::string(unit == std::string("cer")   ? "CER"
                    : unit == std::string("wer") ? "WER"
                                                 : "MER (mixed)") +
            " corpus (S, D, I of N)",
        [unit](const ordered& s) {
          return s["accuracy"].contains(unit) ? rate_cell(s["accuracy"][unit]) : "n/a";
        });
  }
  row("emotion accuracy", [](const ordered& s) -> std::string {
    const ordered& e = s["emotion"];
    if (e.is_null()) return "n/a";
    return std::to_string(e["correct"].get<size_t>()) + " / " +
           std::to_string(e["items"].get<size_t>()) + " (" + percent(e["accuracy"]) + ")";
  });
  row("summary ROUGE-L F1", [](const ordered& s) -> std::string {
    return s["summary"].is_null() ? "n/a"
                                  : fmt("%.3f", s["summary"]["rouge_l_f1_mean"].get<double>());
  });
  row("latency p50 / p95 (wall)", [](const ordered& s) -> std::string {
    if (!s["latency_ms"].contains("wall")) return "n/a";
    const ordered& w = s["latency_ms"]["wall"];
    return seconds(w["p50"]) + " / " + seconds(w["p95"]);
  });
  row("real-time factor (compute / audio)", [](const ordered& s) -> std::string {
    return s["rtf"].is_number() ? fmt("%.3f", s["rtf"].get<double>()) : "n/a";
  });
  row("cost per audio hour", [](const ordered& s) -> std::string {
    return s["cost"].is_null() ? "n/a" : money(s["cost"]["per_audio_hour"]);
  });
}

void cost_table(const ordered& r, std::string& md) {
  md +=
      "\n## Cost\n\n| system | basis | price | per request | per audio hour | total |\n"
      "|---|---|---|---|---|---|\n";
  for (const ordered& c : r["cost_table"]) {
    const std::string price =
        c.contains("price_per_hour")
            ? format_money(c["price_per_hour"].get<double>()) + " / hour"
            : format_money(c["price_per_audio_minute"].get<double>()) + " / audio minute";
    md += "| " + cell(c["system"].get<std::string>() + ": " + c["name"].get<std::string>()) +
          " | " + c["basis"].get<std::string>() + " | " + price + " | " + money(c["per_request"]) +
          " | " + money(c["per_audio_hour"]) + " | " + money(c["total"]) + " |\n";
  }
  if (r["cost_table"].empty()) md += "| (no prices: give --price-per-hour) | | | | | |\n";
}

void latency_tables(const ordered& r, std::string& md) {
  for (const auto& [key, s] : r["systems"].items()) {
    md += "\n## Latency per stage: " + cell(key) +
          " (ms)\n\n| stage | n | p50 | p95 | mean | max |\n|---|---|---|---|---|---|\n";
    for (const auto& [stage, d] : s["latency_ms"].items()) {
      auto ms = [](const ordered& v) {
        return v.is_number() ? fmt("%.1f", v.get<double>()) : "n/a";
      };
      md += "| " + stage + " | " + std::to_string(d["n"].get<size_t>()) + " | " + ms(d["p50"]) +
            " | " + ms(d["p95"]) + " | " + ms(d["mean"]) + " | " + ms(d["max"]) + " |\n";
    }
  }
}

void language_table(const ordered& r, std::string& md) {
  md +=
      "\n## Error rate per language\n\n| system | lang | unit | items | S | D | I | N | rate "
      "| mean item rate |\n|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& [key, s] : r["systems"].items())
    for (const ordered& l : s["by_language"])
      md += "| " + cell(key) + " | " + cell(l["lang"].get<std::string>()) + " | " +
            l["unit"].get<std::string>() + " | " + std::to_string(l["items"].get<size_t>()) +
            " | " + std::to_string(l["substitutions"].get<size_t>()) + " | " +
            std::to_string(l["deletions"].get<size_t>()) + " | " +
            std::to_string(l["insertions"].get<size_t>()) + " | " +
            std::to_string(l["reference_units"].get<size_t>()) + " | " + percent(l["rate"]) +
            " | " + percent(l["mean_item_rate"]) + " |\n";
}

void confusion_tables(const ordered& r, std::string& md) {
  for (const auto& [key, s] : r["systems"].items()) {
    const ordered& e = s["emotion"];
    if (e.is_null()) continue;
    md += "\n## Emotion confusion: " + cell(key) +
          " (rows: expected, columns: predicted)\n\n| expected \\ predicted |";
    std::string rule = "|---|";
    for (const ordered& l : e["labels"]) {
      md += col(l.get<std::string>());
      rule += "---|";
    }
    md += "\n" + rule + "\n";
    for (size_t i = 0; i < e["labels"].size(); ++i) {
      md += '|';
      md += col(e["labels"][i].get<std::string>());
      for (const ordered& n : e["confusion"][i]) md += col(std::to_string(n.get<size_t>()));
      md += "\n";
    }
  }
}

void item_table(const ordered& r, std::string& md) {
  std::vector<std::string> keys;
  for (const auto& [key, s] : r["systems"].items()) keys.push_back(key);
  md += "\n## Items\n\n| # | path | lang | unit |";
  std::string rule = "|---|---|---|---|";
  for (const auto& k : keys) {
    md += col(k + " rate");
    md += col(k + " wall");
    rule += "---|---|";
  }
  md += " notes |\n" + rule + "---|\n";
  for (const ordered& it : r["items"]) {
    std::string unit = "", notes;
    std::string row = "|";
    row += col(std::to_string(it["index"].get<size_t>() + 1));
    row += col(it["path"].get<std::string>());
    row += col(it["lang"].get<std::string>());
    std::string cols;
    for (const auto& k : keys) {
      const ordered& o = it[k];
      if (!o["ok"].get<bool>()) {
        cols += " error | n/a |";
        notes += k + ": [" + o["error"]["code"].get<std::string>() + "] " +
                 o["error"]["message"].get<std::string>() + " ";
        continue;
      }
      if (o.contains("score")) unit = o["score"]["unit"].get<std::string>();
      cols += col(o.contains("score") ? percent(o["score"]["rate"]) : std::string("n/a"));
      cols += col(seconds(o["wall_ms"]));
      if (o.contains("emotion") && !it["emotion_label"].is_null())
        notes += k + " emotion: " + o["emotion"].get<std::string>() + " (expected " +
                 it["emotion_label"].get<std::string>() + ") ";
    }
    md += row;
    md += col(unit.empty() ? "n/a" : unit);
    md += cols;
    md += col(notes);
    md += '\n';
  }
}

}  // namespace

std::string report_markdown(const std::string& report_json) {
  const ordered r = ordered::parse(report_json);
  std::string md = "# stepaudio eval\n\n";
  md += "Manifest `" + cell(r["manifest"].get<std::string>()) + "`, " +
        std::to_string(r["items_total"].get<size_t>()) + " items, created " +
        r["created"].get<std::string>() +
        ". Rates are corpus rates (sum of edits / sum of "
        "reference units) after the normalization of docs/EVAL.md.\n\n";
  summary_table(r, md);
  cost_table(r, md);
  latency_tables(r, md);
  language_table(r, md);
  confusion_tables(r, md);
  item_table(r, md);
  return md;
}

}  // namespace stepaudio::eval
