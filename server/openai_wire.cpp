// openai_wire.h: request bodies and answers of the OpenAI chat-completions protocol.
#include "openai_wire.h"

#include <cstring>

#include "crypto.h"
#include "stepaudio/error.h"

namespace stepaudio::server {

using nlohmann::json;

namespace {
void put_le(std::string& s, uint32_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) s += char((v >> (8 * i)) & 0xff);
}

json part_json(const ChatPart& p) {
  if (p.kind == ChatPart::Kind::text) return {{"type", "text"}, {"text", p.text}};
  return {{"type", "input_audio"},
          {"input_audio", {{"data", encode_base64(wav_f32(p.pcm16k))}, {"format", "wav"}}}};
}

std::string token_bytes(const json& e) {
  if (e.contains("bytes") && e["bytes"].is_array()) {
    std::string b;
    for (const json& x : e["bytes"])
      if (x.is_number_integer()) b += char(x.get<int>() & 0xff);
    return b;
  }
  return e.value("token", std::string());
}

int32_t token_id(const json& e) {
  const std::string t = e.value("token", std::string());
  if (t.rfind("token_id:", 0) == 0) {
    try {
      return int32_t(std::stol(t.substr(9)));
    } catch (...) {
    }
  }
  return -1;
}

std::vector<ChatTokenLogprob> logprobs_of(const json& choice) {
  std::vector<ChatTokenLogprob> out;
  if (!choice.contains("logprobs") || !choice["logprobs"].is_object()) return out;
  const json& lp = choice["logprobs"];
  if (!lp.contains("content") || !lp["content"].is_array()) return out;
  for (const json& e : lp["content"]) {
    if (!e.is_object()) continue;
    ChatTokenLogprob t;
    t.id = token_id(e);
    t.bytes = token_bytes(e);
    t.text = e.value("token", std::string());
    t.logprob = e.value("logprob", -9999.0);
    if (e.contains("top_logprobs") && e["top_logprobs"].is_array())
      for (const json& a : e["top_logprobs"])
        if (a.is_object())
          t.top.push_back({token_id(a), token_bytes(a), a.value("token", std::string()),
                           a.value("logprob", -9999.0)});
    out.push_back(std::move(t));
  }
  return out;
}

void apply_usage(const json& j, ChatResult& r) {
  if (!j.contains("usage") || !j["usage"].is_object()) return;
  const json& u = j["usage"];
  if (u.contains("prompt_tokens") && u["prompt_tokens"].is_number_unsigned())
    r.prompt_tokens = u["prompt_tokens"].get<size_t>();
  if (u.contains("completion_tokens") && u["completion_tokens"].is_number_unsigned())
    r.completion_tokens = u["completion_tokens"].get<size_t>();
  if (u.contains("prompt_tokens_details") && u["prompt_tokens_details"].is_object())
    r.audio_tokens = u["prompt_tokens_details"].value("audio_tokens", size_t(0));
}

void apply_finish(const json& choice, ChatResult& r) {
  if (choice.contains("finish_reason") && choice["finish_reason"].is_string())
    r.finish_reason = choice["finish_reason"].get<std::string>();
  if (choice.contains("stop_reason") && choice["stop_reason"].is_string())
    r.stop_string = choice["stop_reason"].get<std::string>();
}

void throw_if_error(const json& j) {
  if (j.contains("error") && !j["error"].is_null()) {
    std::string code;
    const std::string msg = error_message(j.dump(), &code);
    throw Error(Errc::backend_error, "the inference backend failed mid-answer" +
                                         (code.empty() ? std::string() : " (" + code + ")") + ": " +
                                         msg);
  }
}
}  // namespace

std::string wav_f32(const std::vector<float>& pcm) {
  const uint32_t data = uint32_t(pcm.size() * 4);
  std::string s;
  s.reserve(44 + data);
  s += "RIFF";
  put_le(s, 36 + data, 4);
  s += "WAVEfmt ";
  put_le(s, 16, 4);
  put_le(s, 3, 2);  // WAVE_FORMAT_IEEE_FLOAT
  put_le(s, 1, 2);  // mono
  put_le(s, 16000, 4);
  put_le(s, 16000 * 4, 4);
  put_le(s, 4, 2);
  put_le(s, 32, 2);
  s += "data";
  put_le(s, data, 4);
  const size_t at = s.size();
  s.resize(at + data);
  static_assert(sizeof(float) == 4);
  // Little-endian hosts only (x86-64, aarch64): the floats are written as they are in memory.
  if (data) std::memcpy(s.data() + at, pcm.data(), data);
  return s;
}

