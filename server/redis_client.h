// A small synchronous Redis client over hiredis (docs/REDIS.md): one RAII connection class with
// connect and command timeouts (nothing ever blocks longer than they allow), reconnection on the
// next call after a broken connection, replies copied into a plain value type, and a pool that
// the store's threads share. Every failure (unreachable, timeout, an error reply) is thrown as
// StoreError, which the routes answer with 503.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "job_store.h"

struct redisContext;

namespace stepaudio::server {

// redis://[[user]:password@]host[:port][/db]
struct RedisConfig {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string user, password;  // AUTH when the password is set (user: Redis 6 ACLs)
  int db = 0;
  int connect_timeout_ms = 1000;  // a node that does not answer within this is down
  // Every reply (a blocking read adds its own wait). Per socket read/write, so a large input blob
  // that keeps moving is not cut off; a Redis that hangs makes a request fail within this.
  int command_timeout_ms = 1500;
  std::string display() const;    // "host:port/db" (never the password)
};
// Throws std::invalid_argument with the reason for a malformed URL.
RedisConfig parse_redis_url(const std::string& url);

// One reply, copied out of hiredis' reply object. Error replies never get here (thrown).
struct RedisReply {
  enum class Type { nil, string, integer, array, status };
  Type type = Type::nil;
  std::string str;  // string or status
  int64_t integer = 0;
  std::vector<RedisReply> elements;

  bool is_nil() const { return type == Type::nil; }
  // An integer reply, or a string of digits (Lua returns numbers either way); throws StoreError.
  int64_t as_int() const;
};

using RedisArgs = std::vector<std::string>;

// A Lua script sent by its SHA-1 (EVALSHA) and in full only when the server does not know it yet.
struct RedisScript {
  explicit RedisScript(std::string source);
  std::string source, sha1;
};

// One connection; not thread-safe (RedisClient hands each one to one thread at a time). It
// connects lazily; after an I/O error or a timeout it is closed, and the next call reconnects.
class RedisConnection {
 public:
  explicit RedisConnection(RedisConfig config);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  RedisReply command(const RedisArgs& args);
  // Sends every command, then reads every reply (one round trip). The first error reply is thrown
  // after all replies were read, so the connection stays in step.
  std::vector<RedisReply> pipeline(const std::vector<RedisArgs>& commands);
  RedisReply eval(const RedisScript& script, const RedisArgs& keys, const RedisArgs& args);
  // For a blocking command (XREADGROUP BLOCK): the reply may take this long (then the default).
  void set_timeout_ms(int ms);
  bool connected() const { return ctx_ != nullptr; }
  // The last failure was the peer closing the connection (a Redis restart, an idle timeout):
  // nothing of the failed call ran, so it may be sent again on a new connection.
  bool peer_closed() const { return peer_closed_; }
  void close();

 private:
  void connect();
  [[noreturn]] void fail(const std::string& what);  // closes, then throws StoreError
  // The next reply; an error reply comes back as nil with its message in *error (the first kept).
  RedisReply read_reply(std::string* error);

  RedisConfig config_;
  redisContext* ctx_ = nullptr;
  int timeout_ms_;
  bool peer_closed_ = false;
};

// Thread-safe: a pool of connections, each lent to one call at a time. A pool rather than one
// connection per thread: the store is called from short-lived and pooled threads alike (HTTP,
// blocking pool, engine callbacks), and thread_local connections would outlive the client or
// leak when their thread ends; a pool frees every connection in its destructor, keeps at most
// kMaxIdle open, and a broken connection is simply dropped.
class RedisClient {
 public:
  explicit RedisClient(RedisConfig config) : config_(std::move(config)) {}

  RedisReply command(const RedisArgs& args);
  std::vector<RedisReply> pipeline(const std::vector<RedisArgs>& commands);
  RedisReply eval(const RedisScript& script, const RedisArgs& keys, const RedisArgs& args);
  const RedisConfig& config() const { return config_; }

 private:
  static constexpr size_t kMaxIdle = 16;
  template <typename Fn>
  auto with_connection(Fn&& fn);

  RedisConfig config_;
  std::mutex mu_;
  std::vector<std::unique_ptr<RedisConnection>> idle_;
};

}  // namespace stepaudio::server
