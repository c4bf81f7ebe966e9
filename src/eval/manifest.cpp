// The eval manifest (stepaudio/eval.h): JSON Lines, one recording per line. Every line is checked
// before anything runs, and an error names the file and line, so a typo does not cost a long run.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "stepaudio/error.h"
#include "stepaudio/eval.h"

namespace stepaudio::eval {
namespace {

using nlohmann::json;

std::string trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return "";
  const size_t e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

// A string or null field; anything else is an error naming the field.
std::optional<std::string> optional_string(const json& j, const char* key,
                                           const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_string())
    throw Error(Errc::invalid_argument,
                where + ": \"" + key + "\" must be a string or null, not " + it->type_name());
  return it->get<std::string>();
}

}  // namespace

std::string normalize_emotion_label(std::string_view label) {
  std::string s(label.substr(0, label.find(" (")));
  s = trim(s);
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  static const std::pair<const char*, const char*> kNouns[] = {
      {"anger", "angry"},       {"happiness", "happy"}, {"joy", "happy"},
      {"sadness", "sad"},       {"fear", "fearful"},    {"surprise", "surprised"},
      {"disgust", "disgusted"}, {"anxiety", "anxious"},
  };
  for (const auto& [noun, label_name] : kNouns)
    if (s == noun) return label_name;
  return s;
}

std::vector<ManifestItem> parse_manifest(std::string_view text, const std::string& base_dir,
                                         const std::string& name) {
  std::vector<ManifestItem> items;
  size_t line_no = 0, pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string line = trim(text.substr(pos, end - pos));
    pos = end + 1;
    ++line_no;
    if (line.empty()) continue;
    const std::string where = name + ":" + std::to_string(line_no);
    json j;
    try {
      j = json::parse(line);
    } catch (const json::parse_error& e) {
      throw Error(Errc::invalid_argument,
                  where + ": not valid JSON (byte " + std::to_string(e.byte) + ")");
    }
    if (!j.is_object())
      throw Error(Errc::invalid_argument,
                  where + ": each line must be a JSON object, not " + std::string(j.type_name()));
    ManifestItem item;
    item.line = line_no;
    const auto path = optional_string(j, "path", where);
    if (!path || path->empty())
      throw Error(Errc::invalid_argument, where + ": \"path\" (the recording) is missing");
    item.path = *path;
    const std::filesystem::path p(item.path);
    item.resolved = p.is_absolute() ? p.string() : (std::filesystem::path(base_dir) / p).string();
    item.lang = optional_string(j, "lang", where).value_or("");
    item.task = optional_string(j, "task", where).value_or("");
    item.reference = optional_string(j, "reference", where);
    item.reference_summary = optional_string(j, "reference_summary", where);
    if (auto it = j.find("duration_s"); it != j.end() && !it->is_null()) {
      if (!it->is_number() || it->get<double>() < 0)
        throw Error(Errc::invalid_argument, where + ": \"duration_s\" must be a number >= 0");
      item.duration_s = it->get<double>();
    }
    if (auto it = j.find("label"); it != j.end()) {
      item.label_json = it->dump(-1, ' ', false, json::error_handler_t::replace);
      if (it->is_object()) {
        if (auto e = it->find("emotion"); e != it->end() && !e->is_null()) {
          if (!e->is_string())
            throw Error(Errc::invalid_argument, where + ": \"label.emotion\" must be a string");
          item.emotion = normalize_emotion_label(e->get<std::string>());
        }
      } else if (it->is_string() && (item.task.empty() || item.task == "emotion")) {
        item.emotion = normalize_emotion_label(it->get<std::string>());
      } else if (!it->is_null() && !it->is_string()) {
        throw Error(Errc::invalid_argument,
                    where + ": \"label\" must be a string, an object or null");
      }
      if (item.emotion && item.emotion->empty()) item.emotion.reset();
    }
    items.push_back(std::move(item));
  }
  if (items.empty()) throw Error(Errc::invalid_argument, name + ": no items");
  return items;
}

std::vector<ManifestItem> read_manifest(const std::string& path) {
  std::error_code ec;
  std::ifstream in(path, std::ios::binary);
  if (!std::filesystem::is_regular_file(path, ec) || !in)
    throw Error(Errc::io, "cannot read the manifest " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(Errc::io, "cannot read the manifest " + path);
  const std::filesystem::path p(path);
  return parse_manifest(ss.str(), p.parent_path().empty() ? "." : p.parent_path().string(), path);
}

}  // namespace stepaudio::eval
