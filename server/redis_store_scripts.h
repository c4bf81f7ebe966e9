// The Lua scripts of the Redis job store (redis_store.cpp). Each runs atomically in Redis, so a
// job's hash and its index entries (per owner, per status, expiry) never disagree, even with
// several nodes writing. Keys a script derives from ARGV (the prefix P) make them unfit for
// Redis Cluster: one Redis (with replicas) is the supported setup (docs/REDIS.md).
#pragma once

namespace stepaudio::server::redis_lua {

// KEYS: job, input, owner index, the set of the job's status, expiry. ARGV: has_input, input, id,
// created_ms, expires_ms, then field/value pairs of the hash.
inline constexpr const char* kCreateJob = R"lua(
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('job ' .. ARGV[3] .. ' exists already')
end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
if ARGV[1] == '1' then redis.call('SET', KEYS[2], ARGV[2]) end
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
redis.call('SADD', KEYS[4], ARGV[3])
if tonumber(ARGV[5]) > 0 then redis.call('ZADD', KEYS[5], ARGV[5], ARGV[3]) end
return 1
)lua";

// KEYS: owner index. ARGV: before_id ('' = first page), limit. Ids newest first: the index is
// scored by created_ms, and ties sort by id, so ZREVRANGE is (created_ms DESC, id DESC).
inline constexpr const char* kListJobs = R"lua(
local start = 0
if ARGV[1] ~= '' then
  local r = redis.call('ZREVRANK', KEYS[1], ARGV[1])
  if not r then return {} end
  start = r + 1
end
return redis.call('ZREVRANGE', KEYS[1], start, start + tonumber(ARGV[2]) - 1)
)lua";

// KEYS: job, status:queued, status:running. ARGV: id, now_ms.
inline constexpr const char* kMarkRunning = R"lua(
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'running', 'started_ms', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('SMOVE', KEYS[2], KEYS[3], ARGV[1])
return 1
)lua";

// KEYS: job, status:running, status:queued. ARGV: id.
inline constexpr const char* kRequeue = R"lua(
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued')
redis.call('SMOVE', KEYS[2], KEYS[3], ARGV[1])
return 1
)lua";

// KEYS: due set. ARGV: member, now_ms, until_ms. Moves a due delivery's time to until_ms.
inline constexpr const char* kLeaseDelivery = R"lua(
local t = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not t or tonumber(t) > tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
)lua";

// KEYS: job. ARGV: field, value (set only when the job exists).
inline constexpr const char* kSetIfExists = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
)lua";

// KEYS: job, expiry. ARGV: id, status, result, error_code, error_message, finished_ms,
// expires_ms, prefix. Only from queued/running: the first of a cancel and a completion wins.
inline constexpr const char* kFinishJob = R"lua(
local old = redis.call('HGET', KEYS[1], 'status')
if old ~= 'queued' and old ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'result_json', ARGV[3], 'error_code', ARGV[4],
           'error_message', ARGV[5], 'finished_ms', ARGV[6], 'expires_ms', ARGV[7])
redis.call('SMOVE', ARGV[8] .. 'status:' .. old, ARGV[8] .. 'status:' .. ARGV[2], ARGV[1])
if tonumber(ARGV[7]) > 0 then redis.call('ZADD', KEYS[2], ARGV[7], ARGV[1]) end
return 1
)lua";

// ARGV: prefix, max_attempts, now_ms, failed_expires_ms. -> {failed ids, queued ids}.
inline constexpr const char* kRecover = R"lua(
local P = ARGV[1]
local failed = {}
for _, id in ipairs(redis.call('SMEMBERS', P .. 'status:running')) do
  local key = P .. 'job:' .. id
  if redis.call('EXISTS', key) == 0 then
    redis.call('SREM', P .. 'status:running', id)
  else
    local attempts = tonumber(redis.call('HGET', key, 'attempts'))
    if attempts >= tonumber(ARGV[2]) then
      local msg = 'interrupted ' .. attempts .. (attempts == 1 and ' time' or ' times') ..
                  ' (the server stopped while it ran); giving up'
      redis.call('HSET', key, 'status', 'failed', 'error_code', 'interrupted', 'error_message',
                 msg, 'finished_ms', ARGV[3], 'expires_ms', ARGV[4])
      redis.call('SMOVE', P .. 'status:running', P .. 'status:failed', id)
      if tonumber(ARGV[4]) > 0 then redis.call('ZADD', P .. 'expiry', ARGV[4], id) end
      failed[#failed + 1] = id
    else
      redis.call('HSET', key, 'status', 'queued')
      redis.call('SMOVE', P .. 'status:running', P .. 'status:queued', id)
    end
  end
end
return {failed, redis.call('SMEMBERS', P .. 'status:queued')}
)lua";

// KEYS: job, events. ARGV: the encoded event. -> its seq (the list's new length).
inline constexpr const char* kAppendEvent = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('no such job for an event')
end
return redis.call('RPUSH', KEYS[2], ARGV[1])
)lua";

// KEYS: delivery counter, due set, job. ARGV: prefix, job_id, url, owner, payload, secret,
// attempts, state, next_attempt_ms, attempts_json. -> the new id.
inline constexpr const char* kAddDelivery = R"lua(
if redis.call('EXISTS', KEYS[3]) == 0 then
  return redis.error_reply('no such job for a delivery')
end
local id = redis.call('INCR', KEYS[1])
local P = ARGV[1]
redis.call('HSET', P .. 'delivery:' .. id, 'id', id, 'job_id', ARGV[2], 'url', ARGV[3],
           'owner', ARGV[4], 'payload', ARGV[5], 'secret', ARGV[6], 'attempts', ARGV[7],
           'state', ARGV[8], 'next_attempt_ms', ARGV[9], 'attempts_json', ARGV[10])
