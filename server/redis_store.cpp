// The Redis job store (redis_store.h). Reads are plain commands (pipelined where one call needs
// several); every change that touches more than one key is one Lua script (redis_store_scripts.h).
#include "redis_store.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "crypto.h"
#include "redis_store_scripts.h"

namespace stepaudio::server {
namespace {

using nlohmann::json;
namespace lua = redis_lua;

// Delivery ids in the due set are zero-padded so that equal due times sort by id.
std::string due_member(int64_t id) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%020lld", static_cast<long long>(id));
  return buf;
}

std::map<std::string, std::string> as_map(const RedisReply& r) {
  std::map<std::string, std::string> m;
  for (size_t i = 0; i + 1 < r.elements.size(); i += 2)
    m[r.elements[i].str] = r.elements[i + 1].str;
  return m;
}

int64_t i64(const std::map<std::string, std::string>& m, const char* k) {
  auto it = m.find(k);
  if (it == m.end() || it->second.empty()) return 0;
  try {
    return std::stoll(it->second);
  } catch (const std::exception&) {
    throw StoreError(std::string("redis job store: field ") + k + " is not a number");
  }
}

std::string str(const std::map<std::string, std::string>& m, const char* k) {
  auto it = m.find(k);
  return it == m.end() ? std::string() : it->second;
}

class RedisStore final : public JobStore {
 public:
  explicit RedisStore(std::shared_ptr<RedisClient> client)
      : redis_(std::move(client)), P(kRedisPrefix) {
    const RedisReply pong = redis_->command({"PING"});
    if (pong.str != "PONG") throw StoreError("redis " + redis_->config().display() + ": no PONG");
  }

  void create_job(const JobRecord& j, const std::string& input, bool /*durable*/) override {
    // durable is moot here: Redis acknowledges after its AOF write(2), and fsyncs every second
    // whatever the caller asks (docs/REDIS.md "Durability").
    const bool has_input = j.audio_url.empty() || !input.empty();  // as the SQLite store
    RedisArgs argv{has_input ? "1" : "0", input, j.id, std::to_string(j.created_ms),
                   std::to_string(j.expires_ms)};
    for (auto& [k, v] : job_fields(j)) {
      argv.push_back(k);
      argv.push_back(v);
    }
    redis_->eval(create_,
                 {job_key(j.id), P + "input:" + j.id, P + "owner:" + j.owner, status_key(j.status),
                  P + "expiry"},
                 argv);
  }

  std::optional<JobRecord> get_job(const std::string& id) override {
    const RedisReply r = redis_->command({"HGETALL", job_key(id)});
    if (r.elements.empty()) return std::nullopt;
    return read_job(r);
  }

  std::vector<JobRecord> list_jobs(const std::string& owner, size_t limit,
                                   const std::string& before_id) override {
    if (limit == 0) return {};
    limit = std::min<size_t>(limit, 100000);
    const RedisReply ids =
        redis_->eval(list_, {P + "owner:" + owner}, {before_id, std::to_string(limit)});
    return read_jobs(ids.elements);
  }

  std::optional<std::string> load_input(const std::string& id) override {
    RedisReply r = redis_->command({"GET", P + "input:" + id});
    if (r.is_nil()) return std::nullopt;
    return std::move(r.str);
  }

  void drop_input(const std::string& id) override { redis_->command({"DEL", P + "input:" + id}); }

  bool mark_running(const std::string& id, int64_t now_ms) override {
    return redis_
               ->eval(mark_running_,
                      {job_key(id), status_key(JobStatus::queued), status_key(JobStatus::running)},
                      {id, std::to_string(now_ms)})
               .as_int() == 1;
  }

  bool requeue(const std::string& id) override {
    return redis_
               ->eval(requeue_,
                      {job_key(id), status_key(JobStatus::running), status_key(JobStatus::queued)},
                      {id})
               .as_int() == 1;
  }

  void set_cache_key(const std::string& id, const std::string& key) override {
    redis_->eval(set_if_exists_, {job_key(id)}, {"cache_key", key});
  }

