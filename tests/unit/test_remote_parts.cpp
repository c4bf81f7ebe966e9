// The pure parts of a gateway node (`serve --backend`, docs/REMOTE.md): the SSE parser, retry
// backoff, the circuit breaker, the OpenAI wire format, and label scoring from top_logprobs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "server/chat_request.h"
#include "server/crypto.h"
#include "server/openai_client.h"
#include "server/openai_wire.h"
#include "server/resilience.h"
#include "server/sse.h"
#include "stepaudio/error.h"
#include "stepaudio/remote.h"

using namespace stepaudio;
using namespace stepaudio::server;
using nlohmann::json;

namespace {

std::vector<std::string> parse_in_pieces(const std::string& stream, size_t piece) {
  std::vector<std::string> events;
  SseParser p([&](const std::string& d) { events.push_back(d); });
  for (size_t i = 0; i < stream.size(); i += piece) p.feed(stream.substr(i, piece));
  return events;
}

TEST(Sse, EventsAcrossAnySplit) {
  const std::string s =
      ": keep-alive\n\ndata: {\"a\":1}\n\nevent: x\r\ndata:line1\r\ndata: line2\r\n\r\n"
      "id: 7\rdata: [DONE]\r\rdata: unfinished";
  const std::vector<std::string> want = {"{\"a\":1}", "line1\nline2", "[DONE]"};
  for (size_t piece : {1, 2, 3, 7, 1000}) EXPECT_EQ(parse_in_pieces(s, piece), want) << piece;
}

TEST(Sse, NoDataNoEventAndEmptyData) {
  EXPECT_TRUE(parse_in_pieces("event: ping\n\n\n\n", 4).empty());
  EXPECT_EQ(parse_in_pieces("data\n\n", 1), std::vector<std::string>{""});
}

TEST(Backoff, ExponentialWithEqualJitterAndCap) {
  Backoff b{0.2, 5.0};
  EXPECT_DOUBLE_EQ(b.delay_s(0, 0.0), 0.1);
  EXPECT_DOUBLE_EQ(b.delay_s(0, 1.0), 0.2);
  EXPECT_DOUBLE_EQ(b.delay_s(3, 0.0), 0.8);
  EXPECT_DOUBLE_EQ(b.delay_s(3, 0.5), 1.2);
  EXPECT_DOUBLE_EQ(b.delay_s(10, 1.0), 5.0);  // capped
  EXPECT_DOUBLE_EQ(b.delay_s(100, 0.0), 2.5);
  for (int k = 0; k < 8; ++k) EXPECT_LE(b.delay_s(k, 1.0), b.delay_s(k + 1, 1.0));
}

TEST(CircuitBreaker, OpensProbesAndCloses) {
  using namespace std::chrono_literals;
  const auto t0 = CircuitBreaker::Clock::now();
  CircuitBreaker br(3, 10.0);
  EXPECT_TRUE(br.allow(t0));
  br.failure(t0);
  br.failure(t0);
  br.success();  // a success resets the count
  br.failure(t0);
  br.failure(t0);
  EXPECT_EQ(br.state(t0), CircuitBreaker::State::closed);
  br.failure(t0);  // the third in a row
  EXPECT_EQ(br.state(t0), CircuitBreaker::State::open);
  EXPECT_FALSE(br.allow(t0 + 9s));
  EXPECT_NEAR(br.retry_in_s(t0 + 4s), 6.0, 1e-9);
  // Cooldown over: one probe, the others still refused.
  EXPECT_FALSE(br.probe_out());
  EXPECT_TRUE(br.allow(t0 + 10s));
  EXPECT_EQ(br.state(t0 + 10s), CircuitBreaker::State::half_open);
  EXPECT_TRUE(br.probe_out());
  EXPECT_FALSE(br.allow(t0 + 10s));
  br.failure(t0 + 11s);  // the probe failed: open for another cooldown
  EXPECT_FALSE(br.allow(t0 + 20s));
  EXPECT_TRUE(br.allow(t0 + 21s));
  br.success();  // the probe came back: closed
  EXPECT_EQ(br.state(t0 + 21s), CircuitBreaker::State::closed);
  EXPECT_TRUE(br.allow(t0 + 21s));
  EXPECT_TRUE(br.allow(t0 + 21s));
}

TEST(CircuitBreaker, AbandonedProbeLetsTheNextOneGo) {
  using namespace std::chrono_literals;
  const auto t0 = CircuitBreaker::Clock::now();
  CircuitBreaker br(1, 1.0);
  br.failure(t0);
  EXPECT_TRUE(br.allow(t0 + 2s));
  EXPECT_FALSE(br.allow(t0 + 2s));
  br.abandon();
  EXPECT_TRUE(br.allow(t0 + 2s));
}

LabelQuestion urgency() {
  LabelQuestion q;
  q.question = "How urgent?";
  q.labels = {"low", "medium", "high"};
  q.text = {{"low", "low"}, {"medium", "medium"}, {"high", "high"}};
  return q;
}

TEST(RemoteLabels, FirstTokenScoresFromTopLogprobs) {
  // "med" begins "medium" (the longest listed prefix wins over "m"); "high" is absent: it gets
  // the least listed logprob; "Low" differs in case: no match either.
  const std::vector<ChatTokenLogprob::Alternative> top = {{-1, "med", "med", -0.5},
                                                          {-1, "low", "low", -1.5},
                                                          {-1, "m", "m", -2.0},
                                                          {-1, "Low", "Low", -2.5},
                                                          {-1, "xyz", "xyz", -4.0}};
  const auto s = score_labels_first_token(urgency(), top);
  ASSERT_TRUE(s);
  const double z = std::exp(-0.5) + std::exp(-1.5) + std::exp(-4.0);
  EXPECT_NEAR(s->scores.at("medium"), std::exp(-0.5) / z, 1e-12);
  EXPECT_NEAR(s->scores.at("low"), std::exp(-1.5) / z, 1e-12);
  EXPECT_NEAR(s->scores.at("high"), std::exp(-4.0) / z, 1e-12);
  EXPECT_EQ(s->label, "medium");
  EXPECT_FALSE(score_labels_first_token(urgency(), {}));
}

TEST(RemoteLabels, AnswerMatchedOneHot) {
  auto s = match_label(urgency(), "  High.");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->label, "high");
  EXPECT_EQ(s->scores.at("high"), 1.0);
  EXPECT_EQ(s->scores.at("low"), 0.0);
  s = match_label(urgency(), "I think it is medium, maybe high");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->label, "medium");
  EXPECT_FALSE(match_label(urgency(), "no idea"));
  EXPECT_FALSE(match_label(urgency(), "lowly")->scores.empty());  // mentions "low" inside a word
}

