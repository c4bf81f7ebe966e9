// Rate-limit buckets shared by several nodes (auth.h RateLimit, docs/REDIS.md): one token bucket
// per caller in Redis, refilled and taken atomically in one Lua script on Redis' clock, so the
// nodes' own clocks do not matter. Redis unreachable: requests are not limited (fail open).
// Bounded for the I/O thread it runs on: its own connections (to `client`'s server) with 250 ms
// timeouts, and after a failure no Redis call for a second (requests pass meanwhile).
#pragma once

#include <memory>

#include "auth.h"
#include "redis_client.h"

namespace stepaudio::server {

std::unique_ptr<RateLimit> make_redis_rate_limit(std::shared_ptr<RedisClient> client, double rate,
                                                 double burst);

}  // namespace stepaudio::server
