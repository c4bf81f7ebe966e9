// Guards against the failures users of speech LLMs report most, and the text measures they use:
// silence sent to the model (it hallucinates), repetition loops, and summaries that ignore the
// requested length or language.
// Thread-safety: free functions are reentrant; a RepetitionDetector belongs to one generation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace stepaudio::pipeline {

// Seconds of 16 kHz PCM in 25 ms frames whose RMS is above `dbfs` (0 dBFS = full-scale sine RMS of
// 1/sqrt(2) is not used: 0 dBFS here means RMS 1.0). Energy-only: cheap, and enough to tell a
// silent or near-silent recording from speech before any model runs.
double active_seconds(const float* pcm, size_t n, double dbfs);

// Detects n-gram loops in a token stream: push() returns true once the stream ends with the same
// n-gram (1 < n <= max_ngram) repeated `count` times in a row, or a single id repeated `single`
// times. O(max_ngram * count) per token.
class RepetitionDetector {
 public:
  RepetitionDetector(size_t max_ngram, size_t count, size_t single)
      : max_ngram_(max_ngram), count_(count), single_(single) {}
  bool push(int32_t id);
  const std::vector<int32_t>& tokens() const { return ids_; }
  // After push() returned true: the token count that keeps one copy of the looping n-gram.
  size_t keep() const { return keep_; }

 private:
  size_t max_ngram_, count_, single_, keep_ = 0;
  std::vector<int32_t> ids_;
};

// ISO 639-1 code of a text's dominant language from its script (zh, ja, ko, ru, ar, he, el, th,
// hi) and, for Latin script, from common function words (en, es, fr, de, it, pt, nl); "und" when
// the text has no letters. A heuristic for flags and the summary unit, not a classifier.
std::string detect_language(const std::string& text);

// Languages written without spaces between words: lengths are counted in characters.
bool counts_characters(const std::string& lang);

// Length in words (whitespace-separated) or in characters (code points that are not whitespace or
// punctuation), and the text cut to at most `max_units` of them (whole words / characters).
size_t text_length(const std::string& text, bool characters);
std::string truncate_text(const std::string& text, size_t max_units, bool characters);

}  // namespace stepaudio::pipeline
