// The service's pure parts: multipart/form-data parsing, the Prometheus exposition and the
// transcript response formats, each against bytes written by hand or by independent tooling.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "server/api_error.h"
#include "server/crypto.h"
#include "server/metrics.h"
#include "server/multipart.h"
#include "server/routes.h"
#include "server/transcript_formats.h"

using namespace stepaudio::server;
using namespace std::string_literals;

namespace {

// What `curl -F file=@hostname -F model=whisper-1` sends (curl 7.88's layout), written by hand.
const std::string kCurlBoundary = "------------------------d74496d66958873e";
const std::string kCurlBody =
    "--------------------------d74496d66958873e\r\n"
    "Content-Disposition: form-data; name=\"file\"; filename=\"hostname\"\r\n"
    "Content-Type: application/octet-stream\r\n"
    "\r\n"
    "myhost\n"
    "\r\n"
    "--------------------------d74496d66958873e\r\n"
    "Content-Disposition: form-data; name=\"model\"\r\n"
    "\r\n"
    "whisper-1\r\n"
    "--------------------------d74496d66958873e--\r\n";

// A form with a single text field: `--b` + headers + value + close.
std::string field(const std::string& boundary, const std::string& name, const std::string& value) {
  return "--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n\r\n" +
         value + "\r\n";
}

std::string error_of(std::string_view body, std::string_view boundary,
                     const MultipartLimits& limits = {}) {
  try {
    parse_multipart(body, boundary, limits);
  } catch (const MultipartError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Multipart, BoundaryFromContentType) {
  EXPECT_EQ(multipart_boundary("multipart/form-data; boundary=" + kCurlBoundary), kCurlBoundary);
  EXPECT_EQ(multipart_boundary("Multipart/Form-Data;BOUNDARY=\"a b;c\""), "a b;c");
  EXPECT_EQ(multipart_boundary("multipart/form-data; charset=utf-8; boundary=xyz ;"), "xyz");
  EXPECT_EQ(multipart_boundary("multipart/form-data; boundary=\"q\\\"x\""), "q\"x");
  EXPECT_EQ(multipart_boundary("multipart/form-data; boundary=" + std::string(70, 'a')),
            std::string(70, 'a'));
  EXPECT_FALSE(multipart_boundary("multipart/form-data; boundary=" + std::string(71, 'a')));
  EXPECT_FALSE(multipart_boundary("multipart/form-data; boundary=\"\""));
  EXPECT_FALSE(multipart_boundary("multipart/form-data; boundary=\"ab "));    // unterminated
  EXPECT_FALSE(multipart_boundary("multipart/form-data; boundary=\"ab \""));  // trailing space
  EXPECT_FALSE(multipart_boundary("multipart/form-data; boundary=\"a\rb\""));
  EXPECT_FALSE(multipart_boundary("multipart/form-data"));
  EXPECT_FALSE(multipart_boundary("multipart/mixed; boundary=abc"));
  EXPECT_FALSE(multipart_boundary("application/json"));
  EXPECT_FALSE(multipart_boundary("multipart/form-data; boundary=a; boundary=b"));
  EXPECT_FALSE(multipart_boundary(""));
}

TEST(Multipart, CurlUpload) {
  auto parts = parse_multipart(kCurlBody, kCurlBoundary);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].name, "file");
  EXPECT_EQ(parts[0].filename, "hostname");
  EXPECT_EQ(parts[0].content_type, "application/octet-stream");
  EXPECT_EQ(parts[0].data, "myhost\n");
  EXPECT_EQ(parts[1].name, "model");
  EXPECT_EQ(parts[1].filename, "");
  EXPECT_EQ(parts[1].content_type, "");
  EXPECT_EQ(parts[1].data, "whisper-1");
  // The views point into the body, not into a copy.
  EXPECT_GE(parts[1].data.data(), kCurlBody.data());
  EXPECT_LE(parts[1].data.data() + parts[1].data.size(), kCurlBody.data() + kCurlBody.size());
}