  bool finish_job(const std::string& id, JobStatus status, const std::string& result_json,
                  const std::string& error_code, const std::string& error_message, int64_t now_ms,
                  int64_t expires_ms) override {
    require_terminal(status);
    return redis_
               ->eval(finish_, {job_key(id), P + "expiry"},
                      {id, job_status_name(status), result_json, error_code, error_message,
                       std::to_string(now_ms), std::to_string(expires_ms), P})
               .as_int() == 1;
  }

  std::vector<JobRecord> recover(int max_attempts, int64_t now_ms, int64_t failed_expires_ms,
                                 std::vector<JobRecord>* failed) override {
    const RedisReply r = redis_->eval(recover_, {},
                                      {P, std::to_string(max_attempts), std::to_string(now_ms),
                                       std::to_string(failed_expires_ms)});
    if (r.elements.size() != 2) throw StoreError("redis job store: bad reply from recover");
    if (failed) {
      for (JobRecord& j : read_jobs(r.elements[0].elements)) failed->push_back(std::move(j));
    }
    std::vector<JobRecord> queued = read_jobs(r.elements[1].elements);
    std::sort(queued.begin(), queued.end(), [](const JobRecord& a, const JobRecord& b) {
      return std::tie(a.created_ms, a.id) < std::tie(b.created_ms, b.id);
    });
    return queued;
  }

  std::vector<int64_t> count_by_status() override {
    std::vector<RedisArgs> cmds;
    for (int s = 0; s < 5; ++s) cmds.push_back({"SCARD", status_key(JobStatus(s))});
    std::vector<int64_t> counts;
    for (const RedisReply& r : redis_->pipeline(cmds)) counts.push_back(r.as_int());
    return counts;
  }

  int64_t append_event(const std::string& job_id, const std::string& type, const std::string& data,
                       int64_t now_ms) override {
    const std::string encoded = json::array({type, data, now_ms}).dump();
    return redis_->eval(append_event_, {job_key(job_id), P + "events:" + job_id}, {encoded})
        .as_int();
  }

  std::vector<JobEvent> events_after(const std::string& job_id, int64_t after_seq) override {
    const RedisReply r = redis_->command(
        {"LRANGE", P + "events:" + job_id, std::to_string(std::max<int64_t>(0, after_seq)), "-1"});
    std::vector<JobEvent> out;
    int64_t seq = std::max<int64_t>(0, after_seq);
    for (const RedisReply& e : r.elements) {
      JobEvent ev;
      ev.seq = ++seq;
      try {
        const json a = json::parse(e.str);
        ev.type = a.at(0).get<std::string>();
        ev.data = a.at(1).get<std::string>();
        ev.ts_ms = a.at(2).get<int64_t>();
      } catch (const json::exception&) {
        throw StoreError("redis job store: a malformed event of job " + job_id);
      }
      out.push_back(std::move(ev));
    }
    return out;
  }

  int64_t add_delivery(const WebhookDelivery& d) override {
    return redis_
        ->eval(add_delivery_, {P + "delivery_seq", P + "deliveries_due", job_key(d.job_id)},
               {P, d.job_id, d.url, d.owner, d.payload, d.secret, std::to_string(d.attempts),
                d.state.empty() ? "pending" : d.state, std::to_string(d.next_attempt_ms),
                d.attempts_json.empty() ? "[]" : d.attempts_json})
        .as_int();
  }

  std::vector<WebhookDelivery> due_deliveries(int64_t now_ms, size_t limit) override {
    if (limit == 0) return {};
    const RedisReply r =
        redis_->command({"ZRANGEBYSCORE", P + "deliveries_due", "-inf", std::to_string(now_ms),
                         "LIMIT", "0", std::to_string(std::min<size_t>(limit, 100000))});
    std::vector<int64_t> ids;
    for (const RedisReply& m : r.elements) ids.push_back(m.as_int());
    return read_deliveries(ids);
  }

  std::vector<WebhookDelivery> deliveries_for(const std::string& job_id) override {
    const RedisReply r = redis_->command({"SMEMBERS", P + "job_deliveries:" + job_id});
    std::vector<int64_t> ids;
    for (const RedisReply& m : r.elements) ids.push_back(m.as_int());
    std::sort(ids.begin(), ids.end());
    return read_deliveries(ids);
  }

