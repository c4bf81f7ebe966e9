// Submission bodies (routes.h parse_submission): the seed's JSON, the hosted plan's
// {"input": {"audio", "task", "target_length"}}, multipart/form-data with a `file` part, or the
// recording as the raw body with options in the query string.
#include <algorithm>
#include <cctype>

#include "api_error.h"
#include "crypto.h"
#include "multipart.h"
#include "routes.h"

namespace stepaudio::server {

using nlohmann::json;

namespace {

constexpr int kMaxJsonDepth = 32;

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// "10" -> 10; anything else (sign, spaces, overflow) is a 400 naming the field.
json integer_field(const std::string& name, const std::string& v) {
  if (v.empty() || v.size() > 9 || !std::all_of(v.begin(), v.end(), ::isdigit))
    throw ApiError(400, "invalid_argument", name + " must be a positive integer");
  return std::stoll(v);
}

json bool_field(const std::string& name, const std::string& v) {
  const std::string l = lower(v);
  if (l == "true" || l == "1") return true;
  if (l == "false" || l == "0") return false;
  throw ApiError(400, "invalid_argument", name + " must be true or false");
}

// Form fields and query parameters arrive as text: typed like the JSON fields.
json typed_field(const std::string& name, const std::string& v) {
  if (name == "target_length") return integer_field(name, v);
  if (name == "cache") return bool_field(name, v);
  return v;
}

// base64 of a data: URI (RFC 2397), for clients that inline a short recording in JSON.
std::string decode_data_uri(const std::string& uri) {
  const size_t comma = uri.find(',');
  if (comma == std::string::npos || uri.substr(0, comma).find(";base64") == std::string::npos)
    throw ApiError(400, "invalid_url", "a data: URI must be base64 (data:audio/wav;base64,...)");
  std::optional<std::string> bytes = decode_base64(std::string_view(uri).substr(comma + 1));
  if (!bytes) throw ApiError(400, "invalid_argument", "bad base64 in data: URI");
  return std::move(*bytes);
}

// A URL as a client may send it: printable ASCII only (IRIs must be percent-encoded), so what
// is checked, stored and fetched is exactly one string.
std::string url_field(const std::string& name, const json& v) {
  if (!v.is_string()) throw ApiError(400, "invalid_argument", name + " must be a string");
  const std::string s = v.get<std::string>();
  if (s.size() > 8192) throw ApiError(400, "invalid_url", name + " is longer than 8192 bytes");
  for (unsigned char c : s)
    if (c <= 0x20 || c >= 0x7f)
      throw ApiError(400, "invalid_url",
                     name + " must be printable ASCII (percent-encode the rest)");
  return s;
}

// Fills the request from a JSON object of options (flat, or the hosted plan's "input").
void apply_fields(const json& fields, SubmitRequest& r) {
  if (!fields.is_object()) throw ApiError(400, "invalid_json", "the body must be a JSON object");
  json options = json::object();
  for (auto& [k, v] : fields.items()) {
    if (k == "audio_url" || k == "audio" || k == "url") {
      if (!v.is_string()) throw ApiError(400, "invalid_argument", k + " must be a string");
      const std::string s = v.get<std::string>();
      if (s.rfind("data:", 0) == 0)
        r.audio = decode_data_uri(s);
      else
        r.audio_url = url_field(k, v);
    } else if (k == "webhook_url") {
      r.webhook_url = url_field(k, v);
    } else if (k == "task" || k == "target_length" || k == "language" || k == "cache") {
      options[k] = v;
    }
    // Other fields (e.g. the hosted plan's "version", a client's metadata) are ignored.
  }
  try {
    (void)options.dump();  // form fields and query values are bytes: they must be UTF-8 text
  } catch (const json::exception&) {
    throw ApiError(400, "invalid_argument", "a form field or query value is not valid UTF-8");
  }
  r.options = JobOptions::from_json(options);
}

}  // namespace

json parse_json_limited(const std::string& body) {
  try {
    return json::parse(body, [](int depth, json::parse_event_t, json&) {
      if (depth > kMaxJsonDepth)
        throw ApiError(400, "invalid_json", "JSON nested deeper than 32 levels");
      return true;
    });
  } catch (const json::exception& e) {
    throw ApiError(400, "invalid_json", std::string("malformed JSON: ") + e.what());
  }
}

std::string idempotency_key(const HttpRequest& req) {
  std::string key = req.header("idempotency-key");
  if (key.empty()) return key;
  // Visible ASCII, as the IETF draft's examples and every client library use (UUIDs, ULIDs).
  const bool ok = key.size() <= 255 && std::all_of(key.begin(), key.end(),
                                                   [](char c) { return c >= 0x21 && c <= 0x7e; });
  if (!ok)
    throw ApiError(400, "invalid_argument",
                   "Idempotency-Key must be 1 to 255 visible ASCII characters");
  return key;
}

SubmitRequest parse_submission(const HttpRequest& req) {
  SubmitRequest r;
  r.idempotency_key = idempotency_key(req);
  const std::string type = lower(req.header("content-type"));
  if (type.rfind("application/json", 0) == 0) {
    json doc = parse_json_limited(req.body);
    if (doc.is_object() && doc.contains("input")) {
      json fields = doc["input"];
      if (fields.is_object() && doc.contains("webhook_url"))
        fields["webhook_url"] = doc["webhook_url"];
      apply_fields(fields, r);
    } else {
      apply_fields(doc, r);
    }
    if (r.audio.empty() && r.audio_url.empty())
      throw ApiError(400, "invalid_argument", "no audio: give audio_url (or input.audio)");
    return r;
  }
  if (type.rfind("multipart/", 0) == 0) {
    auto boundary = multipart_boundary(req.header("content-type"));
    if (!boundary) throw ApiError(400, "bad_multipart", "multipart body without a valid boundary");
    std::vector<MultipartPart> parts;
    try {
      parts = parse_multipart(req.body, *boundary);
    } catch (const MultipartError& e) {
      throw ApiError(400, "bad_multipart", e.what());
    }
    json fields = json::object();
    for (const auto& p : parts) {
      if (p.name == "file") {
        r.audio.assign(p.data);
      } else {
        fields[p.name] = typed_field(p.name, std::string(p.data));
      }
    }
    apply_fields(fields, r);
    if (r.audio.empty() && r.audio_url.empty())
      throw ApiError(400, "invalid_argument", "no audio: send a `file` part (or audio_url)");
    return r;
  }
  if (type.rfind("audio/", 0) == 0 || type.rfind("video/", 0) == 0 ||
      type.rfind("application/octet-stream", 0) == 0 || (type.empty() && !req.body.empty())) {
    if (req.body.empty()) throw ApiError(400, "invalid_argument", "empty body: no audio");
    json fields = json::object();
    for (const auto& [k, v] : req.query) fields[k] = typed_field(k, v);
    for (const char* k : {"audio_url", "audio", "url"}) fields.erase(k);  // the body is the audio
    apply_fields(fields, r);
    r.audio = req.body;
    return r;
  }
  if (req.body.empty()) throw ApiError(400, "invalid_argument", "empty body: no audio");
  throw ApiError(415, "unsupported_media",
                 "Content-Type " + type +
                     " is not accepted: use application/json, multipart/form-data or audio/*");
}

}  // namespace stepaudio::server