json chat_request_json(const std::vector<ChatMessage>& messages, const ChatOptions& o,
                       const std::string& model, bool stream) {
  json msgs = json::array();
  bool continue_last = false;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    const bool last = i + 1 == messages.size();
    json j = {{"role", m.role}};
    if (m.form == ChatMessage::Form::string) {
      std::string text;
      for (const auto& p : m.parts) text += p.text;
      j["content"] = text;
    } else if (m.form == ChatMessage::Form::list) {
      json parts = json::array();
      for (const auto& p : m.parts) parts.push_back(part_json(p));
      j["content"] = std::move(parts);
    }  // open: no content (the assistant turn the model continues)
    if (m.form != ChatMessage::Form::open && !m.eot) {
      if (last)
        continue_last = true;
      else
        j["eot"] = false;
    }
    msgs.push_back(std::move(j));
  }
  json body = {{"messages", std::move(msgs)}};
  if (!model.empty()) body["model"] = model;
  if (o.max_new_tokens) body["max_tokens"] = o.max_new_tokens;
  const SamplingOptions& s = o.sampling;
  body["temperature"] = s.temperature > 0 ? double(s.temperature) : 0.0;
  if (s.top_p < 1) body["top_p"] = s.top_p;
  if (s.top_k > 0) body["top_k"] = s.top_k;
  if (s.repetition_penalty != 1) body["repetition_penalty"] = s.repetition_penalty;
  if (s.seed && s.temperature > 0) body["seed"] = s.seed;
  if (!o.stop.empty()) body["stop"] = o.stop;
  if (o.logprobs) {
    body["logprobs"] = true;
    if (o.top_logprobs) body["top_logprobs"] = o.top_logprobs;
  }
  if (continue_last) {
    body["continue_final_message"] = true;
    body["add_generation_prompt"] = false;
  } else if (!o.add_generation_prompt) {
    body["add_generation_prompt"] = false;
  }
  body["stream"] = stream;
  if (stream) body["stream_options"] = {{"include_usage", true}};
  return body;
}

ChatDelta apply_chat_chunk(const json& j, ChatResult& r) {
  throw_if_error(j);
  apply_usage(j, r);
  ChatDelta d;
  if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty()) return d;
  const json& c = j["choices"][0];
  if (c.contains("delta") && c["delta"].is_object()) {
    const json& delta = c["delta"];
    if (delta.contains("content") && delta["content"].is_string())
      d.text = delta["content"].get<std::string>();
  }
  d.logprobs = logprobs_of(c);
  apply_finish(c, r);
  r.text += d.text;
  r.logprobs.insert(r.logprobs.end(), d.logprobs.begin(), d.logprobs.end());
  for (const auto& t : d.logprobs)
    if (t.id >= 0) r.tokens.push_back(t.id);
  return d;
}

ChatDelta apply_chat_answer(const json& j, ChatResult& r) {
  throw_if_error(j);
  apply_usage(j, r);
  ChatDelta d;
  if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty())
    throw Error(Errc::backend_error, "the inference backend's answer has no choices");
  const json& c = j["choices"][0];
  if (c.contains("message") && c["message"].is_object() && c["message"].contains("content") &&
      c["message"]["content"].is_string())
    d.text = c["message"]["content"].get<std::string>();
  d.logprobs = logprobs_of(c);
  apply_finish(c, r);
  r.text += d.text;
  r.logprobs.insert(r.logprobs.end(), d.logprobs.begin(), d.logprobs.end());
  return d;
}

std::string error_message(const std::string& body, std::string* code) {
  const json j = json::parse(body, nullptr, false);
  if (j.is_object()) {
    const json* e = &j;
    if (j.contains("error")) {
      if (j["error"].is_string()) return j["error"].get<std::string>();
      if (j["error"].is_object()) e = &j["error"];
    }
    if (code && e->contains("code") && (*e)["code"].is_string())
      *code = (*e)["code"].get<std::string>();
    if (e->contains("message") && (*e)["message"].is_string())
      return (*e)["message"].get<std::string>();
  }
  return body.substr(0, 300);
}

}  // namespace stepaudio::server
