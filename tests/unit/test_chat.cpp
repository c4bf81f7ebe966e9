// Chat generation pieces (issue 16): top_logprobs against a hand computation, the answer text
// stream (UTF-8 hold-back, stop strings split across tokens), the request parser and base64 of
// POST /v1/chat/completions, and stepaudio::chat() end to end on the synthetic tiny model (inline
// and threaded schedulers agree; deltas add up to the result; logprobs match the ids).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "pipeline/chat_text.h"
#include "server/api_error.h"
#include "server/chat_request.h"
#include "stepaudio/chat.h"
#include "stepaudio/error.h"
#include "tiny_engine.h"

using namespace stepaudio;
using stepaudio::test::tiny_engine;
using stepaudio::test::tone;

namespace {

std::vector<ChatMessage> conversation() {
  return {ChatMessage::text("system", "you listen"),
          ChatMessage::list("user", {ChatPart::audio(tone(1.0)), ChatPart::of_text("hello")})};
}

struct Collected {
  ChatResult result;
  std::string text;
  std::vector<ChatTokenLogprob> logprobs;
  size_t deltas = 0;
};

Collected run_chat(const Engine& e, ChatOptions o, std::vector<ChatMessage> m = conversation()) {
  Collected c;
  c.result = chat(e, std::move(m), o, [&](const ChatDelta& d) {
    ++c.deltas;
    c.text += d.text;
    c.logprobs.insert(c.logprobs.end(), d.logprobs.begin(), d.logprobs.end());
  });
  return c;
}

}  // namespace

TEST(TopLogprobs, HandComputedWithTiesToTheLowerId) {
  const std::vector<float> l = {1.0f, 3.0f, 3.0f, 0.5f, 2.0f};
  double z = 0;
  for (float v : l) z += std::exp(double(v));
  const auto top = top_logprobs(l, 3);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].id, 1);  // tie with id 2: the lower id first
  EXPECT_EQ(top[1].id, 2);
  EXPECT_EQ(top[2].id, 4);
  EXPECT_NEAR(top[0].logprob, 3.0 - std::log(z), 1e-12);
  EXPECT_NEAR(top[2].logprob, 2.0 - std::log(z), 1e-12);
  EXPECT_EQ(top_logprobs(l, 99).size(), 5u);  // clamped to the vocabulary
  EXPECT_EQ(top_logprobs(l, 99).back().id, 3);
  EXPECT_TRUE(top_logprobs(l, 0).empty());
}

TEST(ChatTextStream, HoldsBackPartialCharacters) {
  auto tok = test::tiny_tokenizer();  // ids 0..255 are the bytes
  pipeline::ChatTextStream s(*tok, {});
  EXPECT_EQ(s.push('a'), "a");
  EXPECT_EQ(s.push(0xC3), "");  // first byte of é
  EXPECT_EQ(s.push(0xA9), "\xC3\xA9");
  EXPECT_EQ(s.push(tok->eos_id()), "");  // <|EOT|> and non-text ids add nothing
  EXPECT_EQ(s.push(*tok->token_id("<audio_patch>")), "");
  EXPECT_EQ(s.push(0xE4), "");
  EXPECT_EQ(s.finish(), "\xEF\xBF\xBD");  // an unfinished character ends as U+FFFD
  EXPECT_EQ(s.text(), "a\xC3\xA9\xEF\xBF\xBD");
  EXPECT_FALSE(s.stopped());
}

TEST(ChatTextStream, StopStringAcrossTokens) {
  auto tok = test::tiny_tokenizer();
  pipeline::ChatTextStream s(*tok, {"lo w"});
  std::string out;
  for (char c : std::string("hello world")) out += s.push(uint8_t(c));
  EXPECT_EQ(out, "hel");  // "l", "lo", "lo " were held as possible starts of "lo w"
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(s.stop_string(), "lo w");
  EXPECT_EQ(s.push('x'), "");
  EXPECT_EQ(s.finish(), "");
  EXPECT_EQ(s.text(), "hel");
}

TEST(ChatTextStream, LeftmostStopWinsAndHeldTextIsFlushed) {
  auto tok = test::tiny_tokenizer();
  pipeline::ChatTextStream a(*tok, {"cd", "bc"});
  std::string out;
  for (char c : std::string("abcd")) out += a.push(uint8_t(c));
  EXPECT_EQ(out, "a");
  EXPECT_EQ(a.stop_string(), "bc");
  pipeline::ChatTextStream b(*tok, {"xyz"});
  EXPECT_EQ(b.push('q'), "q");
  EXPECT_EQ(b.push('x'), "");
  EXPECT_EQ(b.push('y'), "");
  EXPECT_EQ(b.finish(), "xy");  // the end: a possible start of a stop is text after all
  EXPECT_FALSE(b.stopped());
  EXPECT_THROW(pipeline::ChatTextStream(*tok, {""}), Error);
}

