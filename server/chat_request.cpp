// parse_chat_request (chat_request.h): every field of an OpenAI / vLLM chat request we take, its
// type and range; the fields of features we do not have are refused when set (a client relying on
// them must not get a silently different answer), and other unknown fields are ignored, as vLLM
// does.
#include "chat_request.h"

#include <cctype>
#include <cmath>
#include <random>

#include "api_error.h"
#include "crypto.h"
#include "routes.h"

namespace stepaudio::server {

using nlohmann::json;

namespace {

[[noreturn]] void bad(const std::string& message) {
  throw ApiError(400, "invalid_argument", message);
}

bool is_null_or_absent(const json& body, const char* key) {
  return !body.contains(key) || body.at(key).is_null();
}

double number_field(const json& body, const char* key, double lo, double hi, bool lo_open) {
  const json& v = body.at(key);
  if (!v.is_number()) bad(std::string(key) + " must be a number");
  const double x = v.get<double>();
  if (!std::isfinite(x) || x > hi || (lo_open ? x <= lo : x < lo)) {
    char range[64];
    std::snprintf(range, sizeof range, "%s%g, %g]", lo_open ? "(" : "[", lo, hi);
    bad(std::string(key) + " must be in " + range);
  }
  return x;
}

int64_t integer_field(const json& body, const char* key, int64_t lo, int64_t hi) {
  const json& v = body.at(key);
  if (!v.is_number_integer()) bad(std::string(key) + " must be an integer");
  const int64_t x = v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)
                        ? INT64_MAX
                        : v.get<int64_t>();
  if (x < lo || x > hi)
    bad(std::string(key) + " must be in " + std::to_string(lo) + ".." + std::to_string(hi));
  return x;
}

bool bool_field(const json& body, const char* key) {
  const json& v = body.at(key);
  if (!v.is_boolean()) bad(std::string(key) + " must be true or false");
  return v.get<bool>();
}

// Features of the OpenAI API we do not implement: refused unless absent, null or neutral.
void refuse_unsupported(const json& body) {
  for (const char* k : {"frequency_penalty", "presence_penalty"})
    if (!is_null_or_absent(body, k) && !(body[k].is_number() && body[k].get<double>() == 0.0))
      bad(std::string(k) + " is not supported (use repetition_penalty)");
  for (const char* k : {"tools", "functions", "logit_bias", "stop_token_ids"})
    if (!is_null_or_absent(body, k) && !body[k].empty()) bad(std::string(k) + " is not supported");
  for (const char* k : {"tool_choice", "function_call"})
    if (!is_null_or_absent(body, k) && body[k] != "none" && body[k] != "auto")
      bad(std::string(k) + " is not supported");
  if (!is_null_or_absent(body, "response_format")) {
    const json& f = body["response_format"];
    if (!f.is_object() || f.value("type", "") != "text")
      bad("response_format is not supported (only {\"type\": \"text\"})");
  }
  if (!is_null_or_absent(body, "n") && integer_field(body, "n", 1, 128) != 1)
    bad("n must be 1: one choice per request");
  if (!is_null_or_absent(body, "audio") || !is_null_or_absent(body, "modalities")) {
    const json& m = body.value("modalities", json::array({"text"}));
    if (!is_null_or_absent(body, "audio") || m != json::array({"text"}))
      bad("audio output is not supported: the answer is text");
  }
}

std::string audio_error_text(const Error& e) {
  switch (e.code()) {
    case Errc::too_long:
      return std::string(
          "is longer than 25 s; one part takes at most 25 s (split longer audio "
          "into several input_audio parts)");
    case Errc::unsupported_media:
      return std::string("is not audio in a format the decoder knows: ") + e.what();
    default:
      return std::string("does not decode as audio: ") + e.what();
  }
}

class Parser {
 public:
  Parser(const ChatLimits& limits, ChatCompletionRequest& out) : lim_(limits), out_(out) {}

  void messages(const json& list) {
    if (!list.is_array() || list.empty()) bad("messages must be a non-empty array");
    if (list.size() > lim_.max_messages)
      bad("at most " + std::to_string(lim_.max_messages) + " messages");
    for (size_t i = 0; i < list.size(); ++i)
      out_.messages.push_back(message(list[i], i, i + 1 == list.size()));
  }

