// Accuracy, latency and cost of a speech system over a manifest of labelled recordings (the
// library behind `stepaudio eval`; rules and formulas in docs/EVAL.md).
//
//   auto items = stepaudio::eval::read_manifest("data/manifest.jsonl");
//   auto s = stepaudio::eval::score_transcript("九月十九号。", "9月19号", "zh");  // 0 edits, CER
//   stepaudio::eval::EvalRun run;  // items, the systems run, one outcome per system and item
//   std::string json = stepaudio::eval::report_json(run);
//   std::string page = stepaudio::eval::report_html(json);  // self-contained, charts drawn inline
//
// Thread-safety: every function here is reentrant and shares no mutable state; the types are
// plain values.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace stepaudio::eval {

// ---- text normalization (docs/EVAL.md "Normalization") -------------------------------------

// The normalization applied to references and hypotheses alike before scoring: invalid UTF-8
// repaired, NFKC + Unicode case folding (full-width -> half-width, "Ｈｅｌｌｏ" -> "hello"),
// Chinese numerals -> Arabic digits (chinese_numerals_to_digits), an apostrophe between two letters
// dropped ("don't" -> "dont"), a comma between two digits dropped ("1,000" -> "1000"), a period
// between two digits kept ("3.5"), every other punctuation (P*) or symbol (S*) character, control
// character and separator -> a space, format characters (Cf: zero-width joiners...) removed,
// spaces collapsed and trimmed.
std::string normalize_text(std::string_view text);

// Chinese numerals -> Arabic digits, on every maximal run of 零〇一二两三四五六七八九十百千万亿:
// leading 百/千/万/亿 are kept as they are (千万, 万一 are words, not numbers); a run of digits
// only is read digit by digit (二〇二六 -> 2026, 一 -> 1); a run with units is read as a number
// (十九 -> 19, 一百零五 -> 105, 两千 -> 2000, 三千五 -> 3500); a run that is not a well-formed
// number (三四十, 十七八: approximations) keeps its units and maps its digits one by one.
std::string chinese_numerals_to_digits(std::string_view text);

// ---- error rates ----------------------------------------------------------------------------

enum class Unit {
  cer,  // characters: every code point but spaces (Chinese, Japanese, Korean, Cantonese, Wu...)
  wer,  // words: whitespace-separated tokens (languages written with spaces)
  mer,  // mixed: each CJK character is a unit, each run of other non-space characters too
};
const char* unit_name(Unit unit);  // "cer" | "wer" | "mer"

// Han, kana, Hangul, bopomofo and their compatibility/extension blocks (docs/EVAL.md lists them).
bool is_cjk(char32_t cp);
// True for language codes written without spaces between words or scored by character: zh, ja,
// ko, yue, wuu, cmn, nan, hak, th (a region or script suffix is ignored: "zh-TW" -> zh).
bool is_character_language(std::string_view lang);

// The unit of an item, from its normalized reference: CJK characters and letters of another
// script -> mer; CJK characters only (digits allowed) -> cer; no CJK character -> cer for a
// character language, else wer. An empty reference decides by the hypothesis, then by `lang`.
Unit choose_unit(std::string_view normalized_reference, std::string_view normalized_hypothesis,
                 std::string_view lang);
std::vector<std::string> split_units(std::string_view normalized, Unit unit);

struct EditCounts {
  size_t substitutions = 0, deletions = 0, insertions = 0, hits = 0;
  size_t edits() const { return substitutions + deletions + insertions; }
  size_t reference_units() const { return substitutions + deletions + hits; }
  size_t hypothesis_units() const { return substitutions + insertions + hits; }
  // edits / reference units; none for an empty reference (the edits still count in corpus sums).
  std::optional<double> rate() const;
  EditCounts& operator+=(const EditCounts& o);
};

// Minimum edit distance (Levenshtein, unit costs) with its substitution/deletion/insertion split:
// among the alignments with the fewest edits, the one with the fewest substitutions (= the most
// hits; "a b" -> "b a" is a deletion and an insertion around one hit, not two substitutions).
// The counts are unique under this rule. Time O(n m), memory O(hypothesis length).
EditCounts align(const std::vector<std::string>& reference,
                 const std::vector<std::string>& hypothesis);

struct TextScore {
  Unit unit = Unit::wer;
  std::string reference_norm, hypothesis_norm;
  EditCounts counts;
};
// normalize_text both, choose_unit, split_units, align.
TextScore score_transcript(std::string_view reference, std::string_view hypothesis,
                           std::string_view lang);

