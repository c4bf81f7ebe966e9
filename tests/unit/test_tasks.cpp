// Pieces of the tasks pipeline without a model: the guards (energy check, repetition detector,
// language and length measures) and the prompts file parser.
#include <gtest/gtest.h>

#include <cmath>

#include "pipeline/guards.h"
#include "stepaudio/error.h"
#include "stepaudio/tasks.h"

using namespace stepaudio;
using namespace stepaudio::pipeline;

TEST(Guards, ActiveSecondsSeparatesSilenceFromSpeechLevels) {
  std::vector<float> x(16000 * 2, 0.0f);
  EXPECT_EQ(active_seconds(x.data(), x.size(), -45), 0.0);
  for (size_t i = 16000; i < x.size(); ++i) x[i] = 0.1f * std::sin(0.05f * float(i));  // -23 dBFS
  EXPECT_NEAR(active_seconds(x.data(), x.size(), -45), 1.0, 0.03);
}

TEST(Guards, RepetitionDetector) {
  RepetitionDetector d(8, 4, 12);
  // "a b c" three times is fine, the fourth completes the loop.
  std::vector<int32_t> s = {9, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2};
  for (int32_t id : s) EXPECT_FALSE(d.push(id));
  EXPECT_TRUE(d.push(3));
  EXPECT_EQ(d.keep(), 4u);  // "9 1 2 3": one copy of the loop kept
  RepetitionDetector single(8, 4, 12);
  for (int i = 0; i < 11; ++i) EXPECT_FALSE(single.push(7)) << i;  // runs shorter than 12 pass
  EXPECT_TRUE(single.push(7));
  EXPECT_EQ(single.keep(), 1u);
  RepetitionDetector varied(8, 4, 12);
  for (int i = 0; i < 200; ++i) EXPECT_FALSE(varied.push(i % 37 + (i / 37) * 3));
}

TEST(Guards, LanguageAndLength) {
  EXPECT_EQ(detect_language("今天天气很好，我们去公园吧。"), "zh");
  EXPECT_EQ(detect_language("The meeting is moved to Friday and it is not optional."), "en");
  EXPECT_EQ(detect_language("Le rendez-vous est pour vendredi et je ne peux pas venir."), "fr");
  EXPECT_EQ(detect_language("これは日本語の文です。"), "ja");
  EXPECT_EQ(detect_language("12345 ..."), "und");
  EXPECT_TRUE(counts_characters("zh"));
  EXPECT_FALSE(counts_characters("en"));
  EXPECT_EQ(text_length("one two  three\nfour", false), 4u);
  EXPECT_EQ(text_length("你好，世界。", true), 4u);  // punctuation is not counted
  EXPECT_EQ(truncate_text("one two three four", 2, false), "one two");
  EXPECT_EQ(truncate_text("你好，世界。", 3, true), "你好，世");
  EXPECT_EQ(truncate_text("short", 5, false), "short");
}

TEST(Prompts, DefaultIsValidAndComplete) {
  const PromptSet& p = default_prompts();
  EXPECT_EQ(p.version, 1);
  EXPECT_EQ(p.system, kAsrSystemPrompt);  // transcription branch = the official ASR prompt
  EXPECT_EQ(p.emotion.labels.size(), 8u);
  EXPECT_EQ(p.urgency.labels, (std::vector<std::string>{"low", "medium", "high"}));
}

TEST(Prompts, BadFilesGiveClearErrors) {
  auto message = [](const std::string& json) {
    try {
      parse_prompts(json, "p.json");
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::invalid_argument);
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("{oops").find("malformed JSON"), std::string::npos);
  EXPECT_NE(message("{\"version\": 2}").find("version"), std::string::npos);
  EXPECT_NE(message("{\"version\": 1, \"system\": \"s\"}").find("\"transcribe\""),
            std::string::npos);
  EXPECT_THROW(load_prompts("/nonexistent/prompts.json"), Error);
}

TEST(Tasks, ParseTask) {
  EXPECT_EQ(parse_task("analyze"), Task::analyze);
  EXPECT_STREQ(task_name(Task::transcribe_and_summarize), "transcribe_and_summarize");
  EXPECT_THROW(parse_task("translate"), Error);
}
