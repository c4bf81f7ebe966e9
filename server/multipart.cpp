// multipart/form-data parsing (RFC 7578 over the RFC 2046 multipart syntax).
//
// Cost model: the body is attacker-controlled and may be large (an audio upload), so the work is
// linear in its size with a small constant, whatever the boundary and the bytes. Delimiters
// ("\r\n--" + boundary) are found with std::string_view::find, which memchr()s for the first byte
// and compares at most 74 bytes per hit, and the scan only moves forward. Measured worst case (a
// body of nothing but CRs) ~20 ms/MB at -O2; std::boyer_moore_horspool_searcher was 5x worse on a
// body of 'a's with a boundary of 'a's (its O(n * m) case) and no faster on audio. Header blocks
// are searched only inside a max_header_bytes window and the part count is capped, so header work
// is bounded by max_parts * max_header_bytes.
#include "multipart.h"

#include <algorithm>
#include <string>
#include <unordered_set>
#include <utility>

namespace stepaudio::server {
namespace {

constexpr size_t kMaxBoundary = 70;  // RFC 2046 section 5.1.1

bool is_lwsp(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_lwsp(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_lwsp(s.back())) s.remove_suffix(1);
  return s;
}

char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return ascii_lower(x) == ascii_lower(y);
         });
}

// RFC 7230 tchar: the characters allowed in header names, parameter names and unquoted values.
bool is_tchar(char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// RFC 2045 tspecials: the only characters a backslash escapes inside a quoted value (below).
bool is_tspecial(char c) {
  return std::string_view("()<>@,;:\\\"/[]?=").find(c) != std::string_view::npos;
}

// A header value of the form `type *(";" name "=" (token | quoted-string))`, as Content-Type and
// Content-Disposition use. Parameter names are lowercased; a repeated parameter makes the value
// malformed, since two readers picking different copies is how smuggling bugs start.
struct HeaderValue {
  std::string type;
  std::vector<std::pair<std::string, std::string>> params;

  const std::string* param(std::string_view name) const {
    for (const auto& [k, v] : params)
      if (k == name) return &v;
    return nullptr;
  }
};

std::optional<HeaderValue> parse_header_value(std::string_view s) {
  HeaderValue out;
  size_t i = 0;
  auto skip_ws = [&] {
    while (i < s.size() && is_lwsp(s[i])) ++i;
  };
  auto token = [&] {
    size_t start = i;
    while (i < s.size() && (is_tchar(s[i]) || s[i] == '/')) ++i;
    return s.substr(start, i - start);
  };
  skip_ws();
  std::string_view type = token();
  if (type.empty()) return std::nullopt;
  for (char c : type) out.type += ascii_lower(c);
  for (;;) {
    skip_ws();
    if (i == s.size()) return out;
    if (s[i++] != ';') return std::nullopt;
    skip_ws();
    if (i == s.size()) return out;  // a trailing ";" is common and harmless
    if (s[i] == ';') continue;
    std::string name;
    for (char c : token()) name += ascii_lower(c);
    skip_ws();
    if (name.empty() || i == s.size() || s[i++] != '=') return std::nullopt;
    skip_ws();
    std::string value;
    if (i < s.size() && s[i] == '"') {
      // Quoted string. Browsers and curl >= 7.81 percent-encode '"' in file names and send '\'
      // raw (C:\dir\a.wav), so like Go's mime package a backslash only escapes a tspecial.
      ++i;
      for (;;) {
        if (i == s.size()) return std::nullopt;  // unterminated
        char c = s[i++];
        if (c == '"') break;
        if (c == '\\' && i < s.size() && is_tspecial(s[i])) c = s[i++];
        value += c;
      }
    } else {
      // Unquoted: strictly a token, but clients put boundaries like "a:b" or "x=y" here unquoted,
      // so take everything up to the next ';' or whitespace.
      size_t start = i;
      while (i < s.size() && s[i] != ';' && s[i] != '"' && !is_lwsp(s[i])) ++i;
      if (i == start) return std::nullopt;
      value = s.substr(start, i - start);
    }
    if (out.param(name)) return std::nullopt;
    out.params.emplace_back(std::move(name), std::move(value));
  }
}

// What follows a candidate "--boundary" in the body.
enum class DelimiterKind { kNone, kPart, kClose };

// Classifies the bytes after a candidate delimiter at `after` and sets `next` to the first byte
// after its line. RFC 2046 allows transport padding (spaces/tabs) before the CRLF; anything else
// means the match was part data that happened to start like the boundary.
DelimiterKind classify_delimiter(std::string_view body, size_t after, size_t& next) {
  bool close = body.compare(after, 2, "--") == 0;
  size_t i = close ? after + 2 : after;
  while (i < body.size() && is_lwsp(body[i])) ++i;
  if (body.compare(i, 2, "\r\n") == 0) {
    next = i + 2;
  } else if (close && i == body.size()) {
    next = i;  // close delimiter at the very end, no epilogue
  } else {
    return DelimiterKind::kNone;
  }
  return close ? DelimiterKind::kClose : DelimiterKind::kPart;
}

// One part's header block (the text before the blank line, without the final CRLF).
void parse_part_headers(std::string_view block, std::string_view dash_boundary,
                        MultipartPart& part) {
  bool have_disposition = false, have_type = false;
  // Unfold first (RFC 5322 obs-fold: a line starting with whitespace continues the previous one)
  // by collecting logical lines as (name, value).
  std::vector<std::pair<std::string_view, std::string>> fields;
  size_t pos = 0;
  while (!block.empty() && pos <= block.size()) {
    size_t eol = block.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = block.size();
    std::string_view line = block.substr(pos, eol - pos);
    pos = eol + 2;
    // A delimiter inside the header block means the part never had its blank line.
    if (line.substr(0, dash_boundary.size()) == dash_boundary)
      throw MultipartError("malformed multipart part: header block without blank line");
    if (!line.empty() && is_lwsp(line.front())) {
      if (fields.empty()) throw MultipartError("malformed multipart part header");
      fields.back().second += ' ';
      fields.back().second += trim(line);
      continue;
    }
    size_t colon = line.find(':');
    std::string_view name = line.substr(0, colon);
    if (colon == std::string_view::npos || name.empty() ||
        !std::all_of(name.begin(), name.end(), is_tchar))
      throw MultipartError("malformed multipart part header");
    fields.emplace_back(name, std::string(trim(line.substr(colon + 1))));
  }
  for (const auto& [name, value] : fields) {
    if (iequals(name, "content-disposition")) {
      if (have_disposition) throw MultipartError("multipart part has two Content-Disposition");
      have_disposition = true;
      auto hv = parse_header_value(value);
      if (!hv) throw MultipartError("malformed Content-Disposition in multipart part");
      if (hv->type != "form-data")
        throw MultipartError("multipart part is not form-data: " + hv->type);
      const std::string* n = hv->param("name");
      if (!n || n->empty()) throw MultipartError("multipart part without a field name");
      part.name = *n;
      if (const std::string* f = hv->param("filename")) part.filename = *f;
    } else if (iequals(name, "content-type")) {
      if (have_type) throw MultipartError("multipart part has two Content-Type");
      have_type = true;
      part.content_type = value;
    }
    // Other headers (Content-Transfer-Encoding, ...) are deprecated by RFC 7578 and ignored.
  }
  if (!have_disposition) throw MultipartError("multipart part without Content-Disposition");
}

}  // namespace