// ROUGE-L F1 (longest common subsequence) of a summary against a reference summary, over the
// same normalization and units; none when both are empty, 0 when only one is.
std::optional<double> rouge_l_f1(std::string_view reference, std::string_view hypothesis,
                                 std::string_view lang);

// ---- statistics -----------------------------------------------------------------------------

// p-th percentile (0..100), linear interpolation between closest ranks (numpy's default):
// sorted v, h = (n - 1) * p / 100, v[floor h] + (h - floor h) * (v[floor h + 1] - v[floor h]).
// none for an empty list.
std::optional<double> percentile(std::vector<double> values, double p);

// ---- manifest -------------------------------------------------------------------------------

struct ManifestItem {
  size_t line = 0;       // 1-based line in the manifest
  std::string path;      // as written
  std::string resolved;  // relative paths are relative to the manifest's folder
  std::string lang;      // "" when absent or null
  std::string task;      // the manifest's own "task" field ("" when absent)
  std::optional<std::string> reference, reference_summary;
  std::optional<std::string> emotion;  // normalize_emotion_label of the label (see below)
  std::string label_json = "null";     // the label as written (any JSON)
  double duration_s = 0;               // the manifest's, 0 when absent
};

// One JSON object per non-blank line: "path" (required), "lang", "reference",
// "reference_summary" (strings or null), "label" (any JSON), "task", "duration_s". The emotion
// label is label.emotion when the label is an object, or the label itself when it is a string and
// the item's task is absent or "emotion". Throws Error(invalid_argument) "NAME:LINE: why" for a
// malformed line, Error(io) for an unreadable file.
std::vector<ManifestItem> parse_manifest(std::string_view text, const std::string& base_dir,
                                         const std::string& name);
std::vector<ManifestItem> read_manifest(const std::string& path);

// "Angry (愤怒)" -> "angry": the part before " (", trimmed, lower-case, with the noun forms of our
// label set mapped to it (anger -> angry, happiness/joy -> happy, sadness -> sad, fear -> fearful,
// surprise -> surprised, disgust -> disgusted, anxiety -> anxious).
std::string normalize_emotion_label(std::string_view label);

// ---- one run and its report -----------------------------------------------------------------

// One item through one system.
struct Outcome {
  bool ok = false;
  std::string error_code, error_message;     // when !ok
  std::string transcript, summary, emotion;  // emotion "" when the system gives none
  double wall_ms = 0;                        // the request, measured by the caller
  std::map<std::string, double> stage_ms;    // per stage (ours: decode, mel, encode, ...)
  int attempts = 1;                          // HTTP systems: tries including retries
};

struct SystemSpec {
  std::string key;   // "ours" | "baseline"
  std::string name;  // shown in the report
  bool has_transcript = true, has_summary = false, has_emotion = false;
  // Cost: ours = compute seconds x price_per_hour / 3600; a hosted baseline = audio minutes x
  // price_per_audio_minute. Unset prices give no cost.
  std::optional<double> price_per_hour, price_per_audio_minute;
};

struct EvalRun {
  std::string manifest;
  std::vector<ManifestItem> items;
  std::vector<double> audio_seconds;  // per item, 0 when unknown (the file could not be read)
  std::vector<SystemSpec> systems;
  std::vector<std::vector<Outcome>> outcomes;  // [system][item]
  std::map<std::string, std::string> options;  // shown in the report as given
  // A hosted price to show beside ours when no baseline ran (the cost table's reference row).
  std::optional<double> reference_price_per_audio_minute;
  std::string reference_price_name;
  std::string created;  // ISO 8601 UTC
};

// The report (schema in docs/EVAL.md): options, per system the corpus error rates (sum of edits /
// sum of reference units) per unit and per language with S/D/I counts, emotion accuracy and
// confusion matrix, ROUGE-L, latency p50/p95 per stage, real-time factor and cost; the cost
// table; every item with its normalized texts, counts and timings. indent < 0: compact.
std::string report_json(const EvalRun& run, int indent = 2);
// The report without its "items" (what `stepaudio eval --json` prints).
std::string summary_json(const std::string& report_json, int indent = 2);
// Markdown tables (summary, cost, per language, emotion confusion, items) of a report_json.
std::string report_markdown(const std::string& report_json);
// One HTML page with the report embedded as JSON and inline script/CSS that draw the charts
// (latency distribution, error rate per item, confusion matrix, cost) as SVG: no external URL.
std::string report_html(const std::string& report_json);

}  // namespace stepaudio::eval