TEST(RemoteLabels, TextTokens) {
  EXPECT_TRUE(is_text_token("hello"));
  EXPECT_TRUE(is_text_token("<|BOT|>"));
  EXPECT_TRUE(is_text_token("<b>"));
  EXPECT_FALSE(is_text_token("<audio_123>"));
  EXPECT_FALSE(is_text_token("<tts_start>"));
}

TEST(OpenAiWire, BackendUrls) {
  EXPECT_EQ(backend_base_url("openai://127.0.0.1:8000"), "http://127.0.0.1:8000/v1");
  EXPECT_EQ(backend_base_url("openai://gpu-1:8000/v1/"), "http://gpu-1:8000/v1");
  EXPECT_EQ(backend_base_url("https://api.example.com/step"), "https://api.example.com/step/v1");
  for (const char* bad : {"ftp://x:1", "openai://", "openai://u:p@h:1", "openai://h:1/v1?x=1",
                          "127.0.0.1:8000", "openai://h:99999"}) {
    try {
      backend_base_url(bad);
      ADD_FAILURE() << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::invalid_argument) << bad;
    }
  }
}

TEST(OpenAiWire, RequestBody) {
  std::vector<ChatMessage> m = {ChatMessage::text("system", "sys"),
                                ChatMessage::list("human", {ChatPart::audio({0.5f, -0.25f})}),
                                ChatMessage::text("assistant", "lo")};
  m.back().eot = false;  // continued
  ChatOptions o;
  o.max_new_tokens = 3;
  o.logprobs = true;
  o.top_logprobs = 20;
  const json j = chat_request_json(m, o, "step", true);
  EXPECT_EQ(j["model"], "step");
  EXPECT_EQ(j["max_tokens"], 3);
  EXPECT_EQ(j["temperature"], 0.0);
  EXPECT_EQ(j["top_logprobs"], 20);
  EXPECT_EQ(j["continue_final_message"], true);
  EXPECT_EQ(j["add_generation_prompt"], false);
  EXPECT_EQ(j["stream_options"]["include_usage"], true);
  EXPECT_EQ(j["messages"][0]["content"], "sys");
  const json& part = j["messages"][1]["content"][0];
  EXPECT_EQ(part["type"], "input_audio");
  const auto wav = decode_base64(part["input_audio"]["data"].get<std::string>());
  ASSERT_TRUE(wav);
  ASSERT_EQ(wav->size(), 44u + 8u);
  EXPECT_EQ(wav->substr(0, 4), "RIFF");
  EXPECT_EQ(uint8_t((*wav)[20]), 3);  // IEEE float
  float x[2];
  std::memcpy(x, wav->data() + 44, 8);
  EXPECT_EQ(x[0], 0.5f);
  EXPECT_EQ(x[1], -0.25f);
  EXPECT_EQ(encode_base64("f"), "Zg==");
  EXPECT_EQ(encode_base64("fo"), "Zm8=");
  EXPECT_EQ(encode_base64("foo"), "Zm9v");
}

