// The shared token buckets (redis_rate_limit.h). Key: stepaudio:rate:<caller>, a hash {tokens,
// last}, expiring once a full refill has passed (then it would be full anyway).
#include "redis_rate_limit.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <string>

#include "redis_store.h"

namespace stepaudio::server {
namespace {

// KEYS: bucket. ARGV: rate, burst. -> {1, 0} taken, or {0, seconds until a token as a string}.
constexpr const char* kTakeToken = R"lua(
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local b = redis.call('HMGET', KEYS[1], 'tokens', 'last')
local tokens, last = tonumber(b[1]), tonumber(b[2])
if not tokens then tokens, last = burst, now end
if now > last then
  tokens = math.min(burst, tokens + (now - last) * rate)
  last = now
end
local ok = 0
if tokens >= 1 then
  tokens = tokens - 1
  ok = 1
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.9f', tokens), 'last',
           string.format('%.6f', last))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst / rate + 60) * 1000))
if ok == 1 then return {1, '0'} end
return {0, string.format('%.6f', (1 - tokens) / rate)}
)lua";

// take() runs on an HTTP I/O thread, which must never wait long: the limiter has its own
// connections with short timeouts, and after a failure it lets requests through without asking
// Redis for kFailOpen, so a hanging Redis costs one I/O thread at most kTimeoutMs per kFailOpen
// (a stalled I/O thread would also stall /healthz and every other connection it serves).
constexpr int kTimeoutMs = 250;
constexpr auto kFailOpen = std::chrono::seconds(1);

RedisConfig with_short_timeouts(RedisConfig c) {
  c.connect_timeout_ms = std::min(c.connect_timeout_ms, kTimeoutMs);
  c.command_timeout_ms = std::min(c.command_timeout_ms, kTimeoutMs);
  return c;
}

class RedisRateLimit final : public RateLimit {
 public:
  RedisRateLimit(const RedisConfig& config, double rate, double burst)
      : redis_(with_short_timeouts(config)),
        rate_(rate),
        burst_(std::max(burst, 1.0)),
        script_(kTakeToken) {}

  bool take(const std::string& caller, double /*now_s: Redis' clock counts*/,
            int* retry_after_s) override {
    if (rate_ <= 0) return true;
    using Clock = std::chrono::steady_clock;
    const int64_t now = Clock::now().time_since_epoch().count();
    if (now < skip_until_.load(std::memory_order_relaxed)) return true;  // failing open
    char rate[32], burst[32];
    std::snprintf(rate, sizeof rate, "%.9g", rate_);
    std::snprintf(burst, sizeof burst, "%.9g", burst_);
    RedisReply r;
    try {
      r = redis_.eval(script_, {std::string(kRedisPrefix) + "rate:" + caller}, {rate, burst});
    } catch (const StoreError&) {
      // Fails open: without Redis every request that needs the store is answered 503 anyway,
      // and /healthz, /readyz and the rest keep answering.
      skip_until_.store((Clock::now() + std::chrono::duration_cast<Clock::duration>(kFailOpen))
                            .time_since_epoch()
                            .count(),
                        std::memory_order_relaxed);
      return true;
    }
    if (r.elements.size() != 2) throw StoreError("redis rate limit: bad reply");
    if (r.elements[0].as_int() == 1) return true;
    if (retry_after_s) {
      double wait = 1;
      try {
        wait = std::ceil(std::stod(r.elements[1].str) - 1e-9);
      } catch (const std::exception&) {
      }
      *retry_after_s = static_cast<int>(std::clamp(wait, 1.0, 1e9));
    }
    return false;
  }

 private:
  RedisClient redis_;
  double rate_, burst_;
  RedisScript script_;
  std::atomic<int64_t> skip_until_{0};  // steady_clock ticks: no Redis call before this
};

}  // namespace

std::unique_ptr<RateLimit> make_redis_rate_limit(std::shared_ptr<RedisClient> client, double rate,
                                                 double burst) {
  return std::make_unique<RedisRateLimit>(client->config(), rate, burst);
}

}  // namespace stepaudio::server