namespace {
server::ChatCompletionRequest parse(const nlohmann::json& body) {
  server::HttpRequest r;
  r.headers = {{"content-type", "application/json"}};
  r.body = body.dump();
  return server::parse_chat_request(r, server::ChatLimits{});
}
int status_of(const nlohmann::json& body) {
  try {
    parse(body);
  } catch (const server::ApiError& e) {
    return e.status;
  }
  return 200;
}
}  // namespace

TEST(ChatRequestParse, StepFunClientShape) {
  // What StepFun's stepaudio2vllm.py sends (its sampling parameters, an assistant prefix left
  // open).
  const nlohmann::json body = {
      {"model", "step-audio-2-mini"},
      {"messages",
       {{{"role", "system"}, {"content", "You are a helpful assistant."}},
        {{"role", "human"}, {"content", {{{"type", "text"}, {"text", "Hi"}}}}},
        {{"role", "assistant"}, {"content", "<tts_start>"}, {"eot", false}}}},
      {"max_tokens", 1024},
      {"temperature", 0.7},
      {"top_p", 0.9},
      {"frequency_penalty", 0},
      {"repetition_penalty", 1.05},
      {"skip_special_tokens", false},
      {"parallel_tool_calls", false},
      {"stream", true},
      {"continue_final_message", true},
      {"add_generation_prompt", false}};
  const auto r = parse(body);
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[1].role, "human");
  EXPECT_EQ(r.messages[1].form, ChatMessage::Form::list);
  EXPECT_EQ(r.messages[0].form, ChatMessage::Form::string);
  EXPECT_FALSE(r.messages[2].eot);
  EXPECT_FALSE(r.options.add_generation_prompt);
  EXPECT_EQ(r.options.max_new_tokens, 1024u);
  EXPECT_FLOAT_EQ(r.options.sampling.temperature, 0.7f);
  EXPECT_FLOAT_EQ(r.options.sampling.top_p, 0.9f);
  EXPECT_FLOAT_EQ(r.options.sampling.repetition_penalty, 1.05f);
  EXPECT_TRUE(r.stream);
  EXPECT_EQ(r.model, "step-audio-2-mini");
}

TEST(ChatRequestParse, DefaultsAndRefusals) {
  const nlohmann::json ok = {{"messages", {{{"role", "user"}, {"content", "x"}}}}};
  const auto r = parse(ok);
  EXPECT_FLOAT_EQ(r.options.sampling.temperature, 1.0f);
  EXPECT_EQ(r.options.max_new_tokens, 0u);  // up to the context
  EXPECT_TRUE(r.options.add_generation_prompt);
  EXPECT_EQ(r.messages[0].role, "human");
  auto with = [&](const char* k, nlohmann::json v) {
    nlohmann::json b = ok;
    b[k] = std::move(v);
    return status_of(b);
  };
  EXPECT_EQ(with("max_completion_tokens", 7), 200);
  nlohmann::json two_limits = ok;
  two_limits["max_tokens"] = 3;
  two_limits["max_completion_tokens"] = 9;
  EXPECT_EQ(parse(two_limits).options.max_new_tokens, 9u);  // the newer name wins
  EXPECT_EQ(with("n", 2), 400);
  EXPECT_EQ(with("n", 1), 200);
  EXPECT_EQ(with("top_logprobs", 21), 400);
  EXPECT_EQ(with("stop", nlohmann::json::array({"a", ""})), 400);
  EXPECT_EQ(with("presence_penalty", 0.1), 400);
  EXPECT_EQ(with("presence_penalty", 0), 200);
  EXPECT_EQ(with("logit_bias", {{"1", 5}}), 400);
  EXPECT_EQ(with("response_format", {{"type", "json_object"}}), 400);
  EXPECT_EQ(with("seed", -5), 200);
  EXPECT_EQ(with("top_k", -1), 200);
  EXPECT_EQ(with("repetition_penalty", 0), 400);
  EXPECT_EQ(with("continue_final_message", true), 200);
  nlohmann::json both = ok;
  both["continue_final_message"] = true;
  both["add_generation_prompt"] = true;
  EXPECT_EQ(status_of(both), 400);
  EXPECT_EQ(status_of({{"messages", {{{"role", "user"}, {"content", 5}}}}}), 400);
  EXPECT_EQ(status_of({{"messages", {{{"role", "user"}, {"content", {{{"type", "text"}}}}}}}}),
            400);
  EXPECT_EQ(status_of({{"messages", {{{"role", "assistant"}}}}}), 200);  // the open turn
  EXPECT_EQ(status_of({{"messages", {{{"role", "user"}}}}}), 400);
  EXPECT_EQ(status_of(nlohmann::json::array()), 400);
}

