// The Redis client (redis_client.h) over hiredis' synchronous API.
#include "redis_client.h"

#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <sys/time.h>

#include <cerrno>
#include <cstdlib>
#include <stdexcept>

#include "crypto.h"

namespace stepaudio::server {

namespace {

timeval to_timeval(int ms) {
  timeval tv;
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  return tv;
}

int parse_int(const std::string& s, const char* what, int lo, int hi) {
  char* end = nullptr;
  const long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || v < lo || v > hi)
    throw std::invalid_argument(std::string("bad ") + what + " '" + s + "'");
  return int(v);
}

RedisReply copy_reply(const redisReply* r) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = RedisReply::Type::string;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = RedisReply::Type::status;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::integer;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::array;
      out.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(copy_reply(r->element[i]));
      break;
    default:
      out.type = RedisReply::Type::nil;
  }
  return out;
}

struct ReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyFree>;

}  // namespace

std::string RedisConfig::display() const {
  return host + ":" + std::to_string(port) + "/" + std::to_string(db);
}

RedisConfig parse_redis_url(const std::string& url) {
  const std::string scheme = "redis://";
  if (url.rfind(scheme, 0) != 0)
    throw std::invalid_argument("a Redis URL starts with redis:// (got '" + url + "')");
  std::string rest = url.substr(scheme.size());
  RedisConfig c;
  const size_t at = rest.rfind('@');
  if (at != std::string::npos) {
    const std::string userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const size_t colon = userinfo.find(':');
    if (colon == std::string::npos) {
      c.password = userinfo;  // redis://secret@host: the password alone
    } else {
      c.user = userinfo.substr(0, colon);
      c.password = userinfo.substr(colon + 1);
    }
  }
  const size_t slash = rest.find('/');
  if (slash != std::string::npos) {
    const std::string db = rest.substr(slash + 1);
    if (!db.empty()) c.db = parse_int(db, "database number", 0, 1 << 20);
    rest = rest.substr(0, slash);
  }
  const size_t colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find(']') == std::string::npos) {
    c.port = parse_int(rest.substr(colon + 1), "port", 1, 65535);
    rest = rest.substr(0, colon);
  }
  if (rest.empty()) throw std::invalid_argument("no host in Redis URL '" + url + "'");
  c.host = rest;
  return c;
}

int64_t RedisReply::as_int() const {
  if (type == Type::integer) return integer;
  if (type == Type::string || type == Type::status) {
    char* end = nullptr;
    const long long v = std::strtoll(str.c_str(), &end, 10);
    if (!str.empty() && *end == '\0') return v;
  }
  throw StoreError("redis: expected an integer reply");
}

RedisScript::RedisScript(std::string src) : source(std::move(src)) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(source.data(), source.size(), md, &n, EVP_sha1(), nullptr);
  sha1 = to_hex(md, n);
}

RedisConnection::RedisConnection(RedisConfig config)
    : config_(std::move(config)), timeout_ms_(config_.command_timeout_ms) {}

RedisConnection::~RedisConnection() {
  close();
}

void RedisConnection::close() {
  if (ctx_) redisFree(ctx_);
  ctx_ = nullptr;
}

void RedisConnection::fail(const std::string& what) {
  close();
  throw StoreError("redis " + config_.display() + ": " + what);
}

void RedisConnection::set_timeout_ms(int ms) {
  timeout_ms_ = ms;
  if (ctx_) redisSetTimeout(ctx_, to_timeval(ms));
}

void RedisConnection::connect() {
  ctx_ = redisConnectWithTimeout(config_.host.c_str(), config_.port,
                                 to_timeval(config_.connect_timeout_ms));
  if (!ctx_) throw StoreError("redis " + config_.display() + ": out of memory");
  if (ctx_->err) fail(std::string("cannot connect: ") + ctx_->errstr);
  // The timeout bounds every later read and write; keepalive finds a peer that vanished.
  redisSetTimeout(ctx_, to_timeval(timeout_ms_));
  redisEnableKeepAlive(ctx_);
  try {
    if (!config_.password.empty()) {
      if (config_.user.empty())
        command({"AUTH", config_.password});
      else
        command({"AUTH", config_.user, config_.password});
    }
    if (config_.db != 0) command({"SELECT", std::to_string(config_.db)});
  } catch (const StoreError&) {
    close();
    throw;
  }
}

