// Chat generation: a conversation of text and audio messages rendered with the Step-Audio 2 chat
// template (stepaudio/prompt.h) and run straight through the model, with no task prompts, guards
// or post-processing: the raw generation of `stepaudio run` for any list of messages. It is what
// POST /v1/chat/completions runs (the request shape of StepFun's vLLM server for this model).
//
//   std::vector<stepaudio::ChatMessage> msgs = {
//       stepaudio::ChatMessage::text("system", "请记录下你所听到的语音内容。"),
//       stepaudio::ChatMessage::list("human", {stepaudio::ChatPart::audio(pcm16k)})};
//   stepaudio::ChatResult r = stepaudio::chat(*engine, std::move(msgs), {});
//   // r.text, r.finish_reason ("stop" | "length"), r.tokens, r.logprobs
//
// Rendering: each audio part is one chunk of at most kMaxChatAudioSeconds (the client splits
// longer recordings, as StepFun's client does) and becomes <audio_start> + N x <audio_patch> +
// <audio_end>, the encoder's rows replacing the patches; text typed by the client never matches
// added tokens ("<|EOT|>" in a message is plain text). The assistant's header "<|BOT|>assistant\n"
// is appended when add_generation_prompt is set and the last message is a closed turn; a last
// message that is open (no content) or left without <|EOT|> is continued instead.
// Generation stops at <|EOT|>, a stop string, or max_new_tokens. The text holds the generated text
// ids only (ids of audio codes and special tokens are dropped, as `run` does).
//
// Thread-safety: chat() runs on the calling thread and may be called concurrently on one Engine
// (its model work goes through options.scheduler when given: continuous batching with the other
// users of that scheduler). on_delta runs on the scheduler's thread (inline: the caller's), never
// twice at once for one call. `cancel` may be raised from any thread: Error(canceled).
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "stepaudio/pipeline.h"
#include "stepaudio/scheduler.h"
#include "stepaudio/session.h"

namespace stepaudio {

// The longest audio part: one encoder chunk (the official 25 s split).
inline constexpr double kMaxChatAudioSeconds = audio::kMaxChunkSeconds;

struct ChatPart {
  enum class Kind { text, audio };
  Kind kind = Kind::text;
  std::string text;           // Kind::text: UTF-8
  std::vector<float> pcm16k;  // Kind::audio: 16 kHz mono samples, at most kMaxChatAudioSeconds

  static ChatPart of_text(std::string s) { return {Kind::text, std::move(s), {}}; }
  static ChatPart audio(std::vector<float> pcm) { return {Kind::audio, {}, std::move(pcm)}; }
};

struct ChatMessage {
  enum class Form {
    string,  // content was a string: one segment "<|BOT|>{role}\n{text}" (text parts only)
    list,    // content was a list of parts: each part its own segment (the official template)
    open,    // no content: just "<|BOT|>{role}\n" (the turn the model continues)
  };
  std::string role;  // "system", "human" ("user" is written "human"), "assistant", ...
  Form form = Form::list;
  std::vector<ChatPart> parts;
  bool eot = true;  // close the turn with <|EOT|> (string and list forms)

  static ChatMessage text(std::string role, std::string content) {
    return {std::move(role), Form::string, {ChatPart::of_text(std::move(content))}, true};
  }
  static ChatMessage list(std::string role, std::vector<ChatPart> parts) {
    return {std::move(role), Form::list, std::move(parts), true};
  }
  static ChatMessage open(std::string role) { return {std::move(role), Form::open, {}, false}; }
};

struct ChatOptions {
  size_t max_new_tokens = 0;  // 0: up to the end of the context
  SamplingOptions sampling;   // default: greedy
  // Generation stops when the text contains one of these (non-empty); the text ends before it.
  std::vector<std::string> stop;
  bool logprobs = false;    // fill ChatResult::logprobs (and ChatDelta::logprobs)
  size_t top_logprobs = 0;  // alternatives per token in them (needs logprobs)
  bool add_generation_prompt = true;
  size_t max_context = 0;  // positions of prompt + answer; 0: the model's maximum
  int threads = 0;
  Scheduler* scheduler = nullptr;  // null: an inline scheduler of this call
};

// One generated token: its bytes (may be part of a UTF-8 character) and the same as valid UTF-8
// (each maximal invalid part U+FFFD), its log-probability under the raw logits (log softmax,
// temperature 1, before any penalty) and, with top_logprobs, the most probable ids at that step
// (the same measure, best first; the chosen id may be among them).
struct ChatTokenLogprob {
  int32_t id = 0;
  std::string bytes, text;
  double logprob = 0;
  struct Alternative {
    int32_t id = 0;
    std::string bytes, text;
    double logprob = 0;
  };
  std::vector<Alternative> top;
};

// A piece of the answer as it is generated: text that is final (whole UTF-8 characters, never
// a part of a stop string), and the logprobs of the tokens consumed since the previous delta.
// The deltas' texts concatenated equal ChatResult::text; their logprobs, ChatResult::logprobs.
struct ChatDelta {
  std::string text;
  std::vector<ChatTokenLogprob> logprobs;
};
using ChatDeltaFn = std::function<void(const ChatDelta&)>;

struct ChatResult {
  std::string text;
  std::vector<int32_t> tokens;  // every generated id (the final <|EOT|> included when it came)
  // options.logprobs: one entry per generated id except a final <|EOT|>.
  std::vector<ChatTokenLogprob> logprobs;
  std::string finish_reason;  // "stop" (<|EOT|> or a stop string) or "length"
  std::string stop_string;    // the stop string that ended generation, if one did
  size_t prompt_tokens = 0;   // prompt positions, audio patches included
  // Generated tokens as counted: tokens.size() locally; a remote backend's reported
  // usage.completion_tokens when it gives no ids (stepaudio/remote.h).
  size_t completion_tokens = 0;
  size_t audio_tokens = 0;  // <audio_patch> positions among them
  double audio_seconds = 0;
  double mel_ms = 0, encode_ms = 0, prefill_ms = 0, generate_ms = 0;
};

// Throws Error(invalid_argument) for an empty conversation, an audio part that is empty, shorter
// than the encoder's minimum (~20 ms) or longer than kMaxChatAudioSeconds, a non-text part in a
// string-form message, invalid UTF-8, a prompt + max_new_tokens over the context, or bad sampling
// options; Error(canceled) when `cancel` is raised. The messages are moved in: each part's PCM is
// freed once its log-mel is computed.
ChatResult chat(const Engine& engine, std::vector<ChatMessage> messages, const ChatOptions& options,
                const ChatDeltaFn& on_delta = {}, const std::atomic<bool>* cancel = nullptr);

}  // namespace stepaudio
