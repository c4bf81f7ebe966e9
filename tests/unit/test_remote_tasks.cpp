// The task pipeline over a ChatCompleter (stepaudio/remote.h) with a scripted completer, no HTTP:
// what goes out per chunk (the prompts), silent chunks never sent, the repetition guard on streamed
// tokens, first-token label scoring and its one-hot fallback, the chunks' answers combined and a
// multi-chunk summary written from the transcript text.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <string>
#include <vector>

#include "stepaudio/error.h"
#include "stepaudio/remote.h"

using namespace stepaudio;

namespace {

// 16 kHz "speech": a 200 Hz tone at -14 dBFS, `silent` seconds of zeros in the middle.
audio::DecodedAudio recording(double seconds, double silent_from = -1, double silent_to = -1) {
  audio::DecodedAudio d;
  d.sample_rate = 16000;
  d.samples.resize(size_t(seconds * 16000));
  for (size_t i = 0; i < d.samples.size(); ++i) {
    const double t = double(i) / 16000;
    d.samples[i] =
        t >= silent_from && t < silent_to ? 0.0f : float(0.2 * std::sin(2 * M_PI * 200 * t));
  }
  return d;
}

class ScriptedCompleter : public ChatCompleter {
 public:
  bool logprobs = true;
  std::vector<std::string> transcript_tokens = {"Hel", "lo", " there"};
  mutable std::mutex mu;
  mutable std::vector<std::vector<ChatMessage>> requests;

