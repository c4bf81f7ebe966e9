// The job store in Redis (job_store.h, docs/REDIS.md), for several nodes sharing one Redis: the
// same semantics as the SQLite store, each multi-key change done atomically in one Lua script.
// Key layout (prefix "stepaudio:"), durability and failure behaviour: docs/REDIS.md.
#pragma once

#include <memory>
#include <string>

#include "job_store.h"
#include "redis_client.h"

namespace stepaudio::server {

inline constexpr const char* kRedisPrefix = "stepaudio:";

// Connects (PING) and returns the store; throws StoreError naming the server when it cannot be
// reached. The client is shared with the other Redis-backed parts of a node (queue, events, rate
// limits): the store owns nothing else.
std::unique_ptr<JobStore> open_redis_store(std::shared_ptr<RedisClient> client);

}  // namespace stepaudio::server