// Bytes from Python's urllib3.encode_multipart_formdata (used by requests), with binary data that
// holds CR, LF, NUL, 0xff and a line starting with "--".
TEST(Multipart, Urllib3BodyWithBinaryData) {
  const std::string body =
      "--9a3f0c7e1b2d4c5e\r\nContent-Disposition: form-data; name=\"file\"; "
      "filename=\"a b%22c.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n--x\r\n\x00\xff\r\n"
      "--9a3f0c7e1b2d4c5e\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
      "--9a3f0c7e1b2d4c5e\r\nContent-Disposition: form-data; name=\"language\"\r\n\r\nen\r\n"
      "--9a3f0c7e1b2d4c5e--\r\n"s;
  auto boundary = multipart_boundary("multipart/form-data; boundary=9a3f0c7e1b2d4c5e");
  ASSERT_TRUE(boundary);
  auto parts = parse_multipart(body, *boundary);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0].filename, "a b%22c.wav");
  EXPECT_EQ(parts[0].content_type, "audio/wav");
  EXPECT_EQ(parts[0].data, "RIFF\r\n--x\r\n\x00\xff"s);
  EXPECT_EQ(parts[1].data, "whisper-1");
  EXPECT_EQ(parts[2].name, "language");
  EXPECT_EQ(parts[2].data, "en");
}

TEST(Multipart, PartialBoundariesInDataArePartOfIt) {
  // "\r\n--bnd" followed by anything but padding+CRLF or "--" is data, as is "--bnd" mid-line.
  std::string data = "x\r\n--bn\r\n--bndX\r\n--bnd--y\r\n-- bnd--bnd\r\n\r\n";
  std::string body =
      "--bnd\r\nContent-Disposition: form-data; name=\"f\"; filename=\"f.bin\"\r\n"
      "\r\n" +
      data + "\r\n--bnd--";
  auto parts = parse_multipart(body, "bnd");
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].data, data);
}

TEST(Multipart, PreambleEpilogueAndPadding) {
  std::string body =
      "This is the preamble.\r\n--b \t\r\n"
      "content-disposition: FORM-DATA; name=a\r\n\r\n1\r\n--b\r\n"
      "CONTENT-DISPOSITION: form-data;\r\n  name=\"b\"; filename=\"C:\\dir\\x.wav\""
      "\r\nContent-Type: audio/wav\r\n\r\n2\r\n--b--  \r\nepilogue\r\n--b\r\n";
  auto parts = parse_multipart(body, "b");
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].name, "a");  // unquoted token
  EXPECT_EQ(parts[0].data, "1");
  EXPECT_EQ(parts[1].name, "b");                   // folded header line
  EXPECT_EQ(parts[1].filename, "C:\\dir\\x.wav");  // '\' before a non-tspecial is literal
  EXPECT_EQ(parts[1].data, "2");
  // Quoted names keep escaped quotes; the close delimiter may end the body.
  parts = parse_multipart(
      "--b\r\nContent-Disposition: form-data; name=\"a\\\"q\"; "
      "filename=\"x\\\\y\"\r\n\r\n\r\n--b--",
      "b");
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].name, "a\"q");
  EXPECT_EQ(parts[0].filename, "x\\y");
  EXPECT_EQ(parts[0].data, "");
  EXPECT_TRUE(parse_multipart("--b--\r\n", "b").empty());  // an empty form
}

TEST(Multipart, TruncatedBodies) {
  const std::string closed = kCurlBody.substr(0, kCurlBody.rfind("--\r\n"));
  EXPECT_EQ(error_of(closed, kCurlBoundary), "truncated multipart body: no closing boundary");
  for (size_t cut : {size_t{50}, size_t{100}, kCurlBody.size() / 2, kCurlBody.size() - 8})
    EXPECT_EQ(error_of(kCurlBody.substr(0, cut), kCurlBoundary),
              "truncated multipart body: no closing boundary")
        << cut;
  EXPECT_EQ(error_of(field("b", "a", "1"), "b"), "truncated multipart body: no closing boundary");
  EXPECT_NE(error_of("", "b"), "");
  EXPECT_NE(error_of("no boundary here", "b"), "");
  EXPECT_NE(error_of(kCurlBody, "other"), "");
}

