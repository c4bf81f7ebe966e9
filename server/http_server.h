// The HTTP/1.1 transport of `stepaudio serve`: Boost.Beast on Asio, asynchronous, so a connection
// costs a socket and a few kilobytes, not a thread: hundreds of clients waiting on SSE or on a long
// request never delay /healthz or a new request. Each connection runs on its own strand; a handler
// gets an Exchange to answer once (reply) or to stream (SSE), from any thread, at any later time.
//
// Hostile clients: the request (headers and body) must arrive within `read_timeout_s` of its first
// byte wait (a slow-loris client is dropped), headers are capped at `max_header_bytes` (431), the
// body at `max_body_bytes` (413, read no further), a stream's unsent backlog at
// `max_stream_backlog` (the slow reader is dropped), and connections at `max_connections`.
// While a handler works, the connection watches the socket: a client that goes away fires the
// exchange's on_close callbacks (the service cancels the request's job).
// Thread-safety: Exchange methods may be called from any thread; HttpServer::stop from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace stepaudio::server {

struct HttpLimits {
  double read_timeout_s = 30;   // whole request (headers + body)
  double idle_timeout_s = 60;   // keep-alive wait for the next request
  double write_timeout_s = 60;  // one write
  size_t max_header_bytes = 16 * 1024;
  size_t max_body_bytes = 100u << 20;
  size_t max_stream_backlog = 4u << 20;
  size_t max_connections = 2048;
};

struct HttpRequest {
  std::string method, target, path;  // path: target without the query string
  std::multimap<std::string, std::string> query;
  std::vector<std::pair<std::string, std::string>> headers;  // names lowercase
  std::string body;
  std::string remote;  // peer address
  std::string request_id;
  // First value of a header (name lowercase), "" if absent.
  std::string header(std::string_view name) const;
  std::string query_param(const std::string& name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

class Exchange {
 public:
  virtual ~Exchange() = default;
  virtual const HttpRequest& request() const = 0;
  // Answers once (later calls are ignored). Adds X-Request-Id and Content-Length.
  virtual void reply(HttpResponse response) = 0;
  // A streamed answer (chunked transfer encoding): the head, then pieces, then end(). send()
  // returns false when the client is gone or too far behind (the connection is then closed).
  virtual void start_stream(int status, const std::string& content_type,
                            std::vector<std::pair<std::string, std::string>> headers = {}) = 0;
  virtual bool send(std::string piece) = 0;
  virtual void end() = 0;
  virtual bool closed() const = 0;
  // Runs fn once when the client disconnects before the answer is complete (on the connection's
  // strand; immediately if already gone).
  virtual void on_close(std::function<void()> fn) = 0;
  // Runs fn on the connection's strand after `seconds` unless the exchange is finished first.
  virtual void after(double seconds, std::function<void()> fn) = 0;
};

using Handler = std::function<void(std::shared_ptr<Exchange>)>;
// Observes every finished exchange (for logs and metrics).
using AccessLog = std::function<void(const HttpRequest&, int status, double ms, size_t bytes_out)>;

class HttpServer {
 public:
  HttpServer(const HttpLimits& limits, Handler handler, AccessLog log);
  ~HttpServer();
  // Binds and listens; throws std::runtime_error naming host:port on failure. Returns the port
  // (useful with port 0).
  uint16_t listen(const std::string& host, uint16_t port);
  // Runs the event loop on `threads` threads; returns after stop().
  void run(int threads);
  void stop();
  size_t connections() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A JSON answer (declared here as text so this header needs no JSON library).
HttpResponse json_text(int status, std::string body);

// {"error": {"code": code, "message": message}} with the status (and Retry-After when > 0).
HttpResponse json_error(int status, const std::string& code, const std::string& message,
                        int retry_after_s = 0);

}  // namespace stepaudio::server