RedisReply RedisConnection::read_reply(std::string* error) {
  void* raw = nullptr;
  if (redisGetReply(ctx_, &raw) != REDIS_OK || !raw) {
    // EOF or a reset on a connection that was idle: the server went away before our command
    // (a timeout, in contrast, may have run it).
    peer_closed_ = ctx_->err == REDIS_ERR_EOF ||
                   (ctx_->err == REDIS_ERR_IO && (errno == ECONNRESET || errno == EPIPE));
    // A timeout or a closed socket: the connection is out of step, start afresh next time.
    fail(ctx_->errstr[0] ? ctx_->errstr : "connection lost");
  }
  ReplyPtr r(static_cast<redisReply*>(raw));
  if (r->type == REDIS_REPLY_ERROR) {
    if (error->empty()) error->assign(r->str, r->len);
    return {};
  }
  return copy_reply(r.get());
}

std::vector<RedisReply> RedisConnection::pipeline(const std::vector<RedisArgs>& commands) {
  peer_closed_ = false;
  if (!ctx_) connect();
  for (const RedisArgs& args : commands) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const std::string& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    if (redisAppendCommandArgv(ctx_, int(argv.size()), argv.data(), lens.data()) != REDIS_OK)
      fail("cannot send a command");
  }
  std::vector<RedisReply> replies;
  replies.reserve(commands.size());
  std::string first_error;
  for (size_t i = 0; i < commands.size(); ++i) {
    replies.push_back(read_reply(&first_error));
  }
  if (!first_error.empty()) throw StoreError("redis " + config_.display() + ": " + first_error);
  return replies;
}

RedisReply RedisConnection::command(const RedisArgs& args) {
  return std::move(pipeline({args}).front());
}

RedisReply RedisConnection::eval(const RedisScript& script, const RedisArgs& keys,
                                 const RedisArgs& args) {
  auto call = [&](const std::string& verb, const std::string& body) {
    RedisArgs cmd{verb, body, std::to_string(keys.size())};
    cmd.insert(cmd.end(), keys.begin(), keys.end());
    cmd.insert(cmd.end(), args.begin(), args.end());
    return command(cmd);
  };
  try {
    return call("EVALSHA", script.sha1);
  } catch (const StoreError& e) {
    // A fresh server (or one restarted: the script cache is not persisted) does not know it yet.
    if (std::string(e.what()).find("NOSCRIPT") == std::string::npos) throw;
  }
  return call("EVAL", script.source);
}

template <typename Fn>
auto RedisClient::with_connection(Fn&& fn) {
  std::unique_ptr<RedisConnection> conn;
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      conn = std::move(idle_.back());
      idle_.pop_back();
    }
  }
  const bool reused = conn != nullptr;
  if (!conn) conn = std::make_unique<RedisConnection>(config_);
  auto give_back = [&] {
    if (!conn->connected()) return;  // broken: dropped (freed here), the next call reconnects
    std::lock_guard lock(mu_);
    if (idle_.size() < kMaxIdle) idle_.push_back(std::move(conn));
  };
  try {
    try {
      auto result = fn(*conn);
      give_back();
      return result;
    } catch (const StoreError&) {
      // A pooled connection that the server closed meanwhile (Redis restarted): once more on a
      // new one, so that a restart costs no request an error.
      if (!reused || !conn->peer_closed()) throw;
    }
    auto result = fn(*conn);  // reconnects
    give_back();
    return result;
  } catch (...) {
    give_back();  // an error reply leaves the connection usable; an I/O error closed it
    throw;
  }
}

RedisReply RedisClient::command(const RedisArgs& args) {
  return with_connection([&](RedisConnection& c) { return c.command(args); });
}

std::vector<RedisReply> RedisClient::pipeline(const std::vector<RedisArgs>& commands) {
  return with_connection([&](RedisConnection& c) { return c.pipeline(commands); });
}

RedisReply RedisClient::eval(const RedisScript& script, const RedisArgs& keys,
                             const RedisArgs& args) {
  return with_connection([&](RedisConnection& c) { return c.eval(script, keys, args); });
}

}  // namespace stepaudio::server