  bool lease_delivery(int64_t delivery_id, int64_t now_ms, int64_t until_ms) override {
    return redis_
               ->eval(lease_, {P + "deliveries_due"},
                      {due_member(delivery_id), std::to_string(now_ms), std::to_string(until_ms)})
               .as_int() == 1;
  }

  void record_attempt(int64_t delivery_id, int64_t at_ms, int status, const std::string& error,
                      const std::string& state, int64_t next_attempt_ms) override {
    if (state != "pending" && state != "delivered" && state != "failed")
      throw StoreError("redis job store: bad delivery state '" + state + "'");
    const json attempt = {{"at_ms", at_ms}, {"status", status}, {"error", error}};
    redis_->eval(record_attempt_,
                 {P + "delivery:" + std::to_string(delivery_id), P + "deliveries_due"},
                 {attempt.dump(), state, std::to_string(next_attempt_ms), due_member(delivery_id)});
  }

  std::optional<std::string> cache_get(const std::string& key, int64_t now_ms) override {
    RedisReply r = redis_->eval(cache_get_, {P + "cache:" + key, P + "cache_lru"},
                                {std::to_string(now_ms), key});
    if (r.is_nil()) return std::nullopt;
    return std::move(r.str);
  }

  void cache_put(const std::string& key, const std::string& value, int64_t now_ms, int64_t ttl_ms,
                 size_t max_entries) override {
    redis_->eval(cache_put_, {P + "cache:" + key, P + "cache_lru", P + "cache_exp"},
                 {key, value, std::to_string(now_ms), std::to_string(std::max<int64_t>(0, ttl_ms)),
                  std::to_string(std::min<size_t>(max_entries, size_t(1) << 50)), P});
  }

  std::optional<IdempotencyClaim> claim_idempotency_key(const std::string& owner,
                                                        const std::string& key,
                                                        const IdempotencyClaim& claim,
                                                        int64_t now_ms,
                                                        int64_t expires_ms) override {
    const int64_t ttl = expires_ms > 0 ? std::max<int64_t>(1, expires_ms - now_ms) : 0;
    const RedisReply r = redis_->eval(claim_, {idem_key(owner, key)},
                                      {claim.request_hash, claim.job_id, std::to_string(now_ms),
                                       std::to_string(expires_ms), std::to_string(ttl)});
    if (r.is_nil() || r.elements.size() != 2) return std::nullopt;
    return IdempotencyClaim{r.elements[0].str, r.elements[1].str};
  }

  void release_idempotency_key(const std::string& owner, const std::string& key,
                               const std::string& job_id) override {
    redis_->eval(release_, {idem_key(owner, key)}, {job_id});
  }

  size_t sweep(int64_t now_ms) override {
    // Batches keep each script short: Redis runs one script at a time for every node.
    size_t n = 0;
    for (int round = 0; round < 100; ++round) {
      const RedisReply r = redis_->eval(sweep_, {}, {P, std::to_string(now_ms), "200"});
      if (r.elements.size() != 2) throw StoreError("redis job store: bad reply from sweep");
      n += size_t(r.elements[0].as_int());
      if (r.elements[1].as_int() == 0) break;
    }
    return n;
  }

  bool writable() override {
    try {
      // A real write: fails with MISCONF when Redis cannot persist, or when it is unreachable.
      redis_->command({"INCR", P + "probes"});
      return true;
    } catch (const StoreError&) {
      return false;
    }
  }

 private:
  std::string job_key(const std::string& id) const { return P + "job:" + id; }
  std::string status_key(JobStatus s) const { return P + "status:" + job_status_name(s); }
  // The key is hashed: any bytes the client sent make a fixed-size, printable Redis key.
  std::string idem_key(const std::string& owner, const std::string& key) const {
    return P + "idem:" + owner + ":" + sha256_hex(key);
  }