TEST(Chat, InlineAndThreadedSchedulersAgree) {
  const Engine e = tiny_engine();
  ChatOptions o;
  o.max_new_tokens = 12;
  o.logprobs = true;
  o.top_logprobs = 3;
  const Collected a = run_chat(e, o);
  Scheduler sched;
  o.scheduler = &sched;
  const Collected b = run_chat(e, o);
  const ChatResult& r = a.result;
  EXPECT_EQ(r.tokens, b.result.tokens);
  EXPECT_EQ(r.text, b.result.text);
  EXPECT_GT(r.audio_tokens, 0u);
  EXPECT_GT(r.prompt_tokens, r.audio_tokens);
  EXPECT_NEAR(r.audio_seconds, 1.0, 1e-9);
  // The deltas add up to the result, and there is one logprob per id but a final <|EOT|>.
  EXPECT_EQ(a.text, r.text);
  const bool eot_last = !r.tokens.empty() && r.tokens.back() == 501;
  ASSERT_EQ(r.logprobs.size(), r.tokens.size() - eot_last);
  ASSERT_EQ(a.logprobs.size(), r.logprobs.size());
  EXPECT_EQ(r.finish_reason, eot_last ? "stop" : "length");
  for (size_t i = 0; i < r.logprobs.size(); ++i) {
    const ChatTokenLogprob& t = r.logprobs[i];
    EXPECT_EQ(t.id, r.tokens[i]);
    EXPECT_EQ(a.logprobs[i].id, t.id);
    EXPECT_EQ(t.logprob, b.result.logprobs[i].logprob);
    EXPECT_EQ(t.bytes, std::string(e.tokenizer->token_bytes(t.id)));
    ASSERT_EQ(t.top.size(), 3u);
    EXPECT_EQ(t.top[0].id, t.id);  // greedy, no penalty: the most probable id
    EXPECT_EQ(t.top[0].logprob, t.logprob);
    EXPECT_GE(t.top[0].logprob, t.top[1].logprob);
    EXPECT_GE(t.top[1].logprob, t.top[2].logprob);
    EXPECT_LT(t.logprob, 0.0);
  }
}

TEST(Chat, StopStringsAndLength) {
  const Engine e = tiny_engine();
  ChatOptions o;
  o.max_new_tokens = 24;
  const ChatResult full = chat(e, conversation(), o);
  size_t p = 1;
  while (p < full.text.size() && !(full.text[p] > ' ' && full.text[p] < 0x7f)) ++p;
  ASSERT_LT(p, full.text.size()) << "no ASCII in " << full.text;
  o.stop = {std::string(1, full.text[p])};
  const Collected c = run_chat(e, o);
  EXPECT_EQ(c.result.text, full.text.substr(0, full.text.find(o.stop[0])));
  EXPECT_EQ(c.text, c.result.text);
  EXPECT_EQ(c.result.finish_reason, "stop");
  EXPECT_EQ(c.result.stop_string, o.stop[0]);
  o.stop.clear();
  o.max_new_tokens = 2;
  const ChatResult two = chat(e, conversation(), o);
  const bool eot_early = full.tokens.size() <= 2 && full.tokens.back() == 501;
  EXPECT_EQ(two.finish_reason, eot_early ? "stop" : "length");
  EXPECT_EQ(std::vector<int32_t>(full.tokens.begin(), full.tokens.begin() + 2), two.tokens);
}

TEST(Chat, RejectsBadInput) {
  const Engine e = tiny_engine();
  auto code_of = [&](std::vector<ChatMessage> m, ChatOptions o = {},
                     const std::atomic<bool>* cancel = nullptr) {
    try {
      chat(e, std::move(m), o, {}, cancel);
    } catch (const Error& err) {
      return err.code();
    }
    return Errc::internal;  // no error: fails the expectations below
  };
  EXPECT_EQ(code_of({}), Errc::invalid_argument);
  EXPECT_EQ(code_of({ChatMessage::list("human", {ChatPart::audio(tone(25.5))})}),
            Errc::invalid_argument);
  EXPECT_EQ(code_of({ChatMessage::list("human", {ChatPart::audio(std::vector<float>(100))})}),
            Errc::invalid_argument);  // too short for the encoder
  EXPECT_EQ(code_of({ChatMessage::list("human", {ChatPart::audio({})})}), Errc::invalid_argument);
  ChatOptions big;
  big.max_new_tokens = 5000;  // the tiny model holds 4096 positions
  EXPECT_EQ(code_of(conversation(), big), Errc::invalid_argument);
  ChatOptions top;
  top.top_logprobs = 2;
  EXPECT_EQ(code_of(conversation(), top), Errc::invalid_argument);
  ChatOptions rp;
  rp.sampling.repetition_penalty = 0;
  EXPECT_EQ(code_of(conversation(), rp), Errc::invalid_argument);
  std::atomic<bool> cancel{true};
  EXPECT_EQ(code_of(conversation(), {}, &cancel), Errc::canceled);
}
