// The Redis client (server/redis_client.h): URL parsing, replies, errors as StoreError, bounded
// waits on an unreachable server, and reconnection after the server went away.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "redis_test_server.h"
#include "server/redis_client.h"
#include "server/redis_rate_limit.h"

using namespace stepaudio::server;

namespace {

TEST(RedisUrl, ParsesEveryPart) {
  RedisConfig c = parse_redis_url("redis://127.0.0.1:6380/2");
  EXPECT_EQ(c.host, "127.0.0.1");
  EXPECT_EQ(c.port, 6380);
  EXPECT_EQ(c.db, 2);
  EXPECT_EQ(c.password, "");
  c = parse_redis_url("redis://:s3cret@redis.internal");
  EXPECT_EQ(c.host, "redis.internal");
  EXPECT_EQ(c.port, 6379);
  EXPECT_EQ(c.user, "");
  EXPECT_EQ(c.password, "s3cret");
  EXPECT_EQ(c.display().find("s3cret"), std::string::npos);  // never in logs
  c = parse_redis_url("redis://app:pw@h:1/");
  EXPECT_EQ(c.user, "app");
  EXPECT_EQ(c.password, "pw");
  EXPECT_EQ(c.db, 0);
  for (const char* bad : {"http://h:1", "redis://", "redis://h:0", "redis://h:99999",
                          "redis://h:port", "redis://h:1/x", "redis://h:1/-1"})
    EXPECT_THROW(parse_redis_url(bad), std::invalid_argument) << bad;
}

TEST(RedisClient, UnreachableServerFailsFastWithStoreError) {
  RedisConfig c;
  c.port = 1;  // nothing listens there
  RedisClient client(c);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) EXPECT_THROW(client.command({"PING"}), StoreError);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
}

TEST(RedisClient, RepliesErrorsScriptsAndPipelines) {
  std::string why;
  auto* server = stepaudio::test::RedisTestServer::instance(&why);
  if (!server) GTEST_SKIP() << why;
  RedisClient client(parse_redis_url(server->url() + "/3"));
  client.command({"FLUSHDB"});
  const std::string binary("a\0b\xff", 4);
  EXPECT_EQ(client.command({"SET", "k", binary}).str, "OK");
  RedisReply r = client.command({"GET", "k"});
  EXPECT_EQ(r.type, RedisReply::Type::string);
  EXPECT_EQ(r.str, binary);
  EXPECT_TRUE(client.command({"GET", "missing"}).is_nil());
  EXPECT_EQ(client.command({"INCR", "n"}).as_int(), 1);
  // An error reply is a StoreError naming the server; the connection stays usable.
  try {
    client.command({"INCR", "k"});
    FAIL();
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("not an integer"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(server->url().substr(8)), std::string::npos);
  }
  const auto replies = client.pipeline({{"RPUSH", "l", "x", "y"}, {"LRANGE", "l", "0", "-1"}});
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[0].as_int(), 2);
  ASSERT_EQ(replies[1].elements.size(), 2u);
  EXPECT_EQ(replies[1].elements[1].str, "y");
  // A script: EVALSHA after the first EVAL, and again after SCRIPT FLUSH (a restarted server).
  const RedisScript add("return tonumber(ARGV[1]) + tonumber(ARGV[2])");
  EXPECT_EQ(client.eval(add, {}, {"2", "3"}).as_int(), 5);
  client.command({"SCRIPT", "FLUSH"});
  EXPECT_EQ(client.eval(add, {}, {"4", "3"}).as_int(), 7);
  // Several threads share the pool.
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) client.command({"INCR", "shared"});
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(client.command({"GET", "shared"}).as_int(), 200);
}

