// The shared queue and the event bus in Redis (cluster.h, docs/REDIS.md), both Redis Streams:
// - the queue is the stream stepaudio:queue read by the consumer group "nodes", one consumer per
//   node. An entry stays in its consumer's pending list until XACK; a node heartbeats the entries
//   it runs (XCLAIM ... JUSTID resets their idle time), and entries idle past the visibility
//   timeout (their node died) are taken over with XAUTOCLAIM.
// - the bus is the stream stepaudio:bus, read by every node with XREAD from the last id it saw, so
//   a node that lost its connection for a moment catches up instead of missing messages (which
//   Pub/Sub would drop). It is trimmed to about kBusLength messages.
#include <chrono>
#include <map>
#include <string>

#include "cluster.h"
#include "json_log.h"
#include "redis_store.h"

namespace stepaudio::server {
namespace {

const std::string kQueue = std::string(kRedisPrefix) + "queue";
const std::string kGroup = "nodes";
const std::string kBus = std::string(kRedisPrefix) + "bus";
constexpr const char* kBusLength = "100000";

bool mentions(const StoreError& e, const char* what) {
  return std::string(e.what()).find(what) != std::string::npos;
}

// [[id, [field, value, ...]], ...] -> the field `name` of each entry, with its id.
std::vector<std::pair<std::string, std::map<std::string, std::string>>> entries_of(
    const RedisReply& list) {
  std::vector<std::pair<std::string, std::map<std::string, std::string>>> out;
  for (const RedisReply& e : list.elements) {
    if (e.elements.size() != 2) continue;  // a deleted entry (nil fields)
    std::map<std::string, std::string> fields;
    const auto& kv = e.elements[1].elements;
    for (size_t i = 0; i + 1 < kv.size(); i += 2) fields[kv[i].str] = kv[i + 1].str;
    out.emplace_back(e.elements[0].str, std::move(fields));
  }
  return out;
}

class RedisQueue final : public JobQueue {
 public:
  RedisQueue(std::shared_ptr<RedisClient> client, std::string node, int visibility_ms)
      : redis_(std::move(client)),
        node_(std::move(node)),
        visibility_ms_(visibility_ms),
        blocking_(redis_->config()) {
    ensure_group();
  }

  void push(const std::string& job_id) override {
    redis_->command({"XADD", kQueue, "*", "job", job_id});
  }

  std::vector<QueueEntry> pull(size_t max, int wait_ms) override {
    std::vector<QueueEntry> out;
    const auto now = std::chrono::steady_clock::now();
    if (now >= next_reclaim_) {
      next_reclaim_ = now + std::chrono::milliseconds(std::max(250, visibility_ms_ / 4));
      const RedisReply r =
          redis_->command({"XAUTOCLAIM", kQueue, kGroup, node_, std::to_string(visibility_ms_),
                           reclaim_cursor_, "COUNT", std::to_string(max)});
      if (r.elements.size() >= 2) {
        reclaim_cursor_ = r.elements[0].str.empty() ? "0-0" : r.elements[0].str;
        for (auto& [id, fields] : entries_of(r.elements[1]))
          out.push_back({id, fields["job"], /*reclaimed=*/true, "", ""});
      }
      if (!out.empty()) return out;
    }
    // Blocks server-side for wait_ms; the socket waits that long plus the usual reply time.
    blocking_.set_timeout_ms(wait_ms + redis_->config().command_timeout_ms);
    RedisReply r;
    const RedisArgs read{"XREADGROUP", "GROUP",
                         kGroup,       node_,
                         "COUNT",      std::to_string(max),
                         "BLOCK",      std::to_string(wait_ms),
                         "STREAMS",    kQueue,
                         ">"};
    try {
      r = blocking_.command(read);
    } catch (const StoreError& e) {
      if (!mentions(e, "NOGROUP")) throw;
      ensure_group();  // a Redis that lost its data (no AOF) came back empty
      return out;
    }
    if (r.is_nil() || r.elements.empty() || r.elements[0].elements.size() != 2) return out;
    for (auto& [id, fields] : entries_of(r.elements[0].elements[1]))
      out.push_back({id, fields["job"], false, "", ""});
    return out;
  }

  void ack(const QueueEntry& e) override {
    redis_->pipeline({{"XACK", kQueue, kGroup, e.entry_id}, {"XDEL", kQueue, e.entry_id}});
  }

  void heartbeat(const std::vector<QueueEntry>& entries) override {
    if (entries.empty()) return;
    RedisArgs cmd{"XCLAIM", kQueue, kGroup, node_, "0"};
    for (const QueueEntry& e : entries) cmd.push_back(e.entry_id);
    cmd.push_back("JUSTID");  // resets the idle time without counting a delivery
    redis_->command(cmd);
    for (const QueueEntry& e : entries)
      if (!e.leads.empty())
        redis_->eval(refresh_, {inference_key(e.leads)},
                     {e.job_id, std::to_string(visibility_ms_)});
  }

  bool claim_inference(const std::string& cache_key, const std::string& job_id) override {
    return redis_
               ->eval(claim_, {inference_key(cache_key)}, {job_id, std::to_string(visibility_ms_)})
               .as_int() == 1;
  }

  void release_inference(const std::string& cache_key, const std::string& job_id) override {
    redis_->eval(release_, {inference_key(cache_key)}, {job_id});
  }