  std::string model_id() const override { return "scripted"; }
  ChatResult complete(const std::vector<ChatMessage>& m, const ChatOptions& o,
                      const ChatDeltaFn& on_delta, const std::atomic<bool>*,
                      const std::atomic<bool>* stop) const override {
    {
      std::lock_guard lk(mu);
      requests.push_back(m);
    }
    EXPECT_EQ(o.sampling.temperature, 0.0f);  // greedy, as the local tasks
    EXPECT_GE(m.size(), 2u);
    EXPECT_EQ(m[0].role, "system");
    ChatResult r;
    const std::string last = m.back().parts.at(0).text;
    std::vector<std::string> tokens;
    if (m[1].parts.at(0).kind == ChatPart::Kind::text) {
      tokens = {"text", " summary"};  // a summary of the transcript text
    } else if (m.size() == 2) {
      tokens = transcript_tokens;  // the transcript: system + audio, nothing asked
    } else if (o.max_new_tokens == 1) {
      tokens = {last.find("urgent") != std::string::npos ? "hi" : "sad"};
    } else {
      tokens = {"calm", " voice"};
    }
    for (const std::string& t : tokens) {
      if (stop && stop->load()) break;
      ChatDelta d;
      d.text = t;
      if (logprobs && o.logprobs) {
        ChatTokenLogprob lp;
        lp.bytes = lp.text = t;
        lp.logprob = -0.5;
        if (o.top_logprobs)
          lp.top = {{-1, t, t, -0.5}, {-1, "low", "low", -1.5}, {-1, "z", "z", -3}};
        d.logprobs.push_back(lp);
      }
      r.text += d.text;
      r.logprobs.insert(r.logprobs.end(), d.logprobs.begin(), d.logprobs.end());
      if (on_delta) on_delta(d);
    }
    r.finish_reason = "stop";
    return r;
  }
};

TEST(RemoteTasks, OneChunkPromptsScoresAndAudioSummary) {
  ScriptedCompleter c;
  TaskOptions o;
  std::vector<std::string> streamed;
  const Understanding u = understand(c, recording(4), o, [&](const TaskProgress& p) {
    if (!p.text_delta.empty()) streamed.push_back(p.text_delta);
  });
  EXPECT_EQ(u.backend, "remote");
  EXPECT_EQ(u.model, "scripted");
  EXPECT_EQ(u.transcription, "Hello there");
  EXPECT_EQ(streamed, (std::vector<std::string>{"Hel", "lo", " there"}));
  EXPECT_NEAR(u.confidence, std::exp(-0.5), 1e-12);
  EXPECT_EQ(u.label_scoring, "first_token");
  EXPECT_EQ(u.emotion.label, "sad");
  // "sad" -0.5, the others at the floor -3 ("low" is no emotion's first token).
  const double z = std::exp(-0.5) + 7 * std::exp(-3.0);
  EXPECT_NEAR(u.emotion.scores.at("sad"), std::exp(-0.5) / z, 1e-12);
  EXPECT_EQ(u.urgency.label, "high");  // "hi" -0.5 > "low" -1.5 > medium at the floor
  EXPECT_EQ(u.tone, "calm voice");
  EXPECT_EQ(u.urgency_reason, "calm voice");
  EXPECT_EQ(u.summary, "calm voice");
  EXPECT_EQ(u.groups, 1u);
  // Transcript, emotion, urgency, reason, tone, summary: six requests, the summary's with audio.
  ASSERT_EQ(c.requests.size(), 6u);
  bool reason_seen = false;
  for (const auto& m : c.requests)
    if (m.size() == 5) {  // system, audio, urgency question, the chosen answer, reason question
      reason_seen = true;
      EXPECT_EQ(m[3].role, "assistant");
      EXPECT_EQ(m[3].parts[0].text, "high");
      EXPECT_NE(m[4].parts[0].text.find("high"), std::string::npos);
    }
  EXPECT_TRUE(reason_seen);
}

TEST(RemoteTasks, SilenceIsNotSentAndChunksCombine) {
  ScriptedCompleter c;
  TaskOptions o;
  o.task = Task::transcribe_and_summarize;
  // 70 s: speech, 25 s of silence, speech: the silent chunk is answered without the model.
  const Understanding u = understand(c, recording(70, 24, 49), o);
  EXPECT_GE(u.segments.size(), 3u);
  size_t silent = 0;
  for (const auto& s : u.segments) silent += s.no_speech;
  EXPECT_GE(silent, 1u);
  EXPECT_EQ(u.groups, u.segments.size() - silent);
  ASSERT_GE(u.groups, 2u);
  std::string want = "Hello there";
  for (size_t i = 1; i < u.groups; ++i) want += " Hello there";
  EXPECT_EQ(u.transcription, want);
  // Every speech chunk: transcript, emotion, urgency; tone and reason of the chosen chunks only;
  // one summary of the transcript text (no audio in it).
  ASSERT_EQ(c.requests.size(), 3 * u.groups + 2 + 1);
  size_t text_only = 0;
  for (const auto& m : c.requests)
    if (m[1].parts.at(0).kind == ChatPart::Kind::text) {
      ++text_only;
      EXPECT_NE(m[1].parts[0].text.find(want), std::string::npos);  // the transcript is in it
    }
  EXPECT_EQ(text_only, 1u);
  EXPECT_EQ(u.summary, "text summary");
  EXPECT_FALSE(u.hierarchical_summary);
}

TEST(RemoteTasks, RepetitionGuardCutsTheStream) {
  ScriptedCompleter c;
  c.transcript_tokens.clear();
  for (int i = 0; i < 20; ++i) c.transcript_tokens.push_back(i % 2 ? " b" : "a");
  TaskOptions o;
  o.task = Task::transcribe;
  const Understanding u = understand(c, recording(4), o);
  ASSERT_EQ(u.segments.size(), 1u);
  EXPECT_TRUE(u.segments[0].repetition_stopped);
  EXPECT_TRUE(u.repetition_detected);
  EXPECT_EQ(u.transcription, "a b");  // one copy of the looping 2-gram
}

TEST(RemoteTasks, WithoutLogprobsLabelsAreOneHot) {
  ScriptedCompleter c;
  c.logprobs = false;
  TaskOptions o;
  o.task = Task::analyze;
  const Understanding u = understand(c, recording(4), o);
  EXPECT_EQ(u.label_scoring, "one_hot");
  // The generated answer ("calm voice") names no label: the set's first one.
  EXPECT_EQ(u.emotion.label, "neutral");
  EXPECT_EQ(u.emotion.scores.at("neutral"), 1.0);
  EXPECT_EQ(u.urgency.scores.at("low"), 1.0);
}

// A completer that answers after the chunk's loudness: loud audio (peak > 0.4) is urgent and
// angry, quiet audio calm and sad; tone and reason name it.
class LoudnessCompleter : public ScriptedCompleter {
 public:
  ChatResult complete(const std::vector<ChatMessage>& m, const ChatOptions& o,
                      const ChatDeltaFn& on_delta, const std::atomic<bool>* cancel,
                      const std::atomic<bool>* stop) const override {
    if (m.size() < 3 || m[1].parts.at(0).kind != ChatPart::Kind::audio)
      return ScriptedCompleter::complete(m, o, on_delta, cancel, stop);
    {
      std::lock_guard lk(mu);
      requests.push_back(m);
    }
    float peak = 0;
    for (float x : m[1].parts[0].pcm16k) peak = std::max(peak, std::fabs(x));
    const bool loud = peak > 0.4f;
    const std::string last = m.back().parts.at(0).text;
    ChatResult r;
    if (o.max_new_tokens == 1) {  // a label question: its answer token and the runners-up
      const bool urgency = last.find("urgent") != std::string::npos;
      const std::string t = urgency ? (loud ? "hi" : "low") : (loud ? "ang" : "sad");
      ChatTokenLogprob lp;
      lp.bytes = lp.text = t;
      lp.logprob = -0.2;
      lp.top = {{-1, t, t, -0.2}, {-1, "z", "z", -4}};
      r.logprobs.push_back(lp);
      r.text = t;
    } else {
      r.text = m.size() == 5 ? (loud ? "shouted words" : "calm words")  // the reason
                             : (loud ? "loud voice" : "quiet voice");   // the tone
    }
    r.finish_reason = "stop";
    return r;
  }
};

TEST(RemoteTasks, ToneAndReasonOfTheChosenChunksOnly) {
  LoudnessCompleter c;
  TaskOptions o;
  o.task = Task::analyze;
  o.chunking.search_seconds = 0;  // the fixed 25 s split: chunks 0-25, 25-50, 50-60 s
  // Quiet, then loud (25-35 s), then quiet: the middle chunk is the most urgent, and sadness, the
  // recording's emotion (the quiet chunks hold 35 of its 60 s), is as probable in the first chunk
  // as in the last: the earliest one's tone.
  audio::DecodedAudio d = recording(60);
  for (size_t i = 25 * 16000; i < 35 * 16000; ++i) d.samples[i] *= 3;
  const Understanding u = understand(c, std::move(d), o);
  ASSERT_EQ(u.groups, 3u);
  EXPECT_EQ(u.urgency.label, "high");
  EXPECT_EQ(u.emotion.label, "sad");
  EXPECT_EQ(u.urgency_reason, "shouted words");  // asked of the loud chunk
  EXPECT_EQ(u.tone, "quiet voice");              // asked of the first chunk
  // Two label questions per chunk, then one reason and one tone.
  ASSERT_EQ(c.requests.size(), 3 * 2 + 2);
  size_t reasons = 0, tones = 0;
  for (const auto& m : c.requests) {
    const std::vector<float>& pcm = m[1].parts.at(0).pcm16k;
    float peak = 0;
    for (float x : pcm) peak = std::max(peak, std::fabs(x));
    if (m.size() == 5) {
      ++reasons;
      EXPECT_EQ(m[3].parts[0].text, "high");
      EXPECT_GT(peak, 0.4f);  // the middle chunk
    } else if (m.size() == 3 && m[2].parts[0].text.find("tone") != std::string::npos) {
      ++tones;
      EXPECT_LT(peak, 0.4f);  // a quiet chunk of 25 s: the first
      EXPECT_EQ(pcm.size(), size_t(25 * 16000));
    }
  }
  EXPECT_EQ(reasons, 1u);
  EXPECT_EQ(tones, 1u);
}

TEST(RemoteTasks, AllSilentAsksNothing) {
  ScriptedCompleter c;
  TaskOptions o;
  const Understanding u = understand(c, recording(3, 0, 3), o);
  EXPECT_TRUE(u.no_speech);
  EXPECT_TRUE(c.requests.empty());
  EXPECT_EQ(u.tone, "silent");
}

}  // namespace
