// The OpenAI transcription response formats (response_format json|text|verbose_json|srt|vtt) of a
// transcript with segment times. Thread-safety: free functions, reentrant.
#pragma once

#include <string>
#include <vector>

namespace stepaudio::server {

struct TimedText {
  double start = 0, end = 0;  // seconds
  std::string text;
  double avg_logprob = 0;  // verbose_json only
};

struct TranscriptDoc {
  std::string text, language;  // language: ISO 639-1 code, "" when unknown
  double duration_s = 0;
  std::vector<TimedText> segments;
};

// "00:01:02,345" (srt) / "00:01:02.345" (vtt), from seconds (rounded to the millisecond).
std::string format_timestamp(double seconds, bool srt);
std::string to_srt(const TranscriptDoc& doc);          // numbered cues, blank-line separated
std::string to_vtt(const TranscriptDoc& doc);          // "WEBVTT\n\n" + cues
std::string to_openai_json(const TranscriptDoc& doc);  // {"text": ...}
// {"task": "transcribe", "language": <English name, e.g. "english">, "duration", "text",
//  "segments": [{"id", "seek", "start", "end", "text", "tokens": [], "temperature", "avg_logprob",
//  "compression_ratio", "no_speech_prob"}]}: the shape the openai SDKs parse.
std::string to_openai_verbose_json(const TranscriptDoc& doc);

}  // namespace stepaudio::server
