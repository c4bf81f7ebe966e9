// AddressPolicy: every refused range (with its public neighbours allowed), the IPv4-in-IPv6
// forms, allow-list parsing and matching. safe_request / fetch_url against a tiny HTTP server
// started inside the test on 127.0.0.1: redirects (followed, refused, looping), caps (bytes,
// wall time), cancel, POST, URL validation.
// Network rule: these tests only ever connect to 127.0.0.1. Hostile addresses appear in pure
// policy checks only; URLs the client must refuse name loopback addresses, so even a broken
// client would not send a packet off this machine.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "server/http_client.h"
#include "server/net_policy.h"

using stepaudio::server::AddressPolicy;
using stepaudio::server::fetch_url;
using stepaudio::server::FetchError;
using stepaudio::server::FetchLimits;
using stepaudio::server::OutboundRequest;
using stepaudio::server::safe_request;

namespace {

// ---------------------------------------------------------------------------------------------
// Policy (pure: builds sockaddrs, never connects)

std::string refusal(const AddressPolicy& policy, const std::string& ip) {
  sockaddr_in in{};
  sockaddr_in6 in6{};
  if (inet_pton(AF_INET, ip.c_str(), &in.sin_addr) == 1) {
    in.sin_family = AF_INET;
    return policy.refusal(reinterpret_cast<sockaddr*>(&in));
  }
  if (inet_pton(AF_INET6, ip.c_str(), &in6.sin6_addr) != 1) ADD_FAILURE() << "bad test ip " << ip;
  in6.sin6_family = AF_INET6;
  return policy.refusal(reinterpret_cast<sockaddr*>(&in6));
}

std::vector<std::string> words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// `table`: pairs "address reason-substring", separated by blanks.
void expect_refused(const AddressPolicy& policy, const std::string& table) {
  const std::vector<std::string> w = words(table);
  ASSERT_EQ(w.size() % 2, 0u);
  for (size_t i = 0; i < w.size(); i += 2) {
    const std::string why = refusal(policy, w[i]);
    EXPECT_NE(why.find(w[i + 1]), std::string::npos) << w[i] << " -> '" << why << "'";
  }
}

void expect_allowed(const AddressPolicy& policy, const std::string& addresses) {
  for (const std::string& ip : words(addresses)) EXPECT_EQ(refusal(policy, ip), "") << ip;
}

TEST(AddressPolicy, RefusesEveryIPv4SpecialRange) {
  expect_refused(AddressPolicy(), R"(
      0.0.0.0 unspecified          0.255.1.2 unspecified         10.0.0.0 private
      10.255.255.255 private       100.64.0.1 CGNAT              100.127.255.255 CGNAT
      127.0.0.1 loopback           127.255.255.254 loopback      169.254.0.1 link-local
      169.254.169.254 link-local/metadata                        172.16.0.1 private
      172.31.255.255 private       192.0.0.8 IETF                192.0.2.1 documentation
      192.168.0.1 private          192.168.255.255 private       198.18.0.1 benchmarking
      198.19.255.255 benchmarking  198.51.100.7 documentation    203.0.113.9 documentation
      224.0.0.1 multicast          239.255.255.250 multicast     240.0.0.1 reserved
      254.1.2.3 reserved           255.255.255.255 broadcast)");
  EXPECT_EQ(refusal(AddressPolicy(), "10.1.2.3"), "private address 10.1.2.3");
}

// Public addresses, many of them just outside a refused range.
TEST(AddressPolicy, AllowsPublicIPv4IncludingRangeNeighbours) {
  expect_allowed(AddressPolicy(), R"(
      8.8.8.8 1.1.1.1 1.0.0.1 9.255.255.255 11.0.0.0 100.63.255.255 100.128.0.0 126.255.255.255
      128.0.0.0 169.253.255.255 169.255.0.0 172.15.255.255 172.32.0.0 192.0.1.1 192.0.3.1
      192.167.255.255 192.169.0.0 198.17.255.255 198.20.0.0 198.51.99.1 198.51.101.1 203.0.112.1
      203.0.114.1 223.255.255.255)");
}

TEST(AddressPolicy, RefusesEveryIPv6SpecialRange) {
  // fd00:ec2::254 is the AWS metadata service over IPv6 (inside the ULA range).
  expect_refused(AddressPolicy(), R"(
      :: unspecified               ::1 loopback                  fc00::1 ULA
      fdff:ffff::1 ULA             fd00:ec2::254 metadata        fe80::1 link-local
      febf:ffff::1 link-local      fec0::1 site-local            feff::1 site-local
      ff02::1 multicast            ff0e::101 multicast           2001:db8::1 documentation
      2001:db8:ffff::1 documentation                             100::1 discard
      100::ffff:ffff:ffff:ffff discard                           64:ff9b:1::1 NAT64)");
}

TEST(AddressPolicy, AllowsPublicIPv6) {
  expect_allowed(AddressPolicy(), R"(
      2606:4700::1111 2001:4860:4860::8888 2a00:1450::1 2001:db9::1 2001:db7:ffff::1 fbff::1
      100:0:0:1::1)");
}

// IPv4-mapped ::ffff:a.b.c.d, IPv4-compatible ::a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16.
TEST(AddressPolicy, JudgesEmbeddedIPv4ByTheIPv4Address) {
  const AddressPolicy p;
  expect_refused(p, R"(
      ::ffff:127.0.0.1 loopback    ::ffff:169.254.169.254 link-local/metadata
      ::ffff:10.0.0.1 private      ::ffff:0.0.0.0 unspecified    ::ffff:255.255.255.255 broadcast
      ::127.0.0.1 loopback         ::10.1.1.1 private            ::0.0.0.2 unspecified
      64:ff9b::7f00:1 loopback     64:ff9b::a9fe:a9fe metadata   64:ff9b::192.168.1.1 private
      2002:7f00:1::1 loopback      2002:a9fe:a9fe:: metadata     2002:c0a8:101:1::1 private)");
  EXPECT_EQ(refusal(p, "::ffff:127.0.0.1"),
            "loopback address ::ffff:127.0.0.1 (IPv4-mapped 127.0.0.1)");
  EXPECT_NE(refusal(p, "64:ff9b::a00:1").find("NAT64 10.0.0.1"), std::string::npos);
  expect_allowed(p, "::ffff:8.8.8.8 ::8.8.8.8 64:ff9b::808:808 2002:808:808::1");
}

TEST(AddressPolicy, RefusesNullAndNonIpFamilies) {
  const AddressPolicy p;
  EXPECT_NE(p.refusal(nullptr), "");
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  EXPECT_NE(p.refusal(reinterpret_cast<sockaddr*>(&un)).find("family"), std::string::npos);
  EXPECT_FALSE(p.allowed(reinterpret_cast<sockaddr*>(&un)));
}

TEST(AddressPolicy, ParsesAllowList) {
  EXPECT_TRUE(AddressPolicy::with_allowed("").allow_list().empty());
  EXPECT_TRUE(AddressPolicy::with_allowed(" , ").allow_list().empty());
  const auto list =
      AddressPolicy::with_allowed(" 127.0.0.1/32 , ::1/128,10.0.0.0/8,192.168.1.5, fd00::1,")
          .allow_list();
  ASSERT_EQ(list.size(), 5u);
  EXPECT_EQ(list[0].family, AF_INET);
  EXPECT_EQ(list[0].prefix, 32);
  EXPECT_EQ(list[1].family, AF_INET6);
  EXPECT_EQ(list[1].prefix, 128);
  EXPECT_EQ(list[2].prefix, 8);
  EXPECT_EQ(list[2].addr[0], 10);
  EXPECT_EQ(list[3].prefix, 32);  // bare IPv4
  EXPECT_EQ(list[4].family, AF_INET6);
  EXPECT_EQ(list[4].prefix, 128);  // bare IPv6
  EXPECT_EQ(AddressPolicy::with_allowed("0.0.0.0/0").allow_list()[0].prefix, 0);
}

TEST(AddressPolicy, RejectsBadAllowEntriesNamingThem) {
  for (const char* bad : {"10.0.0.0/33", "::1/129", "10.0.0.0/", "10.0.0.0/8x", "10.0.0.0/-1",
                          "10.0.0.0/+8", "300.1.1.1", "localhost", "10.0.0.0/8/8", "fe80::1%eth0",
                          "/8", "10.0.0.0 /8", "10.0.0.0/0008"}) {
    try {
      AddressPolicy::with_allowed(std::string("127.0.0.1/32,") + bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
  }
}

TEST(AddressPolicy, AllowListOverridesRefusedRanges) {
  const auto p = AddressPolicy::with_allowed("10.0.0.0/8, 127.0.0.1/32");
  expect_allowed(p, "10.1.2.3 127.0.0.1 8.8.8.8 ::ffff:10.1.2.3 ::ffff:127.0.0.1");
  // Only the mapped form shares the IPv4 allow entry; translated (NAT64, 6to4) ones do not.
  expect_refused(p, R"(127.0.0.2 loopback  ::1 loopback  172.16.0.1 private
                       ::ffff:127.0.0.2 loopback  64:ff9b::a01:203 private  2002:a01:203::1 private)");
}

TEST(AddressPolicy, MatchesPrefixesThatSplitAByte) {
  const auto p = AddressPolicy::with_allowed("169.254.0.0/17,fe80::/11");
  expect_allowed(p, "169.254.0.1 169.254.127.255 fe80::1 fe9f::1");
  expect_refused(p, "169.254.128.0 link-local  169.254.169.254 metadata  fea0::1 link-local");
}

TEST(AddressPolicy, Ipv6AllowEntriesMatchTheirOwnRanges) {
  const auto p = AddressPolicy::with_allowed("fd00::/8,::ffff:127.0.0.0/104");
  expect_allowed(p, "fd00:ec2::254 fd12::1 127.0.0.5 ::ffff:127.0.0.5");
  expect_refused(p, "fc00::1 ULA  ::1 loopback");
}

// ---------------------------------------------------------------------------------------------
// Fetches against an HTTP server in this process, on 127.0.0.1 and an ephemeral port.

// One connection at a time, "Connection: close" always: enough for canned answers, and every
// handler polls `stop_` so the destructor returns promptly even mid-body.
class TestServer {
 public:
  TestServer() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 || listen(fd_, 16) ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      throw std::runtime_error("test server setup failed");
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { accept_loop(); });
  }
  ~TestServer() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  int port() const { return port_; }
  int hits() const { return hits_.load(); }

 private:
  struct Request {
    std::string method, path, x_test, auth, body;
  };

  void accept_loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      const int c = accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      timeval tv{2, 0};  // a client that never finishes its request cannot wedge the server
      setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      Request req;
      if (read_request(c, &req)) {
        ++hits_;
        serve(c, req);
      }
      close(c);
    }
  }

  static bool read_request(int c, Request* req) {
    std::string data;
    char buf[4096];
    size_t end;
    while ((end = data.find("\r\n\r\n")) == std::string::npos) {
      const ssize_t n = recv(c, buf, sizeof buf, 0);
      if (n <= 0) return false;
      data.append(buf, n);
    }
    const std::string head = data.substr(0, end + 2);
    req->body = data.substr(end + 4);
    const size_t sp1 = head.find(' '), sp2 = head.find(' ', sp1 + 1);
    req->method = head.substr(0, sp1);
    req->path = head.substr(sp1 + 1, sp2 - sp1 - 1);
    size_t content_length = 0;
    for (size_t pos = head.find("\r\n") + 2; pos < head.size();) {
      const size_t eol = head.find("\r\n", pos);
      std::string line = head.substr(pos, eol - pos);
      pos = eol + 2;
      const size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      for (char& ch : name) ch = static_cast<char>(tolower(ch));
      const std::string value = line.substr(line.find_first_not_of(' ', colon + 1));
      if (name == "content-length") content_length = std::stoul(value);
      if (name == "x-test") req->x_test = value;
      if (name == "authorization") req->auth = value;
    }
    while (req->body.size() < content_length) {
      const ssize_t n = recv(c, buf, sizeof buf, 0);
      if (n <= 0) return false;
      req->body.append(buf, n);
    }
    return true;
  }

  static bool send_all(int c, const std::string& data) {
    for (size_t off = 0; off < data.size();) {
      const ssize_t n = send(c, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += n;
    }
    return true;
  }

  static std::string answer(int status, const std::string& extra_headers, const std::string& body,
                            const char* type = "text/plain") {
    return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: " + type +
           "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n" +
           extra_headers + "\r\n" + body;
  }
  static std::string redirect(const std::string& location) {
    return answer(302, "Location: " + location + "\r\n", "moved");
  }

  // Sleeps up to `ms`, returning false early when the server is stopping.
  bool nap(int ms) {
    for (int t = 0; t < ms && !stop_; t += 10)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return !stop_;
  }

  void serve(int c, const Request& r) {
    const std::string& p = r.path;
    const std::string self = "http://127.0.0.1:" + std::to_string(port_);
    if (p == "/ok") {
      send_all(c, answer(200, "", "hello", "audio/wav"));
    } else if (p == "/redirect") {
      send_all(c, redirect("/ok"));  // relative
    } else if (p == "/redirect-abs") {
      send_all(c, redirect(self + "/ok"));
    } else if (p == "/dir/redirect-rel") {
      send_all(c, redirect("../ok"));
    } else if (p == "/redirect-away") {
      // Loopback too, so a client bug still would not leave the machine; the policy in the test
      // allows 127.0.0.1/32 only.
      send_all(c, redirect("http://127.0.0.2:" + std::to_string(port_) + "/ok"));
    } else if (p == "/redirect-file") {
      send_all(c, redirect("file:///etc/passwd"));
    } else if (p.rfind("/loop", 0) == 0) {  // /loop1 -> /loop2 -> /loop3 -> /loop1 ...
      send_all(c, redirect("/loop" + std::to_string((p.back() - '0') % 3 + 1)));
    } else if (p == "/nap1" || p == "/nap2") {
      if (nap(600)) send_all(c, redirect(p == "/nap1" ? "/nap2" : "/ok"));
    } else if (p == "/endless") {  // no Content-Length, streams until the client hangs up
      if (!send_all(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")) return;
      const std::string chunk(16384, 'x');
      for (int i = 0; i < 4096 && !stop_ && send_all(c, chunk); ++i) {
      }
    } else if (p == "/slow") {  // one byte every 100 ms
      if (!send_all(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n"))
        return;
      for (int i = 0; i < 100 && nap(100) && send_all(c, "x"); ++i) {
      }
    } else if (p == "/error") {
      send_all(c, answer(500, "", "boom"));
    } else if (p == "/echo") {
      send_all(c, answer(200, "",
                         r.method + " x-test=" + r.x_test + " auth=" + r.auth + " body=" + r.body));
    } else if (p.rfind("/go?", 0) == 0) {  // redirect to the URL in the query
      send_all(c, redirect(p.substr(4)));
    } else {
      send_all(c, answer(404, "", "not found"));
    }
  }

  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> hits_{0};
  std::thread thread_;
};

const AddressPolicy& loopback_only() {
  static const AddressPolicy p = AddressPolicy::with_allowed("127.0.0.1/32");
  return p;
}

FetchLimits quick_limits() {
  FetchLimits l;
  l.timeout_s = 4;
  l.connect_timeout_s = 2;
  return l;
}

// The FetchError code of `fn`, or "" when it did not throw.
template <typename Fn>
std::string error_code(Fn fn, std::string* message = nullptr) {
  try {
    fn();
  } catch (const FetchError& e) {
    if (message) *message = e.what();
    return e.code();
  }
  return "";
}

std::string fetch_code(const std::string& url, const AddressPolicy& policy,
                       const FetchLimits& limits = quick_limits(), std::string* message = nullptr) {
  return error_code([&] { fetch_url(url, policy, limits); }, message);
}

TEST(SafeRequest, FetchesBodyAndContentType) {
  TestServer server;
  const auto r = fetch_url(server.url("/ok"), loopback_only(), quick_limits());
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "hello");
  EXPECT_EQ(r.content_type, "audio/wav");
  EXPECT_EQ(r.final_url, server.url("/ok"));
}

TEST(SafeRequest, FollowsRedirectsOnTheSameServer) {
  TestServer server;
  for (const char* path : {"/redirect", "/redirect-abs", "/dir/redirect-rel"}) {
    const auto r = fetch_url(server.url(path), loopback_only(), quick_limits());
    EXPECT_EQ(r.body, "hello") << path;
    EXPECT_EQ(r.final_url, server.url("/ok")) << path;
  }
  EXPECT_EQ(server.hits(), 6);
}

TEST(SafeRequest, RechecksEveryRedirectTarget) {
  TestServer server;
  std::string message;
  EXPECT_EQ(fetch_code(server.url("/redirect-away"), loopback_only(), quick_limits(), &message),
            "forbidden_url");
  EXPECT_NE(message.find("127.0.0.2"), std::string::npos) << message;
  EXPECT_EQ(server.hits(), 1);  // the refused hop never connected
  EXPECT_EQ(fetch_code(server.url("/redirect-file"), loopback_only()), "invalid_url");
}

TEST(SafeRequest, CapsRedirects) {
  TestServer server;
  EXPECT_EQ(fetch_code(server.url("/loop1"), loopback_only()), "too_many_redirects");
  EXPECT_EQ(server.hits(), 4);  // 3 redirects followed, the 4th refused
  FetchLimits none = quick_limits();
  none.max_redirects = 0;
  EXPECT_EQ(fetch_code(server.url("/redirect"), loopback_only(), none), "too_many_redirects");
}

TEST(SafeRequest, CapsBodySize) {
  TestServer server;
  FetchLimits small = quick_limits();
  small.max_bytes = 1000;
  EXPECT_EQ(fetch_code(server.url("/endless"), loopback_only(), small), "too_large");
  small.max_bytes = 4;  // "hello" is 5 bytes: refused by its Content-Length
  EXPECT_EQ(fetch_code(server.url("/ok"), loopback_only(), small), "too_large");
  small.max_bytes = 5;  // exactly the cap is fine
  EXPECT_EQ(fetch_url(server.url("/ok"), loopback_only(), small).body, "hello");
}

TEST(SafeRequest, TimesOutOnSlowBody) {
  TestServer server;
  FetchLimits limits = quick_limits();
  limits.timeout_s = 1;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(fetch_code(server.url("/slow"), loopback_only(), limits), "timeout");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
}

TEST(SafeRequest, TimeBudgetSpansRedirects) {
  TestServer server;
  FetchLimits limits = quick_limits();
  limits.timeout_s = 1;  // each hop takes 0.6 s: the second one overruns the shared budget
  EXPECT_EQ(fetch_code(server.url("/nap1"), loopback_only(), limits), "timeout");
}

TEST(SafeRequest, Cancels) {
  TestServer server;
  std::atomic<bool> cancel{true};
  EXPECT_EQ(
      error_code([&] { fetch_url(server.url("/ok"), loopback_only(), quick_limits(), &cancel); }),
      "canceled");
  cancel = false;
  std::thread canceler([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    cancel = true;
  });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(
      error_code([&] { fetch_url(server.url("/slow"), loopback_only(), quick_limits(), &cancel); }),
      "canceled");
  canceler.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
}

TEST(SafeRequest, ErrorStatus) {
  TestServer server;
  std::string message;
  EXPECT_EQ(fetch_code(server.url("/error"), loopback_only(), quick_limits(), &message),
            "fetch_failed");
  EXPECT_NE(message.find("500"), std::string::npos) << message;
  OutboundRequest req;
  req.url = server.url("/error");
  const auto r = safe_request(req, loopback_only(), quick_limits());
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.body, "boom");
}

TEST(SafeRequest, PostsBodyAndHeadersAndDoesNotFollowRedirects) {
  TestServer server;
  OutboundRequest req;
  req.method = "POST";
  req.url = server.url("/echo");
  req.headers = {{"X-Test", "abc"}, {"Content-Type", "application/json"}};
  req.body = "{\"a\":1}";
  EXPECT_EQ(safe_request(req, loopback_only(), quick_limits()).body,
            "POST x-test=abc auth= body={\"a\":1}");
  req.url = server.url("/redirect");
  const auto r = safe_request(req, loopback_only(), quick_limits());
  EXPECT_EQ(r.status, 302);
  EXPECT_EQ(r.final_url, server.url("/redirect"));
  req.headers = {{"X-Test", "a\r\nX-Evil: 1"}};
  EXPECT_EQ(error_code([&] { safe_request(req, loopback_only(), quick_limits()); }),
            "fetch_failed");
}

TEST(SafeRequest, RedirectToAnotherOriginDropsCredentials) {
  TestServer server, other;  // another port is another origin
  OutboundRequest req;
  req.headers = {{"X-Test", "abc"}, {"authorization", "Bearer secret"}};
  req.url = server.url("/go?" + server.url("/echo"));
  EXPECT_EQ(safe_request(req, loopback_only(), quick_limits()).body,
            "GET x-test=abc auth=Bearer secret body=");
  req.url = server.url("/go?" + other.url("/echo"));
  EXPECT_EQ(safe_request(req, loopback_only(), quick_limits()).body, "GET x-test=abc auth= body=");
}

TEST(SafeRequest, RefusesNonHttpAndCredentialUrls) {
  TestServer server;
  const std::string port = std::to_string(server.port());
  for (const std::string& url :
       {std::string("file:///etc/passwd"), "gopher://127.0.0.1:" + port + "/",
        "ftp://127.0.0.1:" + port + "/", "http://user:pw@127.0.0.1:" + port + "/ok",
        "http://user@127.0.0.1:" + port + "/ok", "http://[::1%25lo]:" + port + "/ok",
        std::string("not a url"), std::string("")})
    EXPECT_EQ(fetch_code(url, loopback_only()), "invalid_url") << url;
  EXPECT_EQ(server.hits(), 0);
}

TEST(SafeRequest, DefaultPolicyRefusesLoopbackInEveryForm) {
  TestServer server;
  const std::string port = std::to_string(server.port());
  for (const char* host : {"127.0.0.1", "localhost", "2130706433", "0x7f.0.0.1", "127.1", "[::1]",
                           "[::ffff:127.0.0.1]"})
    EXPECT_EQ(fetch_code("http://" + std::string(host) + ":" + port + "/ok", AddressPolicy()),
              "forbidden_url")
        << host;
  EXPECT_EQ(server.hits(), 0);
}

// A name is judged by all its answers: "localhost" passes a 127.0.0.1/32 allow-list only where
// /etc/hosts gives it no other address (commonly ::1 too). Read from /etc/hosts, no DNS traffic.
TEST(SafeRequest, NamesPassOnlyWhenEveryAnswerIsAllowed) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* answers = nullptr;
  if (getaddrinfo("localhost", nullptr, &hints, &answers) != 0) GTEST_SKIP() << "no localhost";
  bool only_v4_loopback = true;
  for (const addrinfo* a = answers; a; a = a->ai_next)
    only_v4_loopback &=
        a->ai_family == AF_INET &&
        reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr.s_addr == htonl(INADDR_LOOPBACK);
  freeaddrinfo(answers);
  TestServer server;
  const std::string url = "http://localhost:" + std::to_string(server.port()) + "/ok";
  if (only_v4_loopback)
    EXPECT_EQ(fetch_url(url, loopback_only(), quick_limits()).body, "hello");
  else
    EXPECT_EQ(fetch_code(url, loopback_only()), "forbidden_url");
}

TEST(SafeRequest, MappedLoopbackUsesTheIPv4AllowEntry) {
  const int probe = socket(AF_INET6, SOCK_STREAM, 0);
  if (probe < 0) GTEST_SKIP() << "no IPv6 sockets here";
  close(probe);
  TestServer server;
  const auto r = fetch_url("http://[::ffff:127.0.0.1]:" + std::to_string(server.port()) + "/ok",
                           loopback_only(), quick_limits());
  EXPECT_EQ(r.body, "hello");
}

TEST(SafeRequest, ManyThreadsAtOnce) {
  TestServer server;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&] {
      for (int j = 0; j < 3; ++j)
        if (fetch_url(server.url("/redirect"), loopback_only(), quick_limits()).body == "hello")
          ++ok;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 12);
}

}  // namespace