redis.call('SADD', P .. 'job_deliveries:' .. ARGV[2], id)
if ARGV[8] == 'pending' then
  redis.call('ZADD', KEYS[2], ARGV[9], string.format('%020d', id))
end
return id
)lua";

// KEYS: delivery, due set. ARGV: the attempt as a JSON object, state, next_attempt_ms, due member.
inline constexpr const char* kRecordAttempt = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local a = redis.call('HGET', KEYS[1], 'attempts_json')
if a == '[]' or not a then a = '[' .. ARGV[1] .. ']'
else a = string.sub(a, 1, -2) .. ',' .. ARGV[1] .. ']' end
redis.call('HSET', KEYS[1], 'attempts_json', a, 'state', ARGV[2], 'next_attempt_ms', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if ARGV[2] == 'pending' then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
else redis.call('ZREM', KEYS[2], ARGV[4]) end
return 1
)lua";

// KEYS: entry, lru. ARGV: now_ms, key. -> the value, or nil when missing or expired.
inline constexpr const char* kCacheGet = R"lua(
local v = redis.call('HMGET', KEYS[1], 'value', 'expires_ms')
if not v[1] then return false end
local exp = tonumber(v[2])
if exp > 0 and exp <= tonumber(ARGV[1]) then return false end
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
return v[1]
)lua";

// KEYS: entry, lru, expiry. ARGV: key, value, now_ms, ttl_ms, max_entries, prefix.
// The entry also gets a Redis TTL, so that Redis frees it even if no node sweeps any more.
inline constexpr const char* kCachePut = R"lua(
local P, key, now, ttl = ARGV[6], ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
local function drop(k)
  redis.call('DEL', P .. 'cache:' .. k)
  redis.call('ZREM', KEYS[2], k)
  redis.call('ZREM', KEYS[3], k)
end
local exp = 0
if ttl > 0 then exp = now + ttl end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'value', ARGV[2], 'expires_ms', exp)
redis.call('ZADD', KEYS[2], now, key)
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('ZADD', KEYS[3], exp, key)
else
  redis.call('ZREM', KEYS[3], key)
end
for _, k in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do drop(k) end
local max = tonumber(ARGV[5])
if max == 0 then drop(key) end
local over = redis.call('ZCARD', KEYS[2]) - max
if over > 0 then
  -- Least recently used first; the entry just put stays whatever its clock says.
  for _, k in ipairs(redis.call('ZRANGE', KEYS[2], 0, over)) do
    if over == 0 then break end
    if k ~= key then
      drop(k)
      over = over - 1
    end
  end
end
return 1
)lua";

// ARGV: prefix, now_ms, batch. Deletes up to `batch` expired jobs with their input, events and
// deliveries, and up to `batch` expired cache entries. -> {rows counted, more to do (0/1)}.
inline constexpr const char* kSweep = R"lua(
local P, now, batch = ARGV[1], ARGV[2], tonumber(ARGV[3])
local n, more = 0, 0
local ids = redis.call('ZRANGEBYSCORE', P .. 'expiry', '-inf', now, 'LIMIT', 0, batch)
if #ids == batch then more = 1 end
for _, id in ipairs(ids) do
  local key = P .. 'job:' .. id
  local f = redis.call('HMGET', key, 'owner', 'status')
  if f[1] then
    redis.call('ZREM', P .. 'owner:' .. f[1], id)
    n = n + 1
  end
  if f[2] then redis.call('SREM', P .. 'status:' .. f[2], id) end
  for _, d in ipairs(redis.call('SMEMBERS', P .. 'job_deliveries:' .. id)) do
    redis.call('DEL', P .. 'delivery:' .. d)
    redis.call('ZREM', P .. 'deliveries_due', string.format('%020d', tonumber(d)))
  end
  redis.call('DEL', key, P .. 'input:' .. id, P .. 'events:' .. id, P .. 'job_deliveries:' .. id)
  redis.call('ZREM', P .. 'expiry', id)
end
local keys = redis.call('ZRANGEBYSCORE', P .. 'cache_exp', '-inf', now, 'LIMIT', 0, batch)
if #keys == batch then more = 1 end
for _, k in ipairs(keys) do
  redis.call('DEL', P .. 'cache:' .. k)
  redis.call('ZREM', P .. 'cache_exp', k)
  redis.call('ZREM', P .. 'cache_lru', k)
  n = n + 1
end
return {n, more}
)lua";

// KEYS: the claim. ARGV: request_hash, job_id, now_ms, expires_ms (0 = never), ttl_ms. -> the
// live claim {request_hash, job_id}, or nil after claiming. The Redis TTL frees the memory; the
// expiry check against now_ms is the one that counts (as in the SQLite store).
inline constexpr const char* kClaimKey = R"lua(
local v = redis.call('HMGET', KEYS[1], 'request_hash', 'job_id', 'expires_ms')
local exp = tonumber(v[3] or '0')
if v[1] and (exp == 0 or exp > tonumber(ARGV[3])) then return {v[1], v[2]} end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'request_hash', ARGV[1], 'job_id', ARGV[2], 'expires_ms', ARGV[4])
if tonumber(ARGV[5]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
return false
)lua";

// KEYS: the claim. ARGV: job_id.
inline constexpr const char* kReleaseKey = R"lua(
if redis.call('HGET', KEYS[1], 'job_id') == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
)lua";

}  // namespace stepaudio::server::redis_lua