std::optional<std::string> multipart_boundary(std::string_view content_type) {
  auto hv = parse_header_value(content_type);
  if (!hv || hv->type != "multipart/form-data") return std::nullopt;
  const std::string* b = hv->param("boundary");
  if (!b || b->empty() || b->size() > kMaxBoundary || b->back() == ' ') return std::nullopt;
  // RFC 2046 restricts boundaries to a small set (bchars); accept any printable ASCII so that odd
  // but harmless clients still work, while control characters and CR/LF are never let through.
  for (char c : *b)
    if (c < 0x20 || c > 0x7e) return std::nullopt;
  return *b;
}

std::vector<MultipartPart> parse_multipart(std::string_view body, std::string_view boundary,
                                           const MultipartLimits& limits) {
  if (boundary.empty() || boundary.size() > kMaxBoundary)
    throw MultipartError("invalid multipart boundary");
  // Every delimiter but one at the very start of the body is preceded by CRLF, which belongs to
  // the delimiter, not to the data before it.
  const std::string delimiter = "\r\n--" + std::string(boundary);
  const std::string_view dash_boundary = std::string_view(delimiter).substr(2);

  // Finds the next real delimiter at or after `from`: returns its start (the CR) and sets kind and
  // next; skips matches that are not followed by padding + CRLF (or "--").
  auto find_delimiter = [&](size_t from, DelimiterKind& kind, size_t& next) {
    while (from < body.size()) {
      size_t at = body.find(delimiter, from);
      if (at == std::string_view::npos) break;
      kind = classify_delimiter(body, at + delimiter.size(), next);
      if (kind != DelimiterKind::kNone) return at;
      from = at + 1;
    }
    kind = DelimiterKind::kNone;
    return std::string_view::npos;
  };

  DelimiterKind kind = DelimiterKind::kNone;
  size_t pos = 0;  // first byte of the current part (after its delimiter line)
  if (body.substr(0, dash_boundary.size()) == dash_boundary)
    kind = classify_delimiter(body, dash_boundary.size(), pos);
  if (kind == DelimiterKind::kNone && find_delimiter(0, kind, pos) == std::string_view::npos) {
    if (body.find(dash_boundary) == std::string_view::npos)
      throw MultipartError("multipart body does not contain its boundary");
    throw MultipartError("truncated multipart body: no closing boundary");
  }

  std::vector<MultipartPart> parts;
  std::unordered_set<std::string> names;
  while (kind == DelimiterKind::kPart) {
    if (parts.size() == limits.max_parts)
      throw MultipartError("too many multipart parts (limit " + std::to_string(limits.max_parts) +
                           ")");
    MultipartPart part;
    size_t data_start;
    if (body.compare(pos, 2, "\r\n") == 0) {
      data_start = pos + 2;
      parse_part_headers({}, dash_boundary, part);  // throws: no Content-Disposition
    } else {
      // Looked for only inside a window, so a header that never ends costs max_header_bytes.
      const size_t window_len = std::min(limits.max_header_bytes, body.size()) + 4;
      std::string_view window = body.substr(pos, window_len);
      size_t end = window.find("\r\n\r\n");
      if (end == std::string_view::npos) {
        if (window.find(delimiter) != std::string_view::npos)
          throw MultipartError("malformed multipart part: header block without blank line");
        if (window.size() < window_len)
          throw MultipartError("truncated multipart body: no closing boundary");
        throw MultipartError("multipart part header block over " +
                             std::to_string(limits.max_header_bytes) + " bytes");
      }
      parse_part_headers(window.substr(0, end), dash_boundary, part);
      data_start = pos + end + 4;
    }
    size_t data_end = find_delimiter(data_start, kind, pos);
    if (data_end == std::string_view::npos)
      throw MultipartError("truncated multipart body: no closing boundary");
    part.data = body.substr(data_start, data_end - data_start);
    if (part.filename.empty() && part.data.size() > limits.max_field_bytes)
      throw MultipartError("multipart field '" + part.name + "' over " +
                           std::to_string(limits.max_field_bytes) + " bytes");
    // Array fields (OpenAI's timestamp_granularities[]) repeat by design; any other name once.
    const bool array_field = part.name.size() > 2 && part.name.ends_with("[]");
    if (!array_field && !names.insert(part.name).second)
      throw MultipartError("duplicate multipart field '" + part.name + "'");
    parts.push_back(std::move(part));
  }
  return parts;  // kind == kClose: whatever follows is the epilogue, ignored
}

}  // namespace stepaudio::server