  size_t requeue_orphans(int64_t created_before_ms) override {
    return size_t(redis_
                      ->eval(orphans_, {kQueue, std::string(kRedisPrefix) + "status:queued"},
                             {kRedisPrefix, std::to_string(created_before_ms)})
                      .as_int());
  }

  size_t depth() override { return size_t(redis_->command({"XLEN", kQueue}).as_int()); }
  int visibility_timeout_ms() const override { return visibility_ms_; }

 private:
  void ensure_group() {
    try {
      redis_->command({"XGROUP", "CREATE", kQueue, kGroup, "0", "MKSTREAM"});
    } catch (const StoreError& e) {
      if (!mentions(e, "BUSYGROUP")) throw;  // it exists: another node made it
    }
  }

  static std::string inference_key(const std::string& cache_key) {
    return std::string(kRedisPrefix) + "inflight:" + cache_key;
  }

  std::shared_ptr<RedisClient> redis_;
  const std::string node_;
  const int visibility_ms_;
  // KEYS: queue, status:queued. ARGV: prefix, created_before_ms. The queue holds few entries
  // (they are deleted when acknowledged), so reading it whole is cheap.
  const RedisScript orphans_{R"lua(
local queued = {}
for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
  local f = e[2]
  for i = 1, #f - 1, 2 do
    if f[i] == 'job' then queued[f[i + 1]] = true end
  end
end
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if not queued[id] then
    local created = tonumber(redis.call('HGET', ARGV[1] .. 'job:' .. id, 'created_ms') or '0')
    if created < tonumber(ARGV[2]) then
      redis.call('XADD', KEYS[1], '*', 'job', id)
      n = n + 1
    end
  end
end
return n
)lua"};
  // KEYS: the claim. ARGV: job id, ttl_ms. Claims when free; true when it is this job's.
  const RedisScript claim_{R"lua(
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == ARGV[1] then return 1 end
return 0
)lua"};
  // KEYS: the claim. ARGV: job id, ttl_ms. Extends it while it is this job's.
  const RedisScript refresh_{R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
)lua"};
  // KEYS: the claim. ARGV: job id. Drops it if it is this job's.
  const RedisScript release_{R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
)lua"};
  RedisConnection blocking_;  // pull()'s own: a blocking read must not hold a pooled one
  std::string reclaim_cursor_ = "0-0";
  std::chrono::steady_clock::time_point next_reclaim_{};
};

class RedisBus final : public EventBus {
 public:
  RedisBus(std::shared_ptr<RedisClient> client, std::string node)
      : redis_(std::move(client)), node_(std::move(node)), blocking_(redis_->config()) {
    // Start from Redis' clock now: what other nodes publish from here on.
    const RedisReply t = redis_->command({"TIME"});
    if (t.elements.size() == 2)
      last_id_ =
          std::to_string(t.elements[0].as_int() * 1000 + t.elements[1].as_int() / 1000) + "-0";
  }

  void publish_event(const std::string& job_id, const JobEvent& e) override {
    redis_->command({"XADD",     kBus,
                     "MAXLEN",   "~",
                     kBusLength, "*",
                     "node",     node_,
                     "kind",     "event",
                     "job",      job_id,
                     "seq",      std::to_string(e.seq),
                     "type",     e.type,
                     "data",     e.data,
                     "ts",       std::to_string(e.ts_ms)});
  }

  void publish_cancel(const std::string& job_id) override {
    redis_->command({"XADD", kBus, "MAXLEN", "~", kBusLength, "*", "node", node_, "kind", "cancel",
                     "job", job_id});
  }

  void read(int wait_ms, const std::function<void(const std::string&, const JobEvent&)>& on_event,
            const std::function<void(const std::string&)>& on_cancel) override {
    blocking_.set_timeout_ms(wait_ms + redis_->config().command_timeout_ms);
    const RedisReply r = blocking_.command(
        {"XREAD", "COUNT", "512", "BLOCK", std::to_string(wait_ms), "STREAMS", kBus, last_id_});
    if (r.is_nil() || r.elements.empty() || r.elements[0].elements.size() != 2) return;
    for (auto& [id, f] : entries_of(r.elements[0].elements[1])) {
      last_id_ = id;
      if (f["node"] == node_) continue;
      if (f["kind"] == "cancel") {
        on_cancel(f["job"]);
      } else if (f["kind"] == "event") {
        JobEvent e;
        try {
          e.seq = std::stoll(f["seq"]);
          e.ts_ms = std::stoll(f["ts"]);
        } catch (const std::exception&) {
          continue;  // not ours to understand: skip it
        }
        e.type = f["type"];
        e.data = f["data"];
        on_event(f["job"], e);
      }
    }
  }

 private:
  std::shared_ptr<RedisClient> redis_;
  const std::string node_;
  RedisConnection blocking_;
  std::string last_id_ = "0-0";
};

}  // namespace

std::unique_ptr<JobQueue> make_redis_queue(std::shared_ptr<RedisClient> client,
                                           const std::string& node, int visibility_timeout_ms) {
  return std::make_unique<RedisQueue>(std::move(client), node, visibility_timeout_ms);
}

std::unique_ptr<EventBus> make_redis_bus(std::shared_ptr<RedisClient> client,
                                         const std::string& node) {
  return std::make_unique<RedisBus>(std::move(client), node);
}

}  // namespace stepaudio::server
