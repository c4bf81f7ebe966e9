// The rules shared by the local and the remote task runners (see task_assemble.h).
#include "pipeline/task_assemble.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <random>

#include "pipeline/guards.h"
#include "pipeline/task_runner.h"
#include "stepaudio/error.h"

namespace stepaudio::pipeline {
namespace {
std::string argmax_label(const LabelScores& s) {
  return std::max_element(s.scores.begin(), s.scores.end(),
                          [](auto& x, auto& y) { return x.second < y.second; })
      ->first;
}

std::string new_request_id() {
  static std::atomic<uint64_t> counter{0};
  std::random_device rd;
  const uint64_t x = (uint64_t(rd()) << 32) ^ rd() ^ (counter++ << 48);
  char buf[32];
  std::snprintf(buf, sizeof buf, "req_%016llx", static_cast<unsigned long long>(x));
  return buf;
}
}  // namespace

void check_task_options(const TaskOptions& options) {
  const std::string& lang = options.language;
  if (lang != "auto" && !(lang.size() == 2 && std::islower(static_cast<unsigned char>(lang[0])) &&
                          std::islower(static_cast<unsigned char>(lang[1]))))
    throw Error(
        Errc::invalid_argument,
        "language must be \"auto\" or an ISO 639-1 code such as \"en\", not \"" + lang + "\"");
  if (options.target_length == 0)
    throw Error(Errc::invalid_argument, "target_length must be at least 1");
}

Understanding new_understanding(const std::string& model_id, const TaskOptions& options) {
  Understanding u;
  u.id = new_request_id();
  u.model = model_id;
  u.task = options.task;
  const PromptSet& prompts = options.prompts ? *options.prompts : default_prompts();
  u.prompts_source = prompts.source;
  u.prompts_version = prompts.version;
  return u;
}

namespace {
std::string fill_summary(std::string q, size_t target_length, const std::string& lang) {
  q = replace_all(q, "{target_length}", std::to_string(target_length));
  q = replace_all(q, "{unit}", counts_characters(lang) ? "characters" : "words");
  return replace_all(q, "{language}", language_name(lang));
}
}  // namespace

std::string summary_question(const PromptSet& p, size_t target_length, const std::string& lang) {
  return fill_summary(p.summarize_question, target_length, lang);
}

std::string summary_text_question(const PromptSet& p, size_t target_length, const std::string& lang,
                                  const std::string& transcript) {
  return replace_all(fill_summary(p.summarize_text_question, target_length, lang), "{transcript}",
                     transcript);
}

size_t summary_token_cap(size_t target_length, const std::string& lang) {
  return counts_characters(lang) ? target_length * 3 / 2 + 8 : target_length * 2 + 8;
}

void assemble_no_speech(Understanding& u, const PromptSet& p, bool analysis) {
  std::sort(u.segments.begin(), u.segments.end(),
            [](const Segment& a, const Segment& b) { return a.start < b.start; });
  u.emotion.label = "neutral";
  for (const auto& l : p.emotion.labels) u.emotion.scores[l] = l == "neutral" ? 1.0 : 0.0;
  u.urgency.label = "low";
  for (const auto& l : p.urgency.labels) u.urgency.scores[l] = l == "low" ? 1.0 : 0.0;
  u.tone = analysis ? "silent" : "";
  u.urgency_reason = analysis ? "No speech was detected in the recording." : "";
}

void append_transcript_text(std::string& transcript, const std::string& text) {
  if (text.empty()) return;
  if (!transcript.empty() && !counts_characters(detect_language(text))) transcript += ' ';
  transcript += text;
}

void assemble_results(Understanding& u, const std::vector<ChunkAnalysis>& analyses) {
  std::sort(u.segments.begin(), u.segments.end(),
            [](const Segment& a, const Segment& b) { return a.start < b.start; });
  size_t n_tokens = 0;
  double sum_lp = 0;
  for (const Segment& s : u.segments) {
    if (s.text.empty()) continue;
    append_transcript_text(u.transcription, s.text);
    n_tokens += s.tokens;
    sum_lp += s.sum_logprob;
  }
  // Overall confidence: exp of the mean log-probability over every transcript token.
  u.confidence = n_tokens ? std::exp(sum_lp / double(n_tokens)) : 0.0;
  u.language = detect_language(u.transcription);
  if (analyses.empty()) return;
  u.emotion = combined_emotion(analyses);
  const ChunkAnalysis& urgent = analyses[most_urgent_chunk(analyses)];
  u.urgency = urgent.urgency;
  u.urgency_score = urgency_level(u.urgency);
  u.urgency_reason = urgent.reason;
  u.tone = analyses[strongest_chunk(analyses, u.emotion.label)].tone;
}

double urgency_level(const LabelScores& urgency) {
  return urgency.scores.at("medium") * 0.5 + urgency.scores.at("high");
}

// One urgent moment makes an urgent call, however calm the rest.
size_t most_urgent_chunk(const std::vector<ChunkAnalysis>& analyses) {
  size_t best = 0;
  for (size_t i = 1; i < analyses.size(); ++i)
    if (urgency_level(analyses[i].urgency) > urgency_level(analyses[best].urgency)) best = i;
  return best;
}

LabelScores combined_emotion(const std::vector<ChunkAnalysis>& analyses) {
  LabelScores e;
  if (analyses.empty()) return e;
  double wsum = 0;
  for (const auto& a : analyses) wsum += a.weight;
  for (const auto& [l, unused] : analyses[0].emotion.scores) {
    double p = 0;
    for (const auto& a : analyses) p += a.weight / wsum * a.emotion.scores.at(l);
    e.scores[l] = p;
  }
  e.label = argmax_label(e);
  return e;
}

size_t strongest_chunk(const std::vector<ChunkAnalysis>& analyses, const std::string& label) {
  size_t best = 0;
  for (size_t i = 1; i < analyses.size(); ++i)
    if (analyses[i].emotion.scores.at(label) > analyses[best].emotion.scores.at(label)) best = i;
  return best;
}

void enforce_summary(Understanding& u, size_t target_length, const std::string& summary_lang) {
  const bool chars = counts_characters(summary_lang);
  u.summary_unit = chars ? "characters" : "words";
  // Leading/trailing whitespace is not part of the answer.
  auto b = u.summary.find_first_not_of(" \n\t"), e = u.summary.find_last_not_of(" \n\t");
  u.summary = b == std::string::npos ? "" : u.summary.substr(b, e - b + 1);
  if (text_length(u.summary, chars) > target_length) {
    u.summary = truncate_text(u.summary, target_length, chars);
    u.summary_truncated = true;
  }
  u.summary_length = text_length(u.summary, chars);
  u.summary_language = detect_language(u.summary);
  u.summary_language_mismatch =
      u.summary_language != "und" && summary_lang != "und" && u.summary_language != summary_lang;
}

}  // namespace stepaudio::pipeline