  static std::vector<std::pair<std::string, std::string>> job_fields(const JobRecord& j) {
    return {{"id", j.id},
            {"owner", j.owner},
            {"status", job_status_name(j.status)},
            {"options_json", j.options_json},
            {"audio_url", j.audio_url},
            {"webhook_url", j.webhook_url},
            {"attempts", std::to_string(j.attempts)},
            {"result_json", j.result_json},
            {"error_code", j.error_code},
            {"error_message", j.error_message},
            {"created_ms", std::to_string(j.created_ms)},
            {"started_ms", std::to_string(j.started_ms)},
            {"finished_ms", std::to_string(j.finished_ms)},
            {"expires_ms", std::to_string(j.expires_ms)},
            {"cache_key", j.cache_key},
            {"webhook_secret", j.webhook_secret}};
  }

  static JobRecord read_job(const RedisReply& r) {
    const auto m = as_map(r);
    JobRecord j;
    j.id = str(m, "id");
    j.owner = str(m, "owner");
    const auto status = parse_job_status(str(m, "status"));
    if (!status) throw StoreError("redis job store: job " + j.id + " has an unknown status");
    j.status = *status;
    j.options_json = str(m, "options_json");
    j.audio_url = str(m, "audio_url");
    j.webhook_url = str(m, "webhook_url");
    j.attempts = int(i64(m, "attempts"));
    j.result_json = str(m, "result_json");
    j.error_code = str(m, "error_code");
    j.error_message = str(m, "error_message");
    j.created_ms = i64(m, "created_ms");
    j.started_ms = i64(m, "started_ms");
    j.finished_ms = i64(m, "finished_ms");
    j.expires_ms = i64(m, "expires_ms");
    j.cache_key = str(m, "cache_key");
    j.webhook_secret = str(m, "webhook_secret");
    return j;
  }

  // The jobs of these ids in one round trip, in order; ids swept meanwhile are left out.
  std::vector<JobRecord> read_jobs(const std::vector<RedisReply>& ids) {
    std::vector<RedisArgs> cmds;
    for (const RedisReply& id : ids) cmds.push_back({"HGETALL", job_key(id.str)});
    std::vector<JobRecord> out;
    if (cmds.empty()) return out;
    for (const RedisReply& r : redis_->pipeline(cmds))
      if (!r.elements.empty()) out.push_back(read_job(r));
    return out;
  }

  std::vector<WebhookDelivery> read_deliveries(const std::vector<int64_t>& ids) {
    std::vector<RedisArgs> cmds;
    for (int64_t id : ids) cmds.push_back({"HGETALL", P + "delivery:" + std::to_string(id)});
    std::vector<WebhookDelivery> out;
    if (cmds.empty()) return out;
    for (const RedisReply& r : redis_->pipeline(cmds)) {
      if (r.elements.empty()) continue;
      const auto m = as_map(r);
      WebhookDelivery d;
      d.id = i64(m, "id");
      d.job_id = str(m, "job_id");
      d.url = str(m, "url");
      d.owner = str(m, "owner");
      d.payload = str(m, "payload");
      d.secret = str(m, "secret");
      d.attempts = int(i64(m, "attempts"));
      d.state = str(m, "state");
      d.next_attempt_ms = i64(m, "next_attempt_ms");
      d.attempts_json = str(m, "attempts_json");
      out.push_back(std::move(d));
    }
    return out;
  }

  std::shared_ptr<RedisClient> redis_;
  const std::string P;  // the key prefix
  const RedisScript create_{lua::kCreateJob}, list_{lua::kListJobs},
      mark_running_{lua::kMarkRunning}, set_if_exists_{lua::kSetIfExists}, finish_{lua::kFinishJob},
      recover_{lua::kRecover}, append_event_{lua::kAppendEvent}, add_delivery_{lua::kAddDelivery},
      record_attempt_{lua::kRecordAttempt}, cache_get_{lua::kCacheGet}, cache_put_{lua::kCachePut},
      sweep_{lua::kSweep}, claim_{lua::kClaimKey}, release_{lua::kReleaseKey},
      requeue_{lua::kRequeue}, lease_{lua::kLeaseDelivery};
};

}  // namespace

std::unique_ptr<JobStore> open_redis_store(std::shared_ptr<RedisClient> client) {
  return std::make_unique<RedisStore>(std::move(client));
}

}  // namespace stepaudio::server
