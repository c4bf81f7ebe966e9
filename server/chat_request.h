// POST /v1/chat/completions bodies (docs/API.md): the OpenAI chat request in the shape StepFun's
// vLLM server takes for Step-Audio 2 (roles system/human/user/assistant, content a string or a
// list of `text` and `input_audio` parts, one audio part per <= 25 s chunk), checked field by
// field into stepaudio::ChatMessage and ChatOptions. Audio parts are base64-decoded and decoded
// (FFmpeg sniffs the format) to 16 kHz here, so every input error is answered before anything is
// queued.
// Thread-safety: pure functions (FFmpeg decoding is reentrant).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http_server.h"
#include "stepaudio/chat.h"

namespace stepaudio::server {

struct ChatLimits {
  double max_audio_seconds = 4 * 3600.0;  // all audio parts together (--max-audio-seconds)
  size_t max_messages = 1024;
  size_t max_parts = 1024;  // content parts over all messages
  size_t max_stop = 8, max_stop_bytes = 256;
  size_t max_top_logprobs = 20;
};

struct ChatCompletionRequest {
  std::vector<ChatMessage> messages;
  ChatOptions options;
  std::string model;  // as given; empty when absent
  bool stream = false, include_usage = false;
  // vLLM's return_tokens_as_token_ids: logprob tokens written "token_id:<id>" (exact ids for a
  // client that scores labels by id, e.g. another stepaudio node).
  bool tokens_as_ids = false;
  double audio_seconds = 0;
  size_t audio_parts = 0;
};

// Throws ApiError: 415 unsupported_media (a Content-Type other than JSON), 400 invalid_json,
// 400 invalid_argument (a missing, mistyped or out-of-range field, an unsupported feature),
// 400 invalid_audio (an audio part that does not decode or is longer than 25 s), 413 too_long
// (the audio parts together over max_audio_seconds).
ChatCompletionRequest parse_chat_request(const HttpRequest& request, const ChatLimits& limits);

}  // namespace stepaudio::server
