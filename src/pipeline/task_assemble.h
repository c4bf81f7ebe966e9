// What the local task runner (task_runner.h, over the engine) and the remote one (remote_tasks.cpp,
// over a ChatCompleter) share: the option checks, the summary prompts and their budgets, and the
// assembly of the chunks' answers into one Understanding (transcript, confidence, language,
// emotion, urgency, tone, the no-speech answer, summary enforcement). Keeping these in one place
// is what makes a gateway node's results follow exactly the same rules as a local node's.
// Thread-safety: pure functions over the caller's values.
#pragma once

#include <string>
#include <vector>

#include "stepaudio/tasks.h"

namespace stepaudio::pipeline {

// Emotion/urgency distributions, tone and reason of one chunk, and its weight (samples).
struct ChunkAnalysis {
  LabelScores emotion, urgency;
  std::string tone, reason;
  double weight = 0;
};

// Throws Error(invalid_argument) for a language that is not "auto" or an ISO 639-1 code, or a
// zero target_length. (The context-dependent cap on target_length needs the model: local only.)
void check_task_options(const TaskOptions& options);

// What a task asks for: the transcript (every task but analyze), a summary, the voice questions.
inline bool wants_transcript(Task t) {
  return t != Task::analyze;
}
inline bool wants_summary(Task t) {
  return t == Task::summarize || t == Task::transcribe_and_summarize;
}
inline bool wants_analysis(Task t) {
  return t == Task::analyze || t == Task::transcribe_and_summarize;
}

// The fields every result starts with (id, model, task, prompts).
Understanding new_understanding(const std::string& model_id, const TaskOptions& options);

// The summary question with its placeholders filled (the audio form, or the text form around
// `transcript`), and its token budget.
std::string summary_question(const PromptSet& p, size_t target_length, const std::string& lang);
std::string summary_text_question(const PromptSet& p, size_t target_length, const std::string& lang,
                                  const std::string& transcript);
size_t summary_token_cap(size_t target_length, const std::string& lang);

// The combination rules of assemble_results, one by one (the local runner also uses them to ask
// tone and reason of the chosen chunks only, see task_runner.h):
// the urgency level of a chunk, p(medium)/2 + p(high);
double urgency_level(const LabelScores& urgency);
// the index of the most urgent chunk (ties: the earliest);
size_t most_urgent_chunk(const std::vector<ChunkAnalysis>& analyses);
// the recording's emotion: the speech-weighted mean of the chunks' distributions;
LabelScores combined_emotion(const std::vector<ChunkAnalysis>& analyses);
// the index of the chunk where `label` is most probable (ties: the earliest): its tone is the
// recording's when `label` is the recording's emotion.
size_t strongest_chunk(const std::vector<ChunkAnalysis>& analyses, const std::string& label);

// No chunk had speech: the fixed answer instead of asking the model (it would hallucinate).
void assemble_no_speech(Understanding& u, const PromptSet& p, bool analysis);
// Adds one segment's text to a transcript: after a space unless the text counts characters
// (Chinese, Japanese, ...). assemble_results joins the segments so, and the early text summary
// (task_runner.h) its growing transcript.
void append_transcript_text(std::string& transcript, const std::string& text);
// The segments (any order) and the analyzed chunks combined over the whole recording: transcript,
// confidence (exp of the mean log-probability over every transcript token), language, emotion
// (speech-weighted mean), urgency (the most urgent chunk's, with its reason), tone (the chunk
// where the recording's emotion is strongest).
void assemble_results(Understanding& u, const std::vector<ChunkAnalysis>& analyses);
// Trims the summary, cuts it to target_length and reports its length and language.
void enforce_summary(Understanding& u, size_t target_length, const std::string& summary_lang);

}  // namespace stepaudio::pipeline