TEST(Multipart, MalformedParts) {
  // No name, no Content-Disposition, not form-data, header without blank line, bad header line.
  EXPECT_NE(error_of("--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--", "b"), "");
  EXPECT_NE(error_of("--b\r\nContent-Disposition: form-data; name=\"\"\r\n\r\nx\r\n--b--", "b"),
            "");
  EXPECT_NE(error_of("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--", "b"), "");
  EXPECT_NE(error_of("--b\r\n\r\nx\r\n--b--", "b"), "");
  EXPECT_NE(error_of("--b\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--b--", "b"), "");
  EXPECT_NE(error_of("--b\r\nContent-Disposition: form-data; name=a\r\n--b--\r\n", "b"), "");
  EXPECT_NE(error_of("--b\r\nno colon\r\n\r\nx\r\n--b--", "b"), "");
  EXPECT_NE(error_of("--b\r\nContent-Disposition: form-data; name=\"a\r\n\r\nx\r\n--b--", "b"), "");
  EXPECT_NE(
      error_of("--b\r\nContent-Disposition: form-data; name=a; name=c\r\n\r\nx\r\n--b--", "b"), "");
  EXPECT_EQ(error_of(field("b", "a", "1") + field("b", "a", "2") + "--b--", "b"),
            "duplicate multipart field 'a'");
}

TEST(Multipart, Limits) {
  MultipartLimits limits;
  limits.max_parts = 2;
  limits.max_header_bytes = 100;
  limits.max_field_bytes = 5;
  std::string two = field("b", "a", "12345") + field("b", "c", "") + "--b--";
  EXPECT_EQ(parse_multipart(two, "b", limits).size(), 2u);
  std::string three = field("b", "a", "1") + field("b", "c", "2") + field("b", "d", "3") + "--b--";
  EXPECT_EQ(error_of(three, "b", limits), "too many multipart parts (limit 2)");
  EXPECT_EQ(error_of(field("b", "a", "123456") + "--b--", "b", limits),
            "multipart field 'a' over 5 bytes");
  // File parts are not capped by max_field_bytes (the server caps the whole body).
  std::string file = "--b\r\nContent-Disposition: form-data; name=f; filename=x\r\n\r\n" +
                     std::string(1000, 'z') + "\r\n--b--";
  EXPECT_EQ(parse_multipart(file, "b", limits).at(0).data.size(), 1000u);
  // A header block of exactly max_header_bytes passes; one byte more fails.
  std::string head = "Content-Disposition: form-data; name=a\r\nX-Pad: ";
  std::string ok = head + std::string(100 - head.size(), 'p');
  EXPECT_EQ(parse_multipart("--b\r\n" + ok + "\r\n\r\n1\r\n--b--", "b", limits).size(), 1u);
  EXPECT_EQ(error_of("--b\r\n" + ok + "p\r\n\r\n1\r\n--b--", "b", limits),
            "multipart part header block over 100 bytes");
  EXPECT_EQ(error_of("--b\r\n" + std::string(1 << 20, 'h'), "b", limits),
            "multipart part header block over 100 bytes");
}

TEST(Multipart, HostileBodiesTakeLinearTime) {
  std::string boundary = "boundary0123456789";
  std::string partials, crlf_partials;
  while (partials.size() < (1 << 20)) partials += "--bou";
  while (crlf_partials.size() < (1 << 20)) crlf_partials += "\r\n--boundary0123456789X";
  std::string in_data = "--" + boundary + "\r\nContent-Disposition: form-data; name=f\r\n\r\n";
  auto start = std::chrono::steady_clock::now();
  EXPECT_NE(error_of(partials, "bou"), "");  // "--bou" everywhere, none on its own line
  EXPECT_NE(error_of(partials, boundary), "");
  EXPECT_NE(error_of(in_data + partials, boundary), "");
  EXPECT_NE(error_of(in_data + crlf_partials, boundary), "");
  const std::string body = in_data + crlf_partials + "\r\n--" + boundary + "--";
  auto parts = parse_multipart(body, boundary, {.max_field_bytes = 1 << 21});
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].data, crlf_partials);
  // The worst cases of memchr-then-compare and of Boyer-Moore-Horspool.
  const std::string long_boundary(70, 'a');
  const std::string head =
      "--" + long_boundary + "\r\nContent-Disposition: form-data; name=f\r\n\r\n";
  EXPECT_NE(error_of(head + std::string(1 << 20, '\r'), long_boundary), "");
  EXPECT_NE(error_of(head + std::string(1 << 20, 'a'), long_boundary), "");
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(s, 1.0);
}

