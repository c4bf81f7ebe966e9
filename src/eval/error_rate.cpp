// Scoring units and edit distance (stepaudio/eval.h): CER for text written without spaces, WER for
// text written with them, a mixed rate (CJK characters and other words as units) for text that
// has both; S/D/I counts from one Levenshtein alignment; ROUGE-L of summaries; percentiles.
// docs/EVAL.md "Error rates".
#include <algorithm>
#include <cctype>
#include <cstdint>

#include "code_points.h"
#include "stepaudio/eval.h"

namespace stepaudio::eval {
namespace {

using detail::code_points;
using detail::is_letter;

std::string utf8(char32_t cp) {
  std::string s;
  detail::append_utf8(s, cp);
  return s;
}

// The unit a text calls for on its own; none for a text without any character.
std::optional<Unit> unit_of(std::string_view normalized, std::string_view lang) {
  bool cjk = false, other_letters = false, any = false;
  for (char32_t cp : code_points(normalized)) {
    if (cp == U' ') continue;
    any = true;
    if (is_cjk(cp))
      cjk = true;
    else if (is_letter(cp))
      other_letters = true;
  }
  if (cjk) return other_letters ? Unit::mer : Unit::cer;
  if (!any) return std::nullopt;
  return is_character_language(lang) ? Unit::cer : Unit::wer;
}

}  // namespace

const char* unit_name(Unit unit) {
  switch (unit) {
    case Unit::cer:
      return "cer";
    case Unit::wer:
      return "wer";
    case Unit::mer:
      return "mer";
  }
  return "wer";
}

bool is_cjk(char32_t c) {
  return (c >= 0x1100 && c <= 0x11FF) ||    // Hangul Jamo
         (c >= 0x2E80 && c <= 0x2FDF) ||    // CJK and Kangxi radicals
         (c >= 0x3005 && c <= 0x3007) ||    // 々 〆 〇
         (c >= 0x3021 && c <= 0x3029) ||    // Hangzhou numerals
         (c >= 0x3031 && c <= 0x3035) ||    // kana repeat marks
         (c >= 0x3038 && c <= 0x303C) ||    // 〸〹〺〻〼
         (c >= 0x3040 && c <= 0x30FF) ||    // Hiragana, Katakana
         (c >= 0x3100 && c <= 0x31BF) ||    // Bopomofo, Hangul compatibility Jamo, Kanbun
         (c >= 0x31F0 && c <= 0x31FF) ||    // Katakana phonetic extensions
         (c >= 0x3400 && c <= 0x4DBF) ||    // CJK extension A
         (c >= 0x4E00 && c <= 0x9FFF) ||    // CJK unified ideographs
         (c >= 0xA960 && c <= 0xA97F) ||    // Hangul Jamo extended A
         (c >= 0xAC00 && c <= 0xD7FF) ||    // Hangul syllables, Jamo extended B
         (c >= 0xF900 && c <= 0xFAFF) ||    // CJK compatibility ideographs
         (c >= 0xFF66 && c <= 0xFFDC) ||    // half-width Katakana and Hangul
         (c >= 0x1B000 && c <= 0x1B16F) ||  // kana supplement and extensions
         (c >= 0x20000 && c <= 0x3134F);    // CJK extensions B-G, compatibility supplement
}

bool is_character_language(std::string_view lang) {
  const std::string_view primary = lang.substr(0, std::min(lang.find_first_of("-_"), lang.size()));
  static constexpr std::string_view kLanguages[] = {"zh",  "ja",  "ko",  "yue", "wuu",
                                                    "cmn", "nan", "hak", "th"};
  std::string lower(primary);
  for (char& ch : lower) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  return std::find(std::begin(kLanguages), std::end(kLanguages), lower) != std::end(kLanguages);
}

Unit choose_unit(std::string_view normalized_reference, std::string_view normalized_hypothesis,
                 std::string_view lang) {
  if (auto u = unit_of(normalized_reference, lang)) return *u;
  if (auto u = unit_of(normalized_hypothesis, lang)) return *u;
  return is_character_language(lang) ? Unit::cer : Unit::wer;
}

std::vector<std::string> split_units(std::string_view normalized, Unit unit) {
  std::vector<std::string> units;
  std::string word;
  auto flush = [&] {
    if (!word.empty()) units.push_back(std::move(word));
    word.clear();
  };
  for (char32_t cp : code_points(normalized)) {
    if (cp == U' ') {
      flush();
    } else if (unit == Unit::cer || (unit == Unit::mer && is_cjk(cp))) {
      flush();
      units.push_back(utf8(cp));
    } else {
      word += utf8(cp);
    }
  }
  flush();
  return units;
}

std::optional<double> EditCounts::rate() const {
  if (reference_units() == 0) return std::nullopt;
  return double(edits()) / double(reference_units());
}

EditCounts& EditCounts::operator+=(const EditCounts& o) {
  substitutions += o.substitutions;
  deletions += o.deletions;
  insertions += o.insertions;
  hits += o.hits;
  return *this;
}

EditCounts align(const std::vector<std::string>& ref, const std::vector<std::string>& hyp) {
  // Forward dynamic programme, one row at a time; each cell carries the counts of the best path
  // that reached it, so no backtrace table (n x m) is needed for long transcripts. Paths compare
  // by (edits, substitutions): both are sums along the path, so the lexicographic minimum obeys
  // the same recurrence. Equal pairs give equal counts (D - I = n - m), so ties are harmless.
  struct Cell {
    size_t cost = 0, s = 0, d = 0, i = 0;
    bool better_than(const Cell& o) const { return cost < o.cost || (cost == o.cost && s < o.s); }
  };
  const size_t m = hyp.size();
  std::vector<Cell> prev(m + 1), cur(m + 1);
  for (size_t j = 0; j <= m; ++j) prev[j] = {j, 0, 0, j};
  for (size_t r = 1; r <= ref.size(); ++r) {
    cur[0] = {r, 0, r, 0};
    for (size_t j = 1; j <= m; ++j) {
      const bool same = ref[r - 1] == hyp[j - 1];
      Cell best = prev[j - 1];  // diagonal: hit or substitution
      best.cost += same ? 0 : 1;
      best.s += same ? 0 : 1;
      Cell del = prev[j];
      del.cost += 1;
      del.d += 1;
      if (del.better_than(best)) best = del;
      Cell ins = cur[j - 1];
      ins.cost += 1;
      ins.i += 1;
      if (ins.better_than(best)) best = ins;
      cur[j] = best;
    }
    std::swap(prev, cur);
  }
  const Cell& end = prev[m];
  EditCounts c;
  c.substitutions = end.s;
  c.deletions = end.d;
  c.insertions = end.i;
  c.hits = ref.size() - end.s - end.d;
  return c;
}

TextScore score_transcript(std::string_view reference, std::string_view hypothesis,
                           std::string_view lang) {
  TextScore t;
  t.reference_norm = normalize_text(reference);
  t.hypothesis_norm = normalize_text(hypothesis);
  t.unit = choose_unit(t.reference_norm, t.hypothesis_norm, lang);
  t.counts = align(split_units(t.reference_norm, t.unit), split_units(t.hypothesis_norm, t.unit));
  return t;
}

std::optional<double> rouge_l_f1(std::string_view reference, std::string_view hypothesis,
                                 std::string_view lang) {
  const std::string r = normalize_text(reference), h = normalize_text(hypothesis);
  const Unit unit = choose_unit(r, h, lang);
  const std::vector<std::string> ru = split_units(r, unit), hu = split_units(h, unit);
  if (ru.empty() && hu.empty()) return std::nullopt;
  if (ru.empty() || hu.empty()) return 0.0;
  std::vector<size_t> prev(hu.size() + 1, 0), cur(hu.size() + 1, 0);
  for (size_t i = 1; i <= ru.size(); ++i) {
    for (size_t j = 1; j <= hu.size(); ++j)
      cur[j] = ru[i - 1] == hu[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
    std::swap(prev, cur);
  }
  const double lcs = double(prev[hu.size()]);
  if (lcs == 0) return 0.0;
  const double p = lcs / double(hu.size()), rec = lcs / double(ru.size());
  return 2 * p * rec / (p + rec);
}

std::optional<double> percentile(std::vector<double> values, double p) {
  if (values.empty()) return std::nullopt;
  std::sort(values.begin(), values.end());
  const double h = double(values.size() - 1) * std::clamp(p, 0.0, 100.0) / 100.0;
  const size_t lo = size_t(h);
  if (lo + 1 >= values.size()) return values.back();
  return values[lo] + (h - double(lo)) * (values[lo + 1] - values[lo]);
}

}  // namespace stepaudio::eval
