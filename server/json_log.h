// Structured logs: one JSON object per line on stderr ({"ts", "level", "msg", ...fields}). Lines
// never carry audio, transcripts or keys unless debug logging is on (callers check debug_logging()
// before adding such fields). Thread-safety: lines are written whole under a mutex.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace stepaudio::server {

// JSON text of j; invalid UTF-8 in strings (client bytes quoted in an error message) becomes
// U+FFFD instead of throwing. Every JSON the server writes goes through it.
std::string dump_json(const nlohmann::json& j);

void set_debug_logging(bool on);
bool debug_logging();
void log_json(const char* level, const std::string& msg,
              nlohmann::json fields = nlohmann::json::object());

}  // namespace stepaudio::server
