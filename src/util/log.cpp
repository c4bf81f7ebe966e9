#include "util/log.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace stepaudio::util {
namespace {

LogLevel level_from_env() {
  const char* env = std::getenv("STEPAUDIO_LOG");
  if (!env) return LogLevel::warn;
  if (!std::strcmp(env, "debug")) return LogLevel::debug;
  if (!std::strcmp(env, "info")) return LogLevel::info;
  if (!std::strcmp(env, "error")) return LogLevel::error;
  if (!std::strcmp(env, "off")) return LogLevel::off;
  return LogLevel::warn;
}

std::atomic<LogLevel>& level_ref() {
  static std::atomic<LogLevel> level{level_from_env()};
  return level;
}

}  // namespace

void set_log_level(LogLevel level) {
  level_ref().store(level);
}
LogLevel log_level() {
  return level_ref().load(std::memory_order_relaxed);
}

void log_printf(LogLevel level, const char* fmt, ...) {
  static const char* names[] = {"debug", "info", "warn", "error", "off"};
  char buf[2048];
  int n = std::snprintf(buf, sizeof buf, "stepaudio %s: ", names[static_cast<int>(level)]);
  va_list args;
  va_start(args, fmt);
  int m = std::vsnprintf(buf + n, sizeof buf - n - 1, fmt, args);
  va_end(args);
  size_t len = static_cast<size_t>(n) + (m < 0 ? 0 : static_cast<size_t>(m));
  if (len > sizeof buf - 2) len = sizeof buf - 2;
  buf[len++] = '\n';
  std::fwrite(buf, 1, len, stderr);
}

}  // namespace stepaudio::util