TEST(OpenAiWire, StreamedChunksAddUp) {
  ChatResult r;
  const json c1 = json::parse(R"({"choices":[{"index":0,"delta":{"content":"Hel"},
      "logprobs":{"content":[{"token":"Hel","logprob":-0.1,"bytes":[72,101,108],
      "top_logprobs":[{"token":"token_id:9","logprob":-0.1,"bytes":[72]}]}]},"finish_reason":null}]})");
  const ChatDelta d = apply_chat_chunk(c1, r);
  EXPECT_EQ(d.text, "Hel");
  ASSERT_EQ(d.logprobs.size(), 1u);
  EXPECT_EQ(d.logprobs[0].bytes, "Hel");
  EXPECT_EQ(d.logprobs[0].top[0].id, 9);
  apply_chat_chunk(json::parse(R"({"choices":[{"delta":{},"finish_reason":"length"}]})"), r);
  apply_chat_chunk(json::parse(
                       R"({"choices":[],"usage":{"prompt_tokens":40,"completion_tokens":2,
                       "prompt_tokens_details":{"audio_tokens":25}}})"),
                   r);
  EXPECT_EQ(r.text, "Hel");
  EXPECT_EQ(r.finish_reason, "length");
  EXPECT_EQ(r.prompt_tokens, 40u);
  EXPECT_EQ(r.audio_tokens, 25u);
  EXPECT_EQ(r.completion_tokens, 2u);
  try {
    apply_chat_chunk(json::parse(R"({"error":{"code":"timeout","message":"slow"}})"), r);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::backend_error);
    EXPECT_NE(std::string(e.what()).find("slow"), std::string::npos);
  }
  std::string code;
  EXPECT_EQ(error_message(R"({"object":"error","message":"bad","code":400})", &code), "bad");
  EXPECT_EQ(error_message(R"({"error":{"code":"invalid_argument","message":"m"}})", &code), "m");
  EXPECT_EQ(code, "invalid_argument");
}

}  // namespace