 private:
  ChatMessage message(const json& m, size_t i, bool last) {
    const std::string at = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) bad(at + " must be an object");
    if (!m.contains("role") || !m["role"].is_string()) bad(at + ".role must be a string");
    std::string role = m["role"].get<std::string>();
    if (role == "user") role = "human";
    if (role != "system" && role != "human" && role != "assistant")
      bad(at + ".role must be system, user, human or assistant (not \"" + role + "\")");
    if (!is_null_or_absent(m, "tts_content") || !is_null_or_absent(m, "tool_calls") ||
        !is_null_or_absent(m, "audio"))
      bad(at + ": tts_content, tool_calls and audio are not supported");
    ChatMessage msg;
    msg.role = role;
    if (m.contains("eot") && !m["eot"].is_null()) {
      if (!m["eot"].is_boolean()) bad(at + ".eot must be true or false");
      msg.eot = m["eot"].get<bool>();
    }
    if (is_null_or_absent(m, "content")) {
      if (!last || role != "assistant")
        bad(at +
            ".content is missing: only a final assistant message may be empty (the turn "
            "the model continues)");
      return ChatMessage::open("assistant");
    }
    const json& c = m["content"];
    if (c.is_string()) {
      msg.form = ChatMessage::Form::string;
      msg.parts.push_back(ChatPart::of_text(c.get<std::string>()));
      return msg;
    }
    if (!c.is_array()) bad(at + ".content must be a string, an array of parts or null");
    msg.form = ChatMessage::Form::list;
    for (size_t k = 0; k < c.size(); ++k)
      msg.parts.push_back(part(c[k], at + ".content[" + std::to_string(k) + "]"));
    return msg;
  }

  ChatPart part(const json& p, const std::string& at) {
    if (++parts_ > lim_.max_parts)
      bad("at most " + std::to_string(lim_.max_parts) + " content parts in all");
    if (!p.is_object() || !p.contains("type") || !p["type"].is_string())
      bad(at + " must be an object with a string type");
    const std::string type = p["type"].get<std::string>();
    if (type == "text") {
      if (!p.contains("text") || !p["text"].is_string()) bad(at + ".text must be a string");
      return ChatPart::of_text(p["text"].get<std::string>());
    }
    if (type == "input_audio") return audio(p, at);
    if (type == "audio_url")
      bad(at +
          ": audio_url parts are not accepted; send the audio inline as an input_audio part "
          "({\"data\": <base64>, \"format\": \"wav\"})");
    bad(at + ".type \"" + type + "\" is not supported (text and input_audio only)");
  }

  ChatPart audio(const json& p, const std::string& at) {
    if (!p.contains("input_audio") || !p["input_audio"].is_object())
      bad(at + ".input_audio must be an object {\"data\", \"format\"}");
    const json& a = p["input_audio"];
    if (!a.contains("data") || !a["data"].is_string())
      bad(at + ".input_audio.data must be a base64 string");
    // The format is a hint only: the decoder sniffs the bytes (wav, mp3, flac, ogg, m4a, ...).
    if (!is_null_or_absent(a, "format") && !a["format"].is_string())
      bad(at + ".input_audio.format must be a string");
    std::string_view data = a["data"].get_ref<const std::string&>();
    if (data.rfind("data:", 0) == 0) {  // a data: URI where plain base64 was meant
      const size_t comma = data.find(',');
      if (comma == std::string_view::npos ||
          data.substr(0, comma).find(";base64") == std::string_view::npos)
        bad(at + ".input_audio.data is a data: URI without ;base64");
      data.remove_prefix(comma + 1);
    }
    std::optional<std::string> bytes = decode_base64(data);
    if (!bytes) bad(at + ".input_audio.data is not valid base64");
    if (bytes->empty()) bad(at + ".input_audio.data is empty");
    audio::DecodeOptions decode;  // first channel, as the official pipeline
    decode.max_seconds = kMaxChatAudioSeconds;
    std::vector<float> pcm;
    try {
      audio::DecodedAudio d = audio::decode_memory(reinterpret_cast<const uint8_t*>(bytes->data()),
                                                   bytes->size(), decode);
      std::string().swap(*bytes);
      pcm = audio::to_16k(d);
    } catch (const Error& e) {
      throw ApiError(400, "invalid_audio", at + ".input_audio " + audio_error_text(e));
    }
    // to_16k gives ceil(n * 16000 / rate) samples: at most 25 s worth when the source is.
    if (pcm.size() > size_t(kMaxChatAudioSeconds * audio::kSampleRate))
      throw ApiError(400, "invalid_audio",
                     at + ".input_audio " + audio_error_text(Error(Errc::too_long, "")));
    const double seconds = double(pcm.size()) / audio::kSampleRate;
    out_.audio_seconds += seconds;
    ++out_.audio_parts;
    if (out_.audio_seconds > lim_.max_audio_seconds)
      throw ApiError(413, "too_long",
                     "the audio parts last more than --max-audio-seconds (" +
                         std::to_string(int64_t(lim_.max_audio_seconds)) + " s) together");
    return ChatPart::audio(std::move(pcm));
  }

  const ChatLimits& lim_;
  ChatCompletionRequest& out_;
  size_t parts_ = 0;
};