TEST(RedisClient, ReconnectsAfterTheConnectionWasKilled) {
  std::string why;
  auto* server = stepaudio::test::RedisTestServer::instance(&why);
  if (!server) GTEST_SKIP() << why;
  RedisConnection conn(parse_redis_url(server->url()));
  conn.command({"CLIENT", "SETNAME", "victim"});
  RedisConnection admin(parse_redis_url(server->url()));
  admin.command({"CLIENT", "KILL", "SKIPME", "no", "TYPE", "normal"});  // drops `conn` too
  EXPECT_THROW(conn.command({"PING"}), StoreError);  // the broken connection is reported once
  EXPECT_FALSE(conn.connected());
  EXPECT_EQ(conn.command({"PING"}).str, "PONG");  // and replaced on the next call
}

}  // namespace

namespace {

// Two limiters on one Redis: two nodes sharing each caller's bucket.
TEST(RedisRateLimit, NodesShareOneBucketPerCaller) {
  std::string why;
  auto* server = stepaudio::test::RedisTestServer::instance(&why);
  if (!server) GTEST_SKIP() << why;
  auto client = std::make_shared<RedisClient>(parse_redis_url(server->url() + "/4"));
  client->command({"FLUSHDB"});
  auto node_a = make_redis_rate_limit(client, 0.5, 3);
  auto node_b = make_redis_rate_limit(
      std::make_shared<RedisClient>(parse_redis_url(server->url() + "/4")), 0.5, 3);
  int retry = 0;
  EXPECT_TRUE(node_a->take("key_1", 0, &retry));
  EXPECT_TRUE(node_b->take("key_1", 0, &retry));
  EXPECT_TRUE(node_a->take("key_1", 0, &retry));
  EXPECT_FALSE(node_b->take("key_1", 0, &retry));  // the burst of 3 is spent across both
  EXPECT_EQ(retry, 2);                             // one token per 2 s
  EXPECT_FALSE(node_a->take("key_1", 0, &retry));
  EXPECT_TRUE(node_b->take("key_2", 0, &retry));  // per caller
  const int64_t ttl = client->command({"PTTL", "stepaudio:rate:key_1"}).as_int();
  EXPECT_GT(ttl, 60000);  // forgotten once a full refill has passed
  EXPECT_LE(ttl, 66000);
  // rate 0: unlimited, no Redis call; Redis unreachable: not limited (fail open).
  EXPECT_TRUE(make_redis_rate_limit(client, 0, 1)->take("key_1", 0, &retry));
  RedisConfig nowhere;
  nowhere.port = 1;
  EXPECT_TRUE(make_redis_rate_limit(std::make_shared<RedisClient>(nowhere), 1, 1)
                  ->take("key_1", 0, &retry));
}

}  // namespace

namespace {

// A "Redis" that accepts connections (the kernel completes the handshake from the backlog) and
// never answers: what a hung or SIGSTOPped server looks like to a client.
class SilentListener {
 public:
  SilentListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), len) != 0 ||
        ::listen(fd_, 16) != 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw std::runtime_error("listen on 127.0.0.1 failed");
    port_ = ntohs(a.sin_port);
  }
  ~SilentListener() { ::close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// The limiter runs on an HTTP I/O thread: a hanging Redis costs it one short timeout (250 ms,
// not the store's 1.5 s), and then nothing for a second (fail open without asking).
TEST(RedisRateLimit, HangingRedisCostsTheIoThreadOneShortTimeout) {
  SilentListener silent;
  RedisConfig c;
  c.port = silent.port();
  auto limiter = make_redis_rate_limit(std::make_shared<RedisClient>(c), 1, 1);
  using Clock = std::chrono::steady_clock;
  int retry = 0;
  auto t0 = Clock::now();
  EXPECT_TRUE(limiter->take("key_1", 0, &retry));  // fails open
  const double first_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  EXPECT_GE(first_ms, 200);   // it did wait for the reply (the 250 ms timeout)...
  EXPECT_LT(first_ms, 1200);  // ...not the store's 1.5 s (bounds wide for sanitized builds)
  t0 = Clock::now();
  for (int i = 0; i < 20; ++i) EXPECT_TRUE(limiter->take("key_1", 0, &retry));
  const double next_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  EXPECT_LT(next_ms, 150);  // 20 calls inside the fail-open second: no Redis round trip
}

}  // namespace
