// Understanding -> the JSON of DESIGN.md §6 (schema: docs/result.schema.json). Fields the task did
// not compute are still present (empty strings, zero scores) so clients see one shape.
#include <nlohmann/json.hpp>

#include "stepaudio/tasks.h"

namespace stepaudio {

std::string to_json(const Understanding& u, int indent) {
  using nlohmann::json;
  json segments = json::array();
  for (const Segment& s : u.segments)
    segments.push_back({{"start", s.start},
                        {"end", s.end},
                        {"text", s.text},
                        {"confidence", s.confidence},
                        {"no_speech", s.no_speech},
                        {"repetition_stopped", s.repetition_stopped}});
  json emotion_scores = json::object();
  for (const auto& [k, v] : u.emotion.scores) emotion_scores[k] = v;
  json urgency_scores = json::object();
  for (const auto& [k, v] : u.urgency.scores) urgency_scores[k] = v;
  json j = {
      {"id", u.id},
      {"model", u.model},
      {"cached", false},
      {"task", task_name(u.task)},
      {"transcription", u.transcription},
      {"summary", u.summary},
      {"confidence", u.confidence},
      {"language", u.language},
      {"no_speech", u.no_speech},
      {"emotion", {{"label", u.emotion.label}, {"scores", emotion_scores}}},
      {"tone", u.tone},
      {"urgency",
       {{"level", u.urgency.label.empty() ? "low" : u.urgency.label},
        {"score", u.urgency_score},
        {"reason", u.urgency_reason},
        {"scores", urgency_scores}}},
      {"segments", segments},
      {"duration_s", u.duration_s},
      {"stated_duration_s", u.stated_duration_s},
      {"timings_ms",
       {{"fetch", 0.0},
        {"decode", u.decode_ms},
        {"mel", u.mel_ms},
        {"encode", u.encode_ms},
        {"prefill", u.prefill_ms},
        {"generate", u.generate_ms},
        {"total", u.total_ms}}},
      {"usage",
       {{"audio_tokens", u.audio_tokens},
        {"prompt_tokens", u.prompt_tokens},
        {"completion_tokens", u.completion_tokens},
        {"prompt_tokens_without_sharing", u.prompt_tokens_unshared},
        {"cached_prompt_tokens", u.cached_prompt_tokens}}},
      {"summary_report",
       {{"length", u.summary_length},
        {"unit", u.summary_unit},
        {"language", u.summary_language},
        {"truncated", u.summary_truncated},
        {"language_mismatch", u.summary_language_mismatch},
        {"hierarchical", u.hierarchical_summary}}},
      {"truncated", u.audio_truncated},
      {"flags",
       {{"no_speech", u.no_speech},
        {"audio_truncated", u.audio_truncated},
        {"repetition_detected", u.repetition_detected},
        {"summary_truncated", u.summary_truncated},
        {"summary_language_mismatch", u.summary_language_mismatch}}},
      {"groups", u.groups},
      {"inference",
       {{"backend", u.backend},
        {"label_scoring", u.label_scoring},
        {"confidence_measured", u.confidence_measured}}},
      {"prompts", {{"source", u.prompts_source}, {"version", u.prompts_version}}},
  };
  // Invalid UTF-8 from a gibberish model must not make dump() throw.
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

}  // namespace stepaudio
