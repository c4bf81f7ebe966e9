// Prometheus text exposition format 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/).
//
// Boundedness: every series is kept until the process exits, so the set of label values must be a
// fixed vocabulary chosen by the server (route templates, status codes, task names), never taken
// from user input (paths, model names, API keys): one series per distinct value would let a client
// grow memory and the scrape without bound. As a last line of defence a family holds at most
// kMaxSeries series; updates to further ones are dropped.
//
// Misuse (an undeclared name, the wrong type, a negative counter increment) is a programming error:
// it asserts in debug builds and is ignored in release builds, where a wrong metric must not take
// the service down.
#include "metrics.h"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cmath>
#include <string_view>

namespace stepaudio::server {
namespace {

constexpr size_t kMaxSeries = 10000;

// Metric (allow_colon) and label names; used only in assertions.
[[maybe_unused]] bool valid_name(const std::string& name, bool allow_colon) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  return std::all_of(name.begin(), name.end(), [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           (allow_colon && c == ':');
  });
}

// Prometheus parses sample values and le labels with Go's strconv.ParseFloat. Integral values are
// printed without exponent or fraction (counts read naturally: 42, not 4.2e+01); the rest in the
// shortest form that reads back as the same double, which is exact like %.17g but keeps
// le="0.1" instead of le="0.10000000000000001".
std::string format_number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::trunc(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<int64_t>(v));
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, res.ptr);
}

// Label values escape \\, \" and newline; HELP text escapes only \\ and newline.
std::string escape(std::string_view s, bool quote) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quote) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

// `{a="x",b="y"}` (with an extra le="..." for histogram buckets); "" when there are no labels.
std::string label_text(const Labels& labels, const std::string* le = nullptr) {
  if (labels.empty() && !le) return "";
  std::string out = "{";
  for (const auto& [k, v] : labels) {
    if (out.size() > 1) out += ',';
    out += k + "=\"" + escape(v, true) + '"';
  }
  if (le) out += std::string(out.size() > 1 ? "," : "") + "le=\"" + *le + '"';
  return out + "}";
}

}  // namespace

void Metrics::declare_counter(const std::string& name, const std::string& help) {
  declare(name, help, "counter", {});
}

void Metrics::declare_gauge(const std::string& name, const std::string& help) {
  declare(name, help, "gauge", {});
}

void Metrics::declare_histogram(const std::string& name, const std::string& help,
                                std::vector<double> bounds) {
  assert(std::is_sorted(bounds.begin(), bounds.end()) && "histogram bounds must ascend");
  // Release builds tolerate sloppy bounds: sorted, deduplicated, without NaN or the implied +Inf.
  std::erase_if(bounds, [](double b) { return std::isnan(b) || b == INFINITY; });
  std::sort(bounds.begin(), bounds.end());
  bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
  declare(name, help, "histogram", std::move(bounds));
}

void Metrics::declare(const std::string& name, const std::string& help, const char* type,
                      std::vector<double> bounds) {
  assert(valid_name(name, true) && "invalid metric name");
  std::lock_guard lock(mu_);
  auto [it, inserted] = families_.try_emplace(name);
  assert(inserted && "metric declared twice");
  if (!inserted) return;
  it->second.help = help;
  it->second.type = type;
  it->second.bounds = std::move(bounds);
}

Metrics::Series* Metrics::series_locked(const std::string& name, const char* type,
                                        const Labels& labels) {
  auto f = families_.find(name);
  assert(f != families_.end() && "metric not declared");
  if (f == families_.end()) return nullptr;
  Family& family = f->second;
  assert(family.type == type && "metric updated as the wrong type");
  if (family.type != type) return nullptr;
  auto s = family.series.find(labels);
  if (s != family.series.end()) return &s->second;
  if (family.series.size() >= kMaxSeries) return nullptr;
  assert(
      std::all_of(labels.begin(), labels.end(),
                  [](const auto& kv) { return valid_name(kv.first, false) && kv.first != "le"; }) &&
      "invalid label name");
  Series& created = family.series[labels];
  created.counts.assign(family.type == "histogram" ? family.bounds.size() + 1 : 0, 0);
  return &created;
}

void Metrics::inc(const std::string& name, const Labels& labels, double by) {
  std::lock_guard lock(mu_);
  // inc also serves gauges (in-flight requests go up and down); counters only go up.
  auto f = families_.find(name);
  const char* type = f != families_.end() && f->second.type == "gauge" ? "gauge" : "counter";
  assert(!(type == std::string_view("counter") && by < 0) && "counter decremented");
  if (type == std::string_view("counter") && by < 0) return;
  if (Series* s = series_locked(name, type, labels)) s->value += by;
}

void Metrics::set(const std::string& name, const Labels& labels, double value) {
  std::lock_guard lock(mu_);
  if (Series* s = series_locked(name, "gauge", labels)) s->value = value;
}

void Metrics::observe(const std::string& name, const Labels& labels, double value) {
  std::lock_guard lock(mu_);
  Series* s = series_locked(name, "histogram", labels);
  if (!s) return;
  const auto& bounds = families_.at(name).bounds;
  // Bucket i counts values <= bounds[i]; NaN and values above the last bound go to +Inf.
  size_t i = std::isnan(value)
                 ? bounds.size()
                 : std::lower_bound(bounds.begin(), bounds.end(), value) - bounds.begin();
  ++s->counts[i];
  s->sum += value;
  ++s->count;
}

std::string Metrics::render() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& [name, family] : families_) {  // std::map: sorted by name
    out += "# HELP " + name + ' ' + escape(family.help, false) + '\n';
    out += "# TYPE " + name + ' ' + family.type + '\n';
    for (const auto& [labels, s] : family.series) {
      if (family.type != "histogram") {
        out += name + label_text(labels) + ' ' + format_number(s.value) + '\n';
        continue;
      }
      uint64_t cumulative = 0;
      for (size_t i = 0; i < s.counts.size(); ++i) {
        cumulative += s.counts[i];
        std::string le = i < family.bounds.size() ? format_number(family.bounds[i]) : "+Inf";
        out += name + "_bucket" + label_text(labels, &le) + ' ' + std::to_string(cumulative) + '\n';
      }
      out += name + "_sum" + label_text(labels) + ' ' + format_number(s.sum) + '\n';
      out += name + "_count" + label_text(labels) + ' ' + std::to_string(s.count) + '\n';
    }
  }
  return out;
}

}  // namespace stepaudio::server
