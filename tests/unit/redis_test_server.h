// A throwaway redis-server for unit tests: started once per test binary on 127.0.0.1 and a free
// port, in a temporary directory (AOF on, as in production: docs/REDIS.md), and stopped at exit.
// instance() is null when redis-server is not installed (tests then GTEST_SKIP with `why`).
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "server/redis_client.h"

namespace stepaudio::test {

class RedisTestServer {
 public:
  static RedisTestServer* instance(std::string* why) {
    static std::string reason;
    static std::unique_ptr<RedisTestServer> server = start(&reason);
    if (!server && why) *why = reason;
    return server.get();
  }
  ~RedisTestServer() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    std::filesystem::remove_all(dir_);
  }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }

 private:
  static std::string find_binary() {
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/bin:/bin";
    dirs += ":/usr/bin:/usr/sbin";
    size_t start = 0;
    while (start <= dirs.size()) {
      const size_t end = dirs.find(':', start);
      const std::string d = dirs.substr(start, end == std::string::npos ? end : end - start);
      if (!d.empty() && access((d + "/redis-server").c_str(), X_OK) == 0)
        return d + "/redis-server";
      if (end == std::string::npos) break;
      start = end + 1;
    }
    return "";
  }

  static int free_port() {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = 0;
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
      port = ntohs(a.sin_port);
    close(fd);
    return port;
  }

  static std::unique_ptr<RedisTestServer> start(std::string* why) {
    const std::string bin = find_binary();
    if (bin.empty()) {
      *why = "redis-server is not installed (scripts/setup installs it): Redis tests skipped";
      return nullptr;
    }
    char tmpl[] = "/tmp/sa_redis_XXXXXX";
    if (!mkdtemp(tmpl)) {
      *why = "mkdtemp failed";
      return nullptr;
    }
    auto s = std::unique_ptr<RedisTestServer>(new RedisTestServer);
    s->dir_ = tmpl;
    s->port_ = free_port();
    const std::string port = std::to_string(s->port_);
    s->pid_ = fork();
    if (s->pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test binary
      if (!freopen("/dev/null", "w", stdout)) _exit(127);
      execl(bin.c_str(), "redis-server", "--port", port.c_str(), "--bind", "127.0.0.1", "--dir",
            tmpl, "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
            static_cast<char*>(nullptr));
      _exit(127);
    }
    server::RedisConfig cfg;
    cfg.port = s->port_;
    cfg.connect_timeout_ms = 200;
    for (int i = 0; i < 100; ++i) {
      try {
        server::RedisConnection c(cfg);
        if (c.command({"PING"}).str == "PONG") return s;
      } catch (const server::StoreError&) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    *why = "redis-server did not answer on port " + port + " within 5 s";
    return nullptr;
  }

  RedisTestServer() = default;
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace stepaudio::test
