// Rate-limit buckets shared by several nodes (auth.h RateLimit, docs/REDIS.md): one token bucket
// per caller in Redis, refilled and taken atomically in one Lua script on Redis' clock, so the
// nodes' own clocks do not matter. Redis unreachable: requests are not limited (fail open).
#pragma once

#include <memory>

#include "auth.h"
#include "redis_client.h"

namespace stepaudio::server {

std::unique_ptr<RateLimit> make_redis_rate_limit(std::shared_ptr<RedisClient> client, double rate,
                                                 double burst);

}  // namespace stepaudio::server
