// The OpenAI transcription response formats, shaped like openai-whisper's writers (WriteSRT,
// WriteVTT) and the API's JSON so that the SDKs and subtitle players that read those read ours.
#include "transcript_formats.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <string_view>

#include <nlohmann/json.hpp>

namespace stepaudio::server {
namespace {

using nlohmann::json;

// Model output may hold invalid UTF-8 (a byte-level token cut mid-character); json::dump would
// throw on it, so it becomes U+FFFD instead.
std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Cue text: one cue must stay one cue. A blank line would end the cue early and "-->" would be
// read as a timing line, so empty lines are dropped and every "-->" becomes "->" (also inside
// "--->", which one replacement pass would turn back into "-->"). CR and CRLF count as newlines.
// VTT also escapes '&' and '<', which would otherwise start an entity or a tag.
std::string cue_text(std::string_view text, bool vtt) {
  std::string out, line;
  auto flush = [&] {
    size_t b = line.find_first_not_of(" \t"), e = line.find_last_not_of(" \t");
    if (b != std::string::npos) {
      if (!out.empty()) out += '\n';
      out.append(line, b, e - b + 1);
    }
    line.clear();
  };
  for (char c : text) {
    if (c == '\n' || c == '\r') {
      flush();
    } else if (c == '>' && line.ends_with("--")) {
      while (line.ends_with("--")) line.pop_back();
      line += '>';
    } else if (vtt && c == '&') {
      line += "&amp;";
    } else if (vtt && c == '<') {
      line += "&lt;";
    } else {
      line += c;
    }
  }
  flush();
  return out;
}

// The cues of a document: its segments, or one cue over the whole duration when the transcript
// came without segment times (a subtitle file with no cues would lose the text).
std::vector<TimedText> cues(const TranscriptDoc& doc) {
  if (!doc.segments.empty() || doc.text.empty()) return doc.segments;
  return {TimedText{0, doc.duration_s, doc.text, 0}};
}

std::string to_cues(const TranscriptDoc& doc, bool srt) {
  std::string out = srt ? "" : "WEBVTT\n\n";
  int number = 0;
  for (const TimedText& seg : cues(doc)) {
    std::string text = cue_text(seg.text, !srt);
    if (text.empty()) continue;  // an empty cue is noise to a player, and some reject it
    if (srt) out += std::to_string(++number) + '\n';
    out += format_timestamp(seg.start, srt) + " --> " +
           format_timestamp(std::max(seg.start, seg.end), srt) + '\n' + text + "\n\n";
  }
  return out;
}

// The API reports the language by its English name, as openai-whisper's LANGUAGES table does.
std::string language_name(const std::string& code) {
  if (code.empty()) return "unknown";
  std::string primary;  // "zh-CN" / "pt_BR" -> "zh" / "pt"
  for (char c : code) {
    if (c == '-' || c == '_') break;
    primary += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  static constexpr std::pair<std::string_view, const char*> kNames[] = {
      {"en", "english"},    {"zh", "chinese"}, {"ja", "japanese"}, {"ko", "korean"},
      {"fr", "french"},     {"de", "german"},  {"es", "spanish"},  {"it", "italian"},
      {"pt", "portuguese"}, {"ru", "russian"}, {"ar", "arabic"},   {"nl", "dutch"},
      {"th", "thai"},       {"hi", "hindi"},   {"he", "hebrew"},   {"el", "greek"}};
  for (const auto& [c, name] : kNames)
    if (primary == c) return name;
  return code;
}

}  // namespace

std::string format_timestamp(double seconds, bool srt) {
  // Rounded to the millisecond once, then split, so 2.9996 s reads 00:00:03,000 (not
  // 00:00:02,1000). Negative and NaN times clamp to 0; absurd ones to 10^12 s so the integer cannot
  // overflow.
  double clamped = seconds > 0 ? std::min(seconds, 1e12) : 0.0;
  long long ms = std::llround(clamped * 1000);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%02lld:%02lld:%02lld%c%03lld", ms / 3600000, ms / 60000 % 60,
                ms / 1000 % 60, srt ? ',' : '.', ms % 1000);
  return buf;
}

std::string to_srt(const TranscriptDoc& doc) {
  return to_cues(doc, true);
}

std::string to_vtt(const TranscriptDoc& doc) {
  return to_cues(doc, false);
}

std::string to_openai_json(const TranscriptDoc& doc) {
  return dump(json{{"text", doc.text}});
}

std::string to_openai_verbose_json(const TranscriptDoc& doc) {
  json segments = json::array();
  for (size_t i = 0; i < doc.segments.size(); ++i) {
    const TimedText& seg = doc.segments[i];
    // We decode without temperature fallback and compute neither compression ratio nor a
    // no-speech probability; these constants are what the SDKs' types require to be present.
    segments.push_back({{"id", i},
                        {"seek", 0},
                        {"start", seg.start},
                        {"end", seg.end},
                        {"text", seg.text},
                        {"tokens", json::array()},
                        {"temperature", 0.0},
                        {"avg_logprob", seg.avg_logprob},
                        {"compression_ratio", 1.0},
                        {"no_speech_prob", 0.0}});
  }
  return dump(json{{"task", "transcribe"},
                   {"language", language_name(doc.language)},
                   {"duration", doc.duration_s},
                   {"text", doc.text},
                   {"segments", std::move(segments)}});
}

}  // namespace stepaudio::server
