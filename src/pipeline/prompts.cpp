// The tasks' prompts: a versioned JSON document, compiled in as the default and replaceable with
// --prompts FILE (the wording will be tuned once the real weights are in use; the code that runs
// the tasks does not change). Format: docs/TASKS.md.
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "stepaudio/error.h"
#include "stepaudio/tasks.h"

namespace stepaudio {

namespace {
// The default set: src/pipeline/prompts_default.json, embedded at build time (CMake writes it into
// generated/prompts_default.inc as a raw string literal). Version 1. The shared system prompt is
// the official ASR instruction, so the transcription branch is exactly the official ASR prompt; the
// other questions are later human turns of the same chat. Label texts are the answers scored (each
// followed by <|EOT|>: a complete answer, not a prefix).
constexpr const char* kDefaultPrompts =
#include "prompts_default.inc"
    ;

using nlohmann::json;

const json& field(const json& obj, const std::string& key, const std::string& where,
                  const std::string& source) {
  if (!obj.is_object() || !obj.contains(key))
    throw Error(Errc::invalid_argument,
                "prompts file " + source + ": missing \"" + key + "\"" + where);
  return obj.at(key);
}
std::string text_field(const json& obj, const std::string& task, const std::string& key,
                       const std::string& source) {
  const json& t = field(obj, task, "", source);
  const json& v = field(t, key, " in \"" + task + "\"", source);
  if (!v.is_string())
    throw Error(Errc::invalid_argument,
                "prompts file " + source + ": \"" + task + "." + key + "\" must be a string");
  return v.get<std::string>();
}
LabelQuestion label_question(const json& obj, const std::string& task, const std::string& source,
                             const std::vector<std::string>& required) {
  LabelQuestion q;
  q.question = text_field(obj, task, "question", source);
  const json& labels = field(obj.at(task), "labels", " in \"" + task + "\"", source);
  if (!labels.is_object())
    throw Error(Errc::invalid_argument,
                "prompts file " + source + ": \"" + task + ".labels\" must be an object");
  for (const std::string& l : required) {
    if (!labels.contains(l) || !labels.at(l).is_string() || labels.at(l).get<std::string>().empty())
      throw Error(Errc::invalid_argument, "prompts file " + source + ": \"" + task +
                                              ".labels\" lacks a non-empty answer for \"" + l +
                                              "\"");
    q.labels.push_back(l);
    q.text[l] = labels.at(l).get<std::string>();
  }
  if (labels.size() != required.size())
    throw Error(Errc::invalid_argument, "prompts file " + source + ": \"" + task +
                                            ".labels\" must hold exactly the labels of the set");
  return q;
}
}  // namespace

PromptSet parse_prompts(const std::string& text, const std::string& source) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw Error(Errc::invalid_argument, "prompts file " + source + ": malformed JSON: " + e.what());
  }
  if (!j.is_object())
    throw Error(Errc::invalid_argument, "prompts file " + source + ": not an object");
  const json& v = field(j, "version", "", source);
  if (!v.is_number_integer() || v.get<int>() != 1)
    throw Error(Errc::invalid_argument,
                "prompts file " + source + ": unsupported \"version\" (this build reads 1)");
  PromptSet p;
  p.version = 1;
  p.source = source;
  const json& sys = field(j, "system", "", source);
  if (!sys.is_string())
    throw Error(Errc::invalid_argument, "prompts file " + source + ": \"system\" must be a string");
  p.system = sys.get<std::string>();
  p.transcribe_question = text_field(j, "transcribe", "question", source);
  p.summarize_question = text_field(j, "summarize", "question", source);
  p.summarize_text_system = text_field(j, "summarize_text", "system", source);
  p.summarize_text_question = text_field(j, "summarize_text", "question", source);
  if (p.summarize_text_question.find("{transcript}") == std::string::npos)
    throw Error(Errc::invalid_argument,
                "prompts file " + source + ": \"summarize_text.question\" needs {transcript}");
  p.tone_question = text_field(j, "tone", "question", source);
  p.urgency_reason_question = text_field(j, "urgency_reason", "question", source);
  p.emotion = label_question(
      j, "emotion", source,
      {"neutral", "happy", "sad", "angry", "fearful", "surprised", "disgusted", "anxious"});
  p.urgency = label_question(j, "urgency", source, {"low", "medium", "high"});
  return p;
}

const PromptSet& default_prompts() {
  static const PromptSet p = parse_prompts(kDefaultPrompts, "built-in");
  return p;
}

PromptSet load_prompts(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(Errc::io, "cannot read prompts file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_prompts(ss.str(), path);
}

}  // namespace stepaudio
