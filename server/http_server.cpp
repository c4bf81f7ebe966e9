// The HTTP/1.1 transport (http_server.h): one Connection per socket on its own strand; one deadline
// timer per connection that closes the socket when a read or write overruns.
#include "http_server.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <deque>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>

#include "crypto.h"
#include "json_log.h"

namespace stepaudio::server {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

std::string HttpRequest::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return v;
  return {};
}

std::string HttpRequest::query_param(const std::string& name) const {
  auto it = query.find(name);
  return it == query.end() ? std::string() : it->second;
}

HttpResponse json_text(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

HttpResponse json_error(int status, const std::string& code, const std::string& message,
                        int retry_after_s) {
  HttpResponse r;
  r.status = status;
  r.body = dump_json({{"error", {{"code", code}, {"message", message}}}});
  if (retry_after_s > 0) r.headers.emplace_back("Retry-After", std::to_string(retry_after_s));
  return r;
}

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 &&
               hex_value(s[i + 2]) >= 0) {
      out += char(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// A client's X-Request-Id is kept when it is short and plain (it goes into logs), else replaced.
std::string request_id_for(const std::string& given) {
  bool ok = !given.empty() && given.size() <= 64;
  for (char c : given)
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.');
  return ok ? given : "req_" + random_hex(8);
}

struct Shared {
  HttpLimits limits;
  Handler handler;
  AccessLog log;
  std::atomic<size_t> connections{0};
};

class Connection : public Exchange, public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, std::shared_ptr<Shared> shared)
      : socket_(std::move(socket)), timer_(socket_.get_executor()), shared_(std::move(shared)) {
    ++shared_->connections;
  }
  ~Connection() override { --shared_->connections; }

  void start() { read_request(); }

  const HttpRequest& request() const override { return req_; }

  void reply(HttpResponse response) override {
    net::post(socket_.get_executor(),
              [self = shared_from_this(), r = std::move(response)]() mutable {
                self->do_reply(std::move(r));
              });
  }

  void start_stream(int status, const std::string& content_type,
                    std::vector<std::pair<std::string, std::string>> headers) override {
    std::string head = "HTTP/1.1 " + std::to_string(status) + " " +
                       std::string(http::obsolete_reason(http::int_to_status(status))) + "\r\n";
    head += "Content-Type: " + content_type + "\r\nCache-Control: no-cache\r\n";
    head += "Transfer-Encoding: chunked\r\nConnection: close\r\nX-Accel-Buffering: no\r\n";
    head += "X-Request-Id: " + req_.request_id + "\r\n";
    for (auto& [k, v] : headers) head += k + ": " + v + "\r\n";
    head += "\r\n";
    net::post(socket_.get_executor(), [self = shared_from_this(), status, head = std::move(head)] {
      if (self->replied_ || self->closed_) return;
      self->replied_ = true;
      self->status_ = status;
      self->enqueue(head);
    });
  }

  bool send(std::string piece) override {
    if (closed_ || piece.empty()) return !closed_;
    if (backlog_ + piece.size() > shared_->limits.max_stream_backlog) {
      net::post(socket_.get_executor(), [self = shared_from_this()] { self->close(); });
      return false;
    }
    char size_line[32];
    std::snprintf(size_line, sizeof size_line, "%zx\r\n", piece.size());
    std::string chunk = size_line + piece + "\r\n";
    backlog_ += chunk.size();
    net::post(socket_.get_executor(), [self = shared_from_this(), c = std::move(chunk)]() mutable {
      self->enqueue(std::move(c));
    });
    return true;
  }

  void end() override {
    net::post(socket_.get_executor(), [self = shared_from_this()] {
      if (self->closed_ || self->ending_) return;
      self->ending_ = true;
      self->enqueue("0\r\n\r\n");
    });
  }

  bool closed() const override { return closed_; }

  void on_close(std::function<void()> fn) override {
    net::post(socket_.get_executor(), [self = shared_from_this(), fn = std::move(fn)]() mutable {
      if (self->closed_ && !self->complete_)
        fn();
      else if (!self->complete_)
        self->close_callbacks_.push_back(std::move(fn));
    });
  }

  void after(double seconds, std::function<void()> fn) override {
    auto t = std::make_shared<net::steady_timer>(socket_.get_executor());
    t->expires_after(std::chrono::milliseconds(int64_t(seconds * 1000)));
    net::post(socket_.get_executor(),
              [self = shared_from_this(), t] { self->timers_.push_back(t); });
    t->async_wait([self = shared_from_this(), t, fn = std::move(fn)](error_code ec) {
      if (!ec && !self->closed_ && !self->complete_ && !self->replied_) fn();
    });
  }

 private:
  using Clock = std::chrono::steady_clock;

  void arm(double seconds) {
    const uint64_t gen = ++deadline_gen_;
    timer_.expires_after(std::chrono::milliseconds(int64_t(seconds * 1000)));
    timer_.async_wait([self = shared_from_this(), gen](error_code ec) {
      if (!ec && gen == self->deadline_gen_) self->close();
    });
  }
  void disarm() {
    ++deadline_gen_;
    timer_.cancel();
  }

  void read_request() {
    parser_.emplace();
    parser_->header_limit(uint32_t(shared_->limits.max_header_bytes));
    parser_->body_limit(shared_->limits.max_body_bytes);
    req_ = HttpRequest{};
    replied_ = complete_ = ending_ = false;
    status_ = 0;
    bytes_out_ = 0;
    // The first request waits up to the read timeout; later keep-alive requests may idle first.
    arm(requests_ == 0 ? shared_->limits.read_timeout_s
                       : shared_->limits.idle_timeout_s + shared_->limits.read_timeout_s);
    http::async_read_header(
        socket_, buffer_, *parser_,
        [self = shared_from_this()](error_code ec, size_t) { self->on_header(ec); });
  }

  // Answers a read error: too large / malformed get an error answer, the rest just close.
  bool read_failed(error_code ec) {
    if (!ec) return false;
    disarm();
    if (ec == http::error::body_limit) {
      reply_and_close(json_error(
          413, "too_large",
          "request body over " + std::to_string(shared_->limits.max_body_bytes >> 20) + " MB"));
    } else if (ec == http::error::header_limit) {
      reply_and_close(json_error(431, "headers_too_large", "request headers too large"));
    } else if (ec.category() == http::make_error_code(http::error::end_of_stream).category() &&
               ec != http::error::end_of_stream && ec != http::error::partial_message) {
      reply_and_close(json_error(400, "bad_request", "malformed HTTP request: " + ec.message()));
    } else {
      close();
    }
    return true;
  }

  void on_header(error_code ec) {
    if (read_failed(ec)) return;
    started_ = Clock::now();
    // curl and others wait up to a second for "100 Continue" before sending a large body.
    auto& h = parser_->get();
    if (beast::iequals(h[http::field::expect], "100-continue")) {
      auto cont = std::make_shared<std::string>("HTTP/1.1 100 Continue\r\n\r\n");
      net::async_write(socket_, net::buffer(*cont),
                       [self = shared_from_this(), cont](error_code ec, size_t) {
                         if (ec) return self->close();
                         self->read_body();
                       });
      return;
    }
    read_body();
  }

  void read_body() {
    http::async_read(socket_, buffer_, *parser_,
                     [self = shared_from_this()](error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(error_code ec) {
    if (read_failed(ec)) return;
    disarm();
    ++requests_;
    auto msg = parser_->release();
    req_.method = std::string(msg.method_string());
    req_.target = std::string(msg.target());
    const size_t q = req_.target.find('?');
    req_.path = req_.target.substr(0, q);
    if (q != std::string::npos) {
      std::string_view qs(req_.target);
      qs.remove_prefix(q + 1);
      while (!qs.empty()) {
        const size_t amp = qs.find('&');
        std::string_view kv = qs.substr(0, amp);
        const size_t eq = kv.find('=');
        req_.query.emplace(percent_decode(kv.substr(0, eq)),
                           eq == std::string_view::npos ? "" : percent_decode(kv.substr(eq + 1)));
        if (amp == std::string_view::npos) break;
        qs.remove_prefix(amp + 1);
      }
    }
    for (const auto& f : msg) {
      std::string name(f.name_string());
      for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
      req_.headers.emplace_back(std::move(name), std::string(f.value()));
    }
    req_.body = std::move(msg.body());
    keep_alive_ = msg.keep_alive();
    error_code pe;
    auto peer = socket_.remote_endpoint(pe);
    req_.remote = pe ? "" : peer.address().to_string();
    req_.request_id = request_id_for(req_.header("x-request-id"));
    watch();
    try {
      shared_->handler(shared_from_this());
    } catch (const std::exception& e) {
      do_reply(json_error(500, "internal", e.what()));
    }
  }

  // While the handler works: a read that notices the client leaving (and keeps pipelined bytes).
  void watch() {
    if (watching_ || closed_) return;
    watching_ = true;
    socket_.async_read_some(
        buffer_.prepare(4096), [self = shared_from_this()](error_code ec, size_t n) {
          self->watching_ = false;
          if (!ec) self->buffer_.commit(n);
          if (self->resume_after_watch_) {
            self->resume_after_watch_ = false;
            if (!ec || ec == net::error::operation_aborted) return self->read_request();
            return self->close();
          }
          if (ec) return self->close();
          // The next request arriving early (sent as soon as the client had
          // our answer, before our write handler ran, or pipelined) stays
          // buffered, up to one whole request; then we stop reading
          // (backpressure): a client that sends requests has not left.
          if (self->buffer_.size() >
              self->shared_->limits.max_header_bytes + self->shared_->limits.max_body_bytes)
            return;
          if (!self->complete_) self->watch();
        });
  }

  void do_reply(HttpResponse r) {
    if (replied_ || closed_) return;
    replied_ = true;
    status_ = r.status;
    auto res =
        std::make_shared<http::response<http::string_body>>(http::int_to_status(r.status), 11);
    res->set(http::field::server, "stepaudio");
    res->set(http::field::content_type, r.content_type);
    res->set("X-Request-Id", req_.request_id);
    for (auto& [k, v] : r.headers) res->set(k, v);
    res->body() = std::move(r.body);
    res->keep_alive(keep_alive_ && !close_after_reply_);
    res->prepare_payload();
    // HEAD: the headers a GET would get (its Content-Length included), no content (RFC 9110
    // 9.3.2); content sent anyway would be read as the start of the next answer.
    if (req_.method == "HEAD") res->body().clear();
    bytes_out_ = res->body().size();
    arm(shared_->limits.write_timeout_s);
    http::async_write(socket_, *res, [self = shared_from_this(), res](error_code ec, size_t) {
      self->disarm();
      self->finish_exchange();
      if (ec || !res->keep_alive()) return self->close();
      if (self->watching_) {  // stop the watch read, then read the next request
        self->resume_after_watch_ = true;
        error_code ignored;
        self->socket_.cancel(ignored);
      } else {
        self->read_request();
      }
    });
  }

  void reply_and_close(HttpResponse r) {
    close_after_reply_ = true;
    if (req_.request_id.empty()) req_.request_id = request_id_for("");
    if (started_ == Clock::time_point{}) started_ = Clock::now();
    do_reply(std::move(r));
  }

  void enqueue(std::string piece) {
    if (closed_) return;
    queue_.push_back(std::move(piece));
    if (!writing_) write_next();
  }

  void write_next() {
    if (queue_.empty()) {
      writing_ = false;
      if (ending_) {
        finish_exchange();
        close();
      }
      return;
    }
    writing_ = true;
    arm(shared_->limits.write_timeout_s);
    net::async_write(socket_, net::buffer(queue_.front()),
                     [self = shared_from_this()](error_code ec, size_t n) {
                       self->disarm();
                       if (ec) return self->close();
                       self->bytes_out_ += n;
                       const size_t sz = self->queue_.front().size();
                       self->backlog_ -= std::min<size_t>(sz, self->backlog_);
                       self->queue_.pop_front();
                       self->write_next();
                     });
  }

  void finish_exchange() {
    if (complete_) return;
    complete_ = true;
    close_callbacks_.clear();
    for (auto& t : timers_) t->cancel();
    timers_.clear();
    if (shared_->log)
      shared_->log(req_, status_,
                   std::chrono::duration<double, std::milli>(Clock::now() - started_).count(),
                   bytes_out_);
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    disarm();
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    auto callbacks = std::move(close_callbacks_);
    close_callbacks_.clear();
    if (replied_ && !complete_) {
      complete_ = true;  // a stream cut short: still logged
      if (shared_->log)
        shared_->log(req_, status_,
                     std::chrono::duration<double, std::milli>(Clock::now() - started_).count(),
                     bytes_out_);
    }
    for (auto& t : timers_) t->cancel();
    timers_.clear();
    for (auto& fn : callbacks) fn();  // emptied by finish_exchange once the answer was complete
  }

  tcp::socket socket_;
  net::steady_timer timer_;
  std::shared_ptr<Shared> shared_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  HttpRequest req_;
  Clock::time_point started_{};
  uint64_t deadline_gen_ = 0;
  size_t requests_ = 0, bytes_out_ = 0;
  int status_ = 0;
  bool keep_alive_ = false, close_after_reply_ = false;
  bool replied_ = false, complete_ = false, ending_ = false, writing_ = false;
  bool watching_ = false, resume_after_watch_ = false;
  std::atomic<bool> closed_{false};
  std::atomic<size_t> backlog_{0};
  std::deque<std::string> queue_;
  std::vector<std::function<void()>> close_callbacks_;
  std::vector<std::shared_ptr<net::steady_timer>> timers_;
};

}  // namespace

struct HttpServer::Impl {
  net::io_context ioc;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::shared_ptr<Shared> shared = std::make_shared<Shared>();

  void accept() {
    acceptor->async_accept(net::make_strand(ioc), [this](error_code ec, tcp::socket socket) {
      if (ec == net::error::operation_aborted) return;
      if (!ec) {
        if (shared->connections >= shared->limits.max_connections) {
          error_code ignored;
          socket.close(ignored);  // over the cap: refuse at once rather than exhaust descriptors
        } else {
          // Answers and SSE events are written whole: Nagle would only hold their last segment
          // back until the client's (delayed) ACK.
          error_code ignored;
          socket.set_option(tcp::no_delay(true), ignored);
          std::make_shared<Connection>(std::move(socket), shared)->start();
        }
      }
      accept();
    });
  }
};

HttpServer::HttpServer(const HttpLimits& limits, Handler handler, AccessLog log)
    : impl_(std::make_unique<Impl>()) {
  impl_->shared->limits = limits;
  impl_->shared->handler = std::move(handler);
  impl_->shared->log = std::move(log);
}

HttpServer::~HttpServer() = default;

uint16_t HttpServer::listen(const std::string& host, uint16_t port) {
  error_code ec;
  auto addr = net::ip::make_address(host, ec);
  if (ec) throw std::runtime_error("--host " + host + ": not an IP address");
  tcp::endpoint ep(addr, port);
  auto a = std::make_unique<tcp::acceptor>(impl_->ioc);
  a->open(ep.protocol(), ec);
  if (!ec) a->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) a->bind(ep, ec);
  if (!ec) a->listen(net::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::runtime_error("cannot listen on " + host + ":" + std::to_string(port) + ": " +
                             ec.message());
  const uint16_t bound = a->local_endpoint().port();
  impl_->acceptor = std::move(a);
  impl_->accept();
  return bound;
}

void HttpServer::run(int threads) {
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back([this] { impl_->ioc.run(); });
  impl_->ioc.run();
  for (auto& t : pool) t.join();
}

void HttpServer::stop() {
  impl_->ioc.stop();
}

size_t HttpServer::connections() const {
  return impl_->shared->connections;
}

}  // namespace stepaudio::server