TEST(Metrics, RendersExposition) {
  Metrics m;
  m.declare_histogram("stepaudio_request_seconds", "Request latency.", {0.1, 0.5, 2});
  m.declare_counter("stepaudio_requests_total", "Requests by route\\status.\nSecond line.");
  m.declare_gauge("stepaudio_in_flight", "Requests in flight.");
  m.inc("stepaudio_requests_total", {{"route", "/v1/audio"}, {"status", "200"}});
  m.inc("stepaudio_requests_total", {{"route", "/v1/audio"}, {"status", "200"}}, 2);
  m.inc("stepaudio_requests_total", {{"route", "a\"b\\c\nd"}, {"status", "500"}});
  m.set("stepaudio_in_flight", {}, 3);
  m.inc("stepaudio_in_flight", {}, -1);
  Labels route = {{"route", "/v1/audio"}};
  for (double v : {0.0625, 0.5, 0.25, 1.0, 7.25}) m.observe("stepaudio_request_seconds", route, v);
  EXPECT_EQ(m.render(),
            "# HELP stepaudio_in_flight Requests in flight.\n"
            "# TYPE stepaudio_in_flight gauge\n"
            "stepaudio_in_flight 2\n"
            "# HELP stepaudio_request_seconds Request latency.\n"
            "# TYPE stepaudio_request_seconds histogram\n"
            "stepaudio_request_seconds_bucket{route=\"/v1/audio\",le=\"0.1\"} 1\n"
            "stepaudio_request_seconds_bucket{route=\"/v1/audio\",le=\"0.5\"} 3\n"
            "stepaudio_request_seconds_bucket{route=\"/v1/audio\",le=\"2\"} 4\n"
            "stepaudio_request_seconds_bucket{route=\"/v1/audio\",le=\"+Inf\"} 5\n"
            "stepaudio_request_seconds_sum{route=\"/v1/audio\"} 9.0625\n"
            "stepaudio_request_seconds_count{route=\"/v1/audio\"} 5\n"
            "# HELP stepaudio_requests_total Requests by route\\\\status.\\nSecond line.\n"
            "# TYPE stepaudio_requests_total counter\n"
            "stepaudio_requests_total{route=\"/v1/audio\",status=\"200\"} 3\n"
            "stepaudio_requests_total{route=\"a\\\"b\\\\c\\nd\",status=\"500\"} 1\n");
}

TEST(Metrics, NumbersAndEmptyFamilies) {
  Metrics m;
  m.declare_gauge("g", "G.");
  m.declare_histogram("h", "H.", {1e-3, 1});
  m.declare_counter("c", "C.");
  m.set("g", {{"k", "big"}}, 1e20);
  m.set("g", {{"k", "frac"}}, 1.0 / 3);
  m.set("g", {{"k", "inf"}}, -INFINITY);
  m.observe("h", {}, 0.5);
  EXPECT_EQ(m.render(),
            "# HELP c C.\n# TYPE c counter\n"
            "# HELP g G.\n# TYPE g gauge\n"
            "g{k=\"big\"} 1e+20\n"
            "g{k=\"frac\"} 0.3333333333333333\n"
            "g{k=\"inf\"} -Inf\n"
            "# HELP h H.\n# TYPE h histogram\n"
            "h_bucket{le=\"0.001\"} 0\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\n"
            "h_sum 0.5\nh_count 1\n");
}

TEST(Metrics, MisuseAssertsInDebugAndIsIgnoredInRelease) {
  Metrics m;
  m.declare_counter("c", "C.");
  EXPECT_DEBUG_DEATH(m.inc("undeclared"), "not declared");
  EXPECT_DEBUG_DEATH(m.observe("c", {}, 1), "wrong type");
  EXPECT_DEBUG_DEATH(m.inc("c", {}, -1), "decremented");
  EXPECT_EQ(m.render(), "# HELP c C.\n# TYPE c counter\n");
}

