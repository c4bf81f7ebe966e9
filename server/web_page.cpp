// The web page's answer and its Content-Security-Policy (web_page.h).
#include "web_page.h"

#include "crypto.h"

namespace stepaudio::server {

namespace {

const char kIndexHtml[] =
#include "web_index.inc"
    ;

// The browser hashes a block's text after its parser turned CR LF and lone CR into LF.
std::string normalize_newlines(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\r') {
      out += text[i];
    } else {
      out += '\n';
      if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
    }
  }
  return out;
}

// 'sha256-...' sources of the blocks of one element (`script` or `style`), space-separated.
std::string block_hashes(std::string_view html, std::string_view tag) {
  std::string open = "<", close = "</";
  open += tag;
  close += tag;
  std::string sources;
  size_t pos = 0;
  while ((pos = html.find('<', pos)) != std::string_view::npos) {
    if (html.compare(pos, 4, "<!--") == 0) {
      const size_t end = html.find("-->", pos + 4);
      if (end == std::string_view::npos) break;
      pos = end + 3;
      continue;
    }
    const size_t after = pos + open.size();
    if (html.compare(pos, open.size(), open) != 0 || after >= html.size() ||
        (html[after] != '>' && html[after] != ' ' && html[after] != '\n')) {
      ++pos;
      continue;
    }
    const size_t body = html.find('>', after);
    if (body == std::string_view::npos) break;
    const size_t end = html.find(close, body + 1);
    if (end == std::string_view::npos) break;
    if (!sources.empty()) sources += ' ';
    sources +=
        "'sha256-" + sha256_base64(normalize_newlines(html.substr(body + 1, end - body - 1))) + "'";
    pos = end + close.size();
  }
  return sources.empty() ? "'none'" : sources;
}

}  // namespace

std::string_view web_page_html() {
  return {kIndexHtml, sizeof(kIndexHtml) - 1};
}

std::string web_content_security_policy(std::string_view html) {
  return "default-src 'self'; script-src " + block_hashes(html, "script") + "; style-src " +
         block_hashes(html, "style") +
         "; img-src 'self' data:; media-src 'self' blob:; object-src 'none'; base-uri 'none'; "
         "form-action 'none'; frame-ancestors 'none'";
}

HttpResponse web_page_response() {
  static const std::string csp = web_content_security_policy(web_page_html());
  HttpResponse r;
  r.content_type = "text/html; charset=utf-8";
  r.body = std::string(web_page_html());
  r.headers = {{"Content-Security-Policy", csp},
               {"X-Content-Type-Options", "nosniff"},
               {"Referrer-Policy", "no-referrer"},
               {"X-Frame-Options", "DENY"},
               {"Permissions-Policy", "microphone=(self), camera=(), geolocation=()"},
               {"Cache-Control", "no-cache"}};
  return r;
}

}  // namespace stepaudio::server
