// The OpenAI chat-completions wire format as a remote inference backend speaks it (StepFun's vLLM
// server for Step-Audio 2, or another stepaudio node): our ChatMessage/ChatOptions as a request
// body (audio parts as base64 WAV), and the answers (whole or streamed chunks) back into
// ChatDelta/ChatResult. Pure functions; openai_client.cpp does the transport.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "stepaudio/chat.h"

namespace stepaudio::server {

// 16 kHz mono PCM as a WAV file of 32-bit float samples (WAVE_FORMAT_IEEE_FLOAT): the samples
// cross the wire exactly, so the remote computes the same log-mel as a local run would.
std::string wav_f32(const std::vector<float>& pcm16k);

// The request body: messages (roles as given, "human" kept), max_tokens, sampling, stop,
// logprobs/top_logprobs, stream with include_usage; an open last message or one without <|EOT|>
// as continue_final_message (vLLM's template switches), `eot: false` on an earlier one.
nlohmann::json chat_request_json(const std::vector<ChatMessage>& messages, const ChatOptions& o,
                                 const std::string& model, bool stream);

// Adds one answer piece (a streamed chunk's choices[0], or a whole answer's) to `result`; returns
// the delta it carried. A chunk with "error" throws Error(backend_error) with its message.
// `usage` chunks fill prompt/audio token counts.
ChatDelta apply_chat_chunk(const nlohmann::json& chunk, ChatResult& result);
ChatDelta apply_chat_answer(const nlohmann::json& answer, ChatResult& result);

// The message of an error answer in our shape ({"error": {"code", "message"}}), OpenAI's, or
// vLLM's ({"object": "error", "message"}); `code` gets the error's code when it has one.
std::string error_message(const std::string& body, std::string* code = nullptr);

}  // namespace stepaudio::server
