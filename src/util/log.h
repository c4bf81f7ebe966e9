// Minimal leveled logging to stderr. The level comes from STEPAUDIO_LOG (debug|info|warn|error|off,
// default warn) or set_log_level(). Thread-safe: each line is written with one fwrite.
#pragma once

#include <cstdarg>

namespace stepaudio::util {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

void set_log_level(LogLevel level);
LogLevel log_level();
void log_printf(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace stepaudio::util

#define SA_LOG(level, ...)                                                           \
  do {                                                                               \
    if (static_cast<int>(level) >= static_cast<int>(::stepaudio::util::log_level())) \
      ::stepaudio::util::log_printf(level, __VA_ARGS__);                             \
  } while (0)
#define SA_DEBUG(...) SA_LOG(::stepaudio::util::LogLevel::debug, __VA_ARGS__)
#define SA_INFO(...) SA_LOG(::stepaudio::util::LogLevel::info, __VA_ARGS__)
#define SA_WARN(...) SA_LOG(::stepaudio::util::LogLevel::warn, __VA_ARGS__)
