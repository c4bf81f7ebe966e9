// GET / and HEAD /: the one-page web UI (server/web/index.html), compiled into the binary. Open to
// everyone and never rate-limited: the page holds no data and asks for the API key itself; every
// request it makes carries the key like any other client's.
// Thread-safety: free functions; the answer is built once, on first use, thread-safely.
#pragma once

#include <string>
#include <string_view>

#include "http_server.h"

namespace stepaudio::server {

// The page's HTML as compiled in.
std::string_view web_page_html();

// The Content-Security-Policy of a page: nothing from another origin; the page's inline <script>
// and <style> blocks are allowed by the SHA-256 of their text (exactly what lies between the
// tags, as the browser hashes it), nothing else inline; fetch() to this origin only; blob: media
// (the preview of a recording). Blocks inside <!-- comments --> are not blocks.
std::string web_content_security_policy(std::string_view html);

// The 200 answer with the page and its headers (Content-Security-Policy, nosniff, no referrer,
// no caching without revalidation, no framing).
HttpResponse web_page_response();

}  // namespace stepaudio::server