namespace {
TranscriptDoc two_segments() {
  TranscriptDoc doc;
  doc.text = "Hello there. General Kenobi!";
  doc.language = "en";
  doc.duration_s = 3727.25;
  doc.segments = {{0, 2.5, " Hello there.", -0.25}, {3725.5, 3727.0004, " General Kenobi!", -0.5}};
  return doc;
}
}  // namespace

TEST(TranscriptFormats, Timestamps) {
  EXPECT_EQ(format_timestamp(3725.5, true), "01:02:05,500");
  EXPECT_EQ(format_timestamp(3725.5, false), "01:02:05.500");
  EXPECT_EQ(format_timestamp(2.0004, true), "00:00:02,000");
  EXPECT_EQ(format_timestamp(2.9996, true), "00:00:03,000");
  EXPECT_EQ(format_timestamp(359999.9996, true), "100:00:00,000");
  EXPECT_EQ(format_timestamp(-1, false), "00:00:00.000");
  EXPECT_EQ(format_timestamp(NAN, false), "00:00:00.000");
}

TEST(TranscriptFormats, SrtAndVtt) {
  TranscriptDoc doc = two_segments();
  EXPECT_EQ(to_srt(doc),
            "1\n00:00:00,000 --> 00:00:02,500\nHello there.\n\n"
            "2\n01:02:05,500 --> 01:02:07,000\nGeneral Kenobi!\n\n");
  EXPECT_EQ(to_vtt(doc),
            "WEBVTT\n\n"
            "00:00:00.000 --> 00:00:02.500\nHello there.\n\n"
            "01:02:05.500 --> 01:02:07.000\nGeneral Kenobi!\n\n");
}

TEST(TranscriptFormats, CueTextCannotBreakCues) {
  TranscriptDoc doc;
  doc.segments = {{0, 1, "a --> b\n\n\r\nc--->d", 0}, {1, 2, " \n ", 0}, {2, 3, "x < y & z", 0}};
  EXPECT_EQ(to_srt(doc),
            "1\n00:00:00,000 --> 00:00:01,000\na -> b\nc->d\n\n"
            "2\n00:00:02,000 --> 00:00:03,000\nx < y & z\n\n");
  EXPECT_EQ(to_vtt(doc),
            "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\na -> b\nc->d\n\n"
            "00:00:02.000 --> 00:00:03.000\nx &lt; y &amp; z\n\n");
  // Without segment times the whole text is one cue.
  TranscriptDoc plain;
  plain.text = "whole";
  plain.duration_s = 4;
  EXPECT_EQ(to_srt(plain), "1\n00:00:00,000 --> 00:00:04,000\nwhole\n\n");
  EXPECT_EQ(to_vtt(TranscriptDoc{}), "WEBVTT\n\n");
}

TEST(TranscriptFormats, OpenAiJson) {
  TranscriptDoc doc = two_segments();
  doc.text = "caf\xc3\xa9 \"q\"";
  EXPECT_EQ(nlohmann::json::parse(to_openai_json(doc)), (nlohmann::json{{"text", doc.text}}));
  doc.text = "bad \xff utf-8";  // replaced, not thrown
  EXPECT_EQ(nlohmann::json::parse(to_openai_json(doc))["text"], "bad \xef\xbf\xbd utf-8");
}