void sampling(const json& body, ChatCompletionRequest& r) {
  SamplingOptions& s = r.options.sampling;
  s.temperature = 1.0f;  // OpenAI's and vLLM's default
  if (!is_null_or_absent(body, "temperature"))
    s.temperature = float(number_field(body, "temperature", 0, 2, false));
  if (!is_null_or_absent(body, "top_p")) s.top_p = float(number_field(body, "top_p", 0, 1, true));
  if (!is_null_or_absent(body, "top_k")) {  // vLLM's extension; -1 and 0 mean off
    const int64_t k = integer_field(body, "top_k", -1, 1 << 20);
    s.top_k = k < 0 ? 0 : int(k);
  }
  if (!is_null_or_absent(body, "repetition_penalty"))
    s.repetition_penalty = float(number_field(body, "repetition_penalty", 0, 10, true));
  if (!is_null_or_absent(body, "seed")) {
    s.seed = uint64_t(integer_field(body, "seed", INT64_MIN, INT64_MAX));
  } else {
    std::random_device rd;  // no seed: every request samples differently, as OpenAI's
    s.seed = (uint64_t(rd()) << 32) ^ rd();
  }
}

void stops(const json& body, const ChatLimits& lim, ChatCompletionRequest& r) {
  if (is_null_or_absent(body, "stop")) return;
  const json& v = body["stop"];
  std::vector<std::string> list;
  if (v.is_string()) {
    list.push_back(v.get<std::string>());
  } else if (v.is_array()) {
    for (const json& s : v) {
      if (!s.is_string()) bad("stop must be a string or an array of strings");
      list.push_back(s.get<std::string>());
    }
  } else {
    bad("stop must be a string or an array of strings");
  }
  if (list.size() > lim.max_stop) bad("at most " + std::to_string(lim.max_stop) + " stop strings");
  for (const std::string& s : list)
    if (s.empty() || s.size() > lim.max_stop_bytes)
      bad("a stop string must hold 1.." + std::to_string(lim.max_stop_bytes) + " bytes");
  r.options.stop = std::move(list);
}

}  // namespace

ChatCompletionRequest parse_chat_request(const HttpRequest& req, const ChatLimits& lim) {
  std::string type = req.header("content-type");
  for (char& c : type) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (!type.empty() && type.rfind("application/json", 0) != 0)
    throw ApiError(415, "unsupported_media",
                   "send the chat request as JSON (Content-Type: application/json)");
  const json body = parse_json_limited(req.body);
  if (!body.is_object()) throw ApiError(400, "invalid_json", "the body must be a JSON object");
  ChatCompletionRequest r;
  refuse_unsupported(body);
  if (!is_null_or_absent(body, "model")) {
    if (!body["model"].is_string()) bad("model must be a string");
    r.model = body["model"].get<std::string>();
  }
  for (const char* k : {"max_completion_tokens", "max_tokens"})
    if (!is_null_or_absent(body, k)) {
      r.options.max_new_tokens = size_t(integer_field(body, k, 1, 1 << 20));
      break;
    }
  sampling(body, r);
  stops(body, lim, r);
  if (!is_null_or_absent(body, "logprobs")) r.options.logprobs = bool_field(body, "logprobs");
  if (!is_null_or_absent(body, "top_logprobs")) {
    r.options.top_logprobs =
        size_t(integer_field(body, "top_logprobs", 0, int64_t(lim.max_top_logprobs)));
    if (r.options.top_logprobs > 0 && !r.options.logprobs) bad("top_logprobs needs logprobs: true");
  }
  if (!is_null_or_absent(body, "return_tokens_as_token_ids"))
    r.tokens_as_ids = bool_field(body, "return_tokens_as_token_ids");
  if (!is_null_or_absent(body, "stream")) r.stream = bool_field(body, "stream");
  if (!is_null_or_absent(body, "stream_options")) {
    if (!r.stream) bad("stream_options needs stream: true");
    const json& so = body["stream_options"];
    if (!so.is_object()) bad("stream_options must be an object");
    if (!is_null_or_absent(so, "include_usage")) r.include_usage = bool_field(so, "include_usage");
  }
  // vLLM's template switches: StepFun's client sends them (continue_final_message for a last
  // message left open with eot: false, e.g. an assistant prefix).
  bool add_prompt = true, cont = false;
  const bool add_given = !is_null_or_absent(body, "add_generation_prompt");
  if (add_given) add_prompt = bool_field(body, "add_generation_prompt");
  if (!is_null_or_absent(body, "continue_final_message"))
    cont = bool_field(body, "continue_final_message");
  if (cont && add_given && add_prompt)
    bad("continue_final_message and add_generation_prompt cannot both be true");
  if (!body.contains("messages")) bad("messages is required");
  Parser(lim, r).messages(body["messages"]);
  if (cont) {
    ChatMessage& last = r.messages.back();
    if (last.form == ChatMessage::Form::open)
      bad("continue_final_message needs a final message with content");
    last.eot = false;
    add_prompt = false;
  }
  r.options.add_generation_prompt = add_prompt;
  return r;
}

}  // namespace stepaudio::server
