// Prometheus metrics (text exposition format 0.0.4): counters, gauges and histograms with
// labels, registered once at start-up and updated lock-free-ish from any thread.
// Thread-safety: registration and updates may run on any thread; render() sees a consistent
// snapshot per series.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace stepaudio::server {

using Labels = std::vector<std::pair<std::string, std::string>>;  // in a fixed order

class Metrics {
 public:
  // Declares a family once (name, help, type "counter"|"gauge"|"histogram"); histograms take
  // their upper bounds (ascending; +Inf is implied).
  void declare_counter(const std::string& name, const std::string& help);
  void declare_gauge(const std::string& name, const std::string& help);
  void declare_histogram(const std::string& name, const std::string& help,
                         std::vector<double> bounds);
  void inc(const std::string& name, const Labels& labels = {}, double by = 1);
  void set(const std::string& name, const Labels& labels, double value);
  void observe(const std::string& name, const Labels& labels, double value);
  // The exposition text: # HELP / # TYPE per family, label values escaped (\\, \", \n),
  // histogram _bucket{le=...} (cumulative), _sum and _count.
  std::string render() const;

 private:
  struct Series {
    double value = 0;              // counter / gauge
    std::vector<uint64_t> counts;  // histogram: per bound + the +Inf bucket
    double sum = 0;
    uint64_t count = 0;
  };
  struct Family {
    std::string help, type;
    std::vector<double> bounds;
    std::map<Labels, Series> series;
  };
  // The declarations' common part; type is "counter", "gauge" or "histogram".
  void declare(const std::string& name, const std::string& help, const char* type,
               std::vector<double> bounds);
  // The series to update, created on first use. nullptr for an undeclared name or a family of
  // another type (both assert in debug builds) and for a family at its series cap. Needs mu_ held.
  Series* series_locked(const std::string& name, const char* type, const Labels& labels);
  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
};

}  // namespace stepaudio::server