TEST(TranscriptFormats, VerboseJson) {
  TranscriptDoc doc = two_segments();
  auto j = nlohmann::json::parse(to_openai_verbose_json(doc));
  EXPECT_EQ(j["task"], "transcribe");
  EXPECT_EQ(j["language"], "english");
  EXPECT_DOUBLE_EQ(j["duration"].get<double>(), 3727.25);
  EXPECT_EQ(j["text"], doc.text);
  ASSERT_EQ(j["segments"].size(), 2u);
  const auto& s = j["segments"][1];
  EXPECT_EQ(s["id"], 1);
  EXPECT_EQ(s["seek"], 0);
  EXPECT_DOUBLE_EQ(s["start"].get<double>(), 3725.5);
  EXPECT_DOUBLE_EQ(s["end"].get<double>(), 3727.0004);
  EXPECT_EQ(s["text"], " General Kenobi!");
  EXPECT_EQ(s["tokens"], nlohmann::json::array());
  EXPECT_EQ(s["temperature"], 0.0);
  EXPECT_EQ(s["avg_logprob"], -0.5);
  EXPECT_EQ(s["compression_ratio"], 1.0);
  EXPECT_EQ(s["no_speech_prob"], 0.0);
  EXPECT_EQ(j["segments"][0]["id"], 0);
  const std::vector<std::pair<std::string, std::string>> names = {
      {"zh", "chinese"},       {"ZH-cn", "chinese"}, {"he", "hebrew"}, {"el", "greek"},
      {"pt_BR", "portuguese"}, {"sw", "sw"},         {"", "unknown"}};
  for (const auto& [code, name] : names) {
    doc.language = code;
    EXPECT_EQ(nlohmann::json::parse(to_openai_verbose_json(doc))["language"], name) << code;
  }
}

// One base64 codec (OpenSSL underneath) for chat audio parts and data: URIs.
TEST(Base64, DecodeAcceptsBothAlphabetsAndRefusesMalformedInput) {
  EXPECT_EQ(decode_base64("QUJD"), "ABC");
  EXPECT_EQ(decode_base64("QUI="), "AB");
  EXPECT_EQ(decode_base64("QUI"), "AB");  // padding optional
  EXPECT_EQ(decode_base64("QQ=="), "A");
  EXPECT_EQ(decode_base64("QU\r\nJD"), "ABC");
  EXPECT_EQ(decode_base64("-_8="), std::string("\xFB\xFF"));  // URL-safe alphabet
  EXPECT_EQ(decode_base64("+/8"), std::string("\xFB\xFF"));
  EXPECT_EQ(decode_base64(""), "");
  EXPECT_FALSE(decode_base64("QUJ!"));
  EXPECT_FALSE(decode_base64("QQ=A"));   // data after padding
  EXPECT_FALSE(decode_base64("QUJDR"));  // a lone final symbol
  EXPECT_FALSE(decode_base64("QQ="));    // padding that does not complete the group
  EXPECT_FALSE(decode_base64("QUJD===="));
}

TEST(Base64, RoundTripsEveryByteAndLength) {
  std::string bytes;
  for (int i = 0; i < 300; ++i) bytes += char((i * 7 + 3) & 0xff);
  for (size_t n = 0; n <= bytes.size(); n += 1) {
    const std::string part = bytes.substr(0, n);
    const std::string text = encode_base64(part);
    EXPECT_EQ(text.size(), 4 * ((n + 2) / 3));
    EXPECT_EQ(decode_base64(text), part) << n;
  }
}

namespace {
SubmitRequest submit_json(const std::string& body) {
  HttpRequest req;
  req.method = "POST";
  req.path = req.target = "/v1/jobs";
  req.headers = {{"content-type", "application/json"}};
  req.body = body;
  return parse_submission(req);
}
std::string api_error_code(const std::string& body) {
  try {
    submit_json(body);
  } catch (const ApiError& e) {
    return e.code;
  }
  return "";
}
}  // namespace

// data: URIs go through the same decoder as chat audio parts: what it refuses, they refuse.
TEST(Base64, DataUriAudio) {
  EXPECT_EQ(submit_json(R"({"audio": "data:audio/wav;base64,UklG RkFC"})").audio, "RIFFAB");
  EXPECT_EQ(submit_json(R"({"audio_url": "data:audio/wav;base64,UklGRg"})").audio, "RIFF");
  EXPECT_EQ(api_error_code(R"({"audio": "data:audio/wav;base64,UklGRg=A"})"), "invalid_argument");
  EXPECT_EQ(api_error_code(R"({"audio": "data:audio/wav;base64,UklGR"})"), "invalid_argument");
  EXPECT_EQ(api_error_code(R"({"audio": "data:audio/wav;base64,Uk*G"})"), "invalid_argument");
  EXPECT_EQ(api_error_code(R"({"audio": "data:audio/wav,RIFF"})"), "invalid_url");
}
