#include "json_log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>

namespace stepaudio::server {

namespace {
std::atomic<bool> g_debug{false};
std::mutex g_mu;
}  // namespace

std::string dump_json(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void set_debug_logging(bool on) {
  g_debug = on;
}
bool debug_logging() {
  return g_debug;
}

void log_json(const char* level, const std::string& msg, nlohmann::json fields) {
  if (std::string(level) == "debug" && !g_debug) return;
  using namespace std::chrono;
  nlohmann::json line = {{"ts", duration<double>(system_clock::now().time_since_epoch()).count()},
                         {"level", level},
                         {"msg", msg}};
  for (auto& [k, v] : fields.items()) line[k] = v;
  const std::string text = dump_json(line) + "\n";
  std::lock_guard lock(g_mu);
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
}

}  // namespace stepaudio::server
