// server/web_page.h: the Content-Security-Policy hashes of a page's inline blocks and the answer
// of GET /. Expected hashes computed with Python's hashlib + base64 (never by the code under
// test); the real page in a browser is tests/browser (browser_web_ui).
#include <gtest/gtest.h>

#include <string>

#include "server/crypto.h"
#include "server/web_page.h"

namespace stepaudio::server {
namespace {

std::string header(const HttpResponse& r, const std::string& name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return "";
}

TEST(WebPage, Sha256Base64Vectors) {
  EXPECT_EQ(sha256_base64(""), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
  EXPECT_EQ(sha256_base64("abc"), "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
}

TEST(WebPage, PolicyHashesEachInlineBlockAndSkipsComments) {
  const std::string html =
      "<!doctype html><!-- <script>x</script> <style>x</style> -->"
      "<style>a{}</style><scripts>no</scripts><script>alert(1)</script>";
  const std::string csp = web_content_security_policy(html);
  EXPECT_NE(csp.find("script-src 'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI=';"),
            std::string::npos)
      << csp;
  EXPECT_NE(csp.find("style-src 'sha256-X1RutGBrXCt9KkSaXMK7tHftWiRscFHOhxsS8tv8hBk=';"),
            std::string::npos)
      << csp;
  EXPECT_EQ(csp.find("LXEWQrcmsEQBYnyp"), std::string::npos) << "a commented-out block counted";
  EXPECT_EQ(csp.rfind("default-src 'self';", 0), 0u) << csp;
  EXPECT_EQ(csp.find("unsafe"), std::string::npos) << csp;
}

TEST(WebPage, PolicyHashesTextAsTheBrowserParsesIt) {
  // The HTML parser turns CR LF and lone CR into LF before the browser hashes a block.
  const std::string csp = web_content_security_policy("<script>a\r\nb\rc</script>");
  EXPECT_NE(csp.find("'sha256-6n+wi3otxGGf+3x7s42VogR5NfoWXXGxLv04UqLm0Mw='"), std::string::npos)
      << csp;
  // Nothing inline: nothing inline allowed.
  const std::string none = web_content_security_policy("<p>no blocks</p>");
  EXPECT_NE(none.find("script-src 'none';"), std::string::npos) << none;
  EXPECT_NE(none.find("style-src 'none';"), std::string::npos) << none;
  // An unterminated block is not allowed either.
  EXPECT_NE(web_content_security_policy("<script>x").find("script-src 'none';"), std::string::npos);
}

TEST(WebPage, AnswerIsThePageWithItsHeaders) {
  const HttpResponse r = web_page_response();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "text/html; charset=utf-8");
  EXPECT_EQ(r.body, web_page_html());
  EXPECT_EQ(r.body.rfind("<!doctype html>", 0), 0u);
  EXPECT_EQ(header(r, "Content-Security-Policy"), web_content_security_policy(r.body));
  EXPECT_EQ(header(r, "X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(header(r, "Referrer-Policy"), "no-referrer");
  EXPECT_EQ(header(r, "Cache-Control"), "no-cache");
  EXPECT_EQ(header(r, "X-Frame-Options"), "DENY");
}

}  // namespace
}  // namespace stepaudio::server
