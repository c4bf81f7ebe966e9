// The embedded SQLite job store (job_store.h, DESIGN.md §7): one connection serialized by a mutex
// (the service writes a few rows per job, far below what one connection commits per second).
#include <algorithm>
#include <cstdint>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "job_store.h"
#include "sqlite_db.h"
#include "sqlite_schema.h"

namespace stepaudio::server {
namespace {

using sqlite::BlobRef;
using sqlite::Db;
using sqlite::Stmt;
using sqlite::Txn;

using sqlite_schema::kApplicationId;
using sqlite_schema::kSchemaV1;
using sqlite_schema::kSchemaV2;
using sqlite_schema::kSchemaVersion;

// The JobRecord columns, in the order read_job() reads them.
const std::string kJobColumns =
    "id, owner, status, options_json, audio_url, webhook_url, attempts, result_json, error_code, "
    "error_message, created_ms, started_ms, finished_ms, expires_ms, cache_key, "
    "webhook_secret";
const std::string kDeliveryColumns =
    "id, job_id, url, owner, payload, secret, attempts, state, next_attempt_ms, attempts_json";

// WAL length (pages) past which checkpoint() makes sure the WAL gets rewound: SQLite's own
// autocheckpoint default, ~4 MB.
constexpr int kRewindFrames = 1000;

// SQLite's LIMIT is a signed 64-bit integer.
int64_t sql_limit(size_t n) {
  return static_cast<int64_t>(
      std::min<uint64_t>(n, static_cast<uint64_t>(std::numeric_limits<int64_t>::max())));
}

// Writes whose loss on a power cut harms nobody (event log lines, cache rows, dropped inputs) skip
// the per-commit fsync: synchronous=NORMAL in WAL mode still survives kill -9 (the WAL is in the
// OS cache, and the next process reads it); they reach the disk with the next FULL commit or
// checkpoint. A streamed transcript writes one event per token, so this is most of the writes.
class Relaxed {
 public:
  explicit Relaxed(Db& db) : db_(db) { db_.exec("PRAGMA synchronous = NORMAL"); }
  ~Relaxed() {
    try {
      db_.exec("PRAGMA synchronous = FULL");
    } catch (...) {
    }
  }

 private:
  Db& db_;
};

class SqliteStore final : public JobStore {
 public:
  explicit SqliteStore(const std::string& path) : db_(path) {
    // Another process (a second server, the sqlite3 shell) may hold the write lock briefly.
    sqlite3_busy_timeout(db_.raw(), 5000);
    // WAL: readers never block the writer, and a commit is one sequential append to the -wal file.
    // The first statement to read the file: a file that is not a database fails here.
    db_.exec("PRAGMA journal_mode = WAL");
    // FULL fsyncs the WAL on every commit, so a job acknowledged with 202 survives power loss, not
    // just kill -9. NORMAL in WAL mode fsyncs only at checkpoints: still consistent after a crash,
    // but the last commits before a power cut can roll back. FULL costs one fsync per commit (a
    // few ms on SSDs, more on network disks), which the service's low write rate affords.
    db_.exec("PRAGMA synchronous = FULL");
    // Off by default in SQLite and per connection: without it ON DELETE CASCADE does nothing.
    db_.exec("PRAGMA foreign_keys = ON");
    // Checkpoints (copying the WAL back into the database: two fsyncs) would otherwise run inside
    // whichever commit crosses 1000 pages, i.e. inside a request. checkpoint() runs them from
    // the sweeper on a second connection instead; this limit is only a backstop.
    db_.exec("PRAGMA wal_autocheckpoint = 20000");
    migrate();
  }

  void create_job(const JobRecord& job, const std::string& input_audio, bool durable) override {
    std::lock_guard lock(mu_);
    std::optional<Relaxed> relaxed;
    if (!durable) relaxed.emplace(db_);
    Txn txn(db_);  // the job and its input together, or neither
    db_.prepare("INSERT INTO jobs (" + kJobColumns +
                ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .bind(job.id, job.owner, job_status_name(job.status), job.options_json, job.audio_url,
              job.webhook_url, job.attempts, job.result_json, job.error_code, job.error_message,
              job.created_ms, job.started_ms, job.finished_ms, job.expires_ms, job.cache_key,
              job.webhook_secret)
        .run();
    // An upload (no audio_url) always gets its input row, even if empty, so that load_input()
    // tells "no bytes" from "dropped"; a URL job gets one only when bytes were given.
    if (job.audio_url.empty() || !input_audio.empty()) {
      db_.prepare("INSERT INTO job_inputs (job_id, audio) VALUES (?, ?)")
          .bind(job.id, BlobRef{input_audio})
          .run();
    }
    txn.commit();
  }

  std::optional<JobRecord> get_job(const std::string& id) override {
    std::lock_guard lock(mu_);
    Stmt s = db_.prepare("SELECT " + kJobColumns + " FROM jobs WHERE id = ?");
    s.bind(id);
    if (!s.step()) return std::nullopt;
    return read_job(s);
  }

  std::vector<JobRecord> list_jobs(const std::string& owner, size_t limit,
                                   const std::string& before_id) override {
    std::lock_guard lock(mu_);
    std::vector<JobRecord> out;
    if (limit == 0) return out;
    if (before_id.empty()) {
      Stmt s = db_.prepare("SELECT " + kJobColumns +
                           " FROM jobs WHERE owner = ? ORDER BY created_ms DESC, id DESC LIMIT ?");
      s.bind(owner, sql_limit(limit));
      while (s.step()) out.push_back(read_job(s));
      return out;
    }
    // The cursor is the last id of the previous page; a cursor that is unknown (or another
    // owner's job, or deleted since) yields an empty page rather than restarting from the top.
    int64_t cursor_ms;
    {
      Stmt c = db_.prepare("SELECT created_ms FROM jobs WHERE id = ? AND owner = ?");
      c.bind(before_id, owner);
      if (!c.step()) return out;
      cursor_ms = c.i64(0);
    }
    Stmt s = db_.prepare("SELECT " + kJobColumns +
                         " FROM jobs WHERE owner = ? AND (created_ms < ? OR (created_ms = ? AND "
                         "id < ?)) ORDER BY created_ms DESC, id DESC LIMIT ?");
    s.bind(owner, cursor_ms, cursor_ms, before_id, sql_limit(limit));
    while (s.step()) out.push_back(read_job(s));
    return out;
  }

  std::optional<std::string> load_input(const std::string& id) override {
    std::lock_guard lock(mu_);
    Stmt s = db_.prepare("SELECT audio FROM job_inputs WHERE job_id = ?");
    s.bind(id);
    if (!s.step()) return std::nullopt;
    return s.blob(0);
  }

  void drop_input(const std::string& id) override {
    std::lock_guard lock(mu_);
    Relaxed relaxed(db_);
    db_.prepare("DELETE FROM job_inputs WHERE job_id = ?").bind(id).run();
  }

  bool mark_running(const std::string& id, int64_t now_ms) override {
    std::lock_guard lock(mu_);
    // The WHERE clause is the state check: a job canceled meanwhile is not started.
    db_.prepare(
           "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_ms = ? "
           "WHERE id = ? AND status = 'queued'")
        .bind(now_ms, id)
        .run();
    return db_.changes() == 1;
  }

  bool requeue(const std::string& id) override {
    std::lock_guard lock(mu_);
    db_.prepare("UPDATE jobs SET status = 'queued' WHERE id = ? AND status = 'running'")
        .bind(id)
        .run();
    return db_.changes() == 1;
  }

  void set_cache_key(const std::string& id, const std::string& key) override {
    std::lock_guard lock(mu_);
    Relaxed relaxed(db_);
    db_.prepare("UPDATE jobs SET cache_key = ? WHERE id = ?").bind(key, id).run();
  }

  bool finish_job(const std::string& id, JobStatus status, const std::string& result_json,
                  const std::string& error_code, const std::string& error_message, int64_t now_ms,
                  int64_t expires_ms) override {
    require_terminal(status);
    std::lock_guard lock(mu_);
    // Only from queued/running: the first of a cancel and a completion wins; the other sees false.
    db_.prepare(
           "UPDATE jobs SET status = ?, result_json = ?, error_code = ?, error_message = ?, "
           "finished_ms = ?, expires_ms = ? WHERE id = ? AND status IN ('queued', 'running')")
        .bind(job_status_name(status), result_json, error_code, error_message, now_ms, expires_ms,
              id)
        .run();
    return db_.changes() == 1;
  }

  std::vector<JobRecord> recover(int max_attempts, int64_t now_ms, int64_t failed_expires_ms,
                                 std::vector<JobRecord>* failed) override {
    std::lock_guard lock(mu_);
    Txn txn(db_);
    std::vector<std::string> giving_up;
    {
      Stmt s = db_.prepare("SELECT id FROM jobs WHERE status = 'running' AND attempts >= ?");
      s.bind(max_attempts);
      while (s.step()) giving_up.push_back(s.text(0));
    }
    // A job still `running` was cut off by a crash. Retry it unless it has used up its attempts:
    // a job that crashes the server every time must not crash it forever.
    db_.prepare("UPDATE jobs SET status = 'queued' WHERE status = 'running' AND attempts < ?")
        .bind(max_attempts)
        .run();
    db_.prepare(
           "UPDATE jobs SET status = 'failed', error_code = 'interrupted', error_message = "
           "'interrupted ' || attempts || CASE attempts WHEN 1 THEN ' time' ELSE ' times' END || "
           "' (the server stopped while it ran); giving up', finished_ms = ?, expires_ms = ? "
           "WHERE status = 'running'")
        .bind(now_ms, failed_expires_ms)
        .run();
    if (failed) {
      for (const std::string& id : giving_up) {
        Stmt s = db_.prepare("SELECT " + kJobColumns + " FROM jobs WHERE id = ?");
        s.bind(id);
        if (s.step()) failed->push_back(read_job(s));
      }
    }
    std::vector<JobRecord> queued;
    {
      Stmt s = db_.prepare("SELECT " + kJobColumns +
                           " FROM jobs WHERE status = 'queued' ORDER BY created_ms, id");
      while (s.step()) queued.push_back(read_job(s));
    }
    txn.commit();
    return queued;
  }

  std::vector<int64_t> count_by_status() override {
    std::lock_guard lock(mu_);
    std::vector<int64_t> counts(5, 0);
    Stmt s = db_.prepare("SELECT status, count(*) FROM jobs GROUP BY status");
    while (s.step()) counts[static_cast<size_t>(status_of(s.text(0)))] = s.i64(1);
    return counts;
  }

  int64_t append_event(const std::string& job_id, const std::string& type, const std::string& data,
                       int64_t now_ms) override {
    std::lock_guard lock(mu_);
    Relaxed relaxed(db_);
    // Read max(seq) and insert under one write lock, so no two events of a job share a seq even
    // with a second process writing the same file.
    Txn txn(db_);
    int64_t seq;
    {
      Stmt s = db_.prepare("SELECT coalesce(max(seq), 0) + 1 FROM events WHERE job_id = ?");
      s.bind(job_id);
      s.step();
      seq = s.i64(0);
    }
    db_.prepare("INSERT INTO events (job_id, seq, type, data, ts_ms) VALUES (?, ?, ?, ?, ?)")
        .bind(job_id, seq, type, data, now_ms)
        .run();
    txn.commit();
    return seq;
  }

  std::vector<JobEvent> events_after(const std::string& job_id, int64_t after_seq) override {
    std::lock_guard lock(mu_);
    std::vector<JobEvent> out;
    Stmt s = db_.prepare(
        "SELECT seq, type, data, ts_ms FROM events WHERE job_id = ? AND seq > ? ORDER BY seq");
    s.bind(job_id, after_seq);
    while (s.step()) out.push_back(JobEvent{s.i64(0), s.text(1), s.text(2), s.i64(3)});
    return out;
  }

  int64_t add_delivery(const WebhookDelivery& d) override {
    std::lock_guard lock(mu_);
    // d.id is ignored: the table assigns it. A delivery without a state is a new one.
    db_.prepare(
           "INSERT INTO deliveries (job_id, url, owner, payload, secret, attempts, state, "
           "next_attempt_ms, attempts_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .bind(d.job_id, d.url, d.owner, d.payload, d.secret, d.attempts,
              d.state.empty() ? std::string("pending") : d.state, d.next_attempt_ms,
              d.attempts_json.empty() ? std::string("[]") : d.attempts_json)
        .run();
    return db_.last_insert_rowid();
  }

  std::vector<WebhookDelivery> due_deliveries(int64_t now_ms, size_t limit) override {
    std::lock_guard lock(mu_);
    std::vector<WebhookDelivery> out;
    if (limit == 0) return out;
    Stmt s = db_.prepare("SELECT " + kDeliveryColumns +
                         " FROM deliveries WHERE state = 'pending' AND next_attempt_ms <= ? "
                         "ORDER BY next_attempt_ms, id LIMIT ?");
    s.bind(now_ms, sql_limit(limit));
    while (s.step()) out.push_back(read_delivery(s));
    return out;
  }

  std::vector<WebhookDelivery> deliveries_for(const std::string& job_id) override {
    std::lock_guard lock(mu_);
    std::vector<WebhookDelivery> out;
    Stmt s =
        db_.prepare("SELECT " + kDeliveryColumns + " FROM deliveries WHERE job_id = ? ORDER BY id");
    s.bind(job_id);
    while (s.step()) out.push_back(read_delivery(s));
    return out;
  }

  void record_attempt(int64_t delivery_id, int64_t at_ms, int status, const std::string& error,
                      const std::string& state, int64_t next_attempt_ms) override {
    std::lock_guard lock(mu_);
    // SQLite's JSON functions append to the array in place ('$[#]' = one past the end), keeping
    // the read-modify-write inside one statement. A delivery deleted meanwhile (its job swept
    // while the request was in flight) matches no row; that is not an error.
    db_.prepare(
           "UPDATE deliveries SET attempts = attempts + 1, state = ?, next_attempt_ms = ?, "
           "attempts_json = json_insert(attempts_json, '$[#]', "
           "json_object('at_ms', ?, 'status', ?, 'error', ?)) WHERE id = ?")
        .bind(state, next_attempt_ms, at_ms, status, error, delivery_id)
        .run();
  }

  std::optional<std::string> cache_get(const std::string& key, int64_t now_ms) override {
    std::lock_guard lock(mu_);
    Relaxed relaxed(db_);
    Txn txn(db_);  // the read and the LRU touch see the same row
    std::optional<std::string> value;
    {
      Stmt s = db_.prepare(
          "SELECT value FROM cache WHERE key = ? AND (expires_ms = 0 OR expires_ms > ?)");
      s.bind(key, now_ms);
      if (!s.step()) return std::nullopt;
      value = s.text(0);
    }
    db_.prepare("UPDATE cache SET last_used_ms = ? WHERE key = ?").bind(now_ms, key).run();
    txn.commit();
    return value;
  }

  void cache_put(const std::string& key, const std::string& value, int64_t now_ms, int64_t ttl_ms,
                 size_t max_entries) override {
    std::lock_guard lock(mu_);
    Relaxed relaxed(db_);
    Txn txn(db_);
    db_.prepare(
           "INSERT INTO cache (key, value, created_ms, expires_ms, last_used_ms) "
           "VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
           "created_ms = excluded.created_ms, expires_ms = excluded.expires_ms, "
           "last_used_ms = excluded.last_used_ms")
        .bind(key, value, now_ms, ttl_ms > 0 ? now_ms + ttl_ms : 0, now_ms)
        .run();
    db_.prepare("DELETE FROM cache WHERE expires_ms > 0 AND expires_ms <= ?").bind(now_ms).run();
    // Least recently used beyond max_entries; the entry just put ranks first so that a clock
    // step back never evicts it in favour of older entries (max_entries 0 keeps nothing).
    db_.prepare(
           "DELETE FROM cache WHERE key IN (SELECT key FROM cache "
           "ORDER BY key = ? DESC, last_used_ms DESC, rowid DESC LIMIT -1 OFFSET ?)")
        .bind(key, sql_limit(max_entries))
        .run();
    txn.commit();
  }

  std::optional<IdempotencyClaim> claim_idempotency_key(const std::string& owner,
                                                        const std::string& key,
                                                        const IdempotencyClaim& claim,
                                                        int64_t now_ms,
                                                        int64_t expires_ms) override {
    std::lock_guard lock(mu_);
    Txn txn(db_);  // the look-up and the claim under one write lock: one claimer wins
    {
      Stmt s = db_.prepare(
          "SELECT request_hash, job_id FROM idempotency_keys WHERE owner = ? AND key = ? AND "
          "(expires_ms = 0 OR expires_ms > ?)");
      s.bind(owner, key, now_ms);
      if (s.step()) return IdempotencyClaim{s.text(0), s.text(1)};
    }
    db_.prepare(
           "INSERT OR REPLACE INTO idempotency_keys (owner, key, request_hash, job_id, "
           "expires_ms) VALUES (?, ?, ?, ?, ?)")
        .bind(owner, key, claim.request_hash, claim.job_id, expires_ms)
        .run();
    txn.commit();
    return std::nullopt;
  }

  void release_idempotency_key(const std::string& owner, const std::string& key,
                               const std::string& job_id) override {
    std::lock_guard lock(mu_);
    db_.prepare("DELETE FROM idempotency_keys WHERE owner = ? AND key = ? AND job_id = ?")
        .bind(owner, key, job_id)
        .run();
  }

  void checkpoint() override {
    // A second connection: a PASSIVE checkpoint copies what no reader needs without taking the
    // write lock, so requests on the main connection go on meanwhile; this pass pays the big
    // fsyncs (up to a second of commits).
    std::lock_guard lock(checkpoint_mu_);
    if (!checkpointer_) {
      auto db = std::make_unique<Db>(db_.path());
      // A connection learns that the file is in WAL mode only when it first reads it; until then
      // sqlite3_wal_checkpoint_v2 does nothing and still returns SQLITE_OK.
      db->exec("PRAGMA journal_mode = WAL");
      checkpointer_ = std::move(db);
    }
    int frames = 0, copied = 0;
    sqlite3_wal_checkpoint_v2(checkpointer_->raw(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &frames,
                              &copied);
    // SQLite rewinds the WAL only when a commit finds it wholly copied. Under steady writes (a
    // busy cache commits every millisecond) the pass above never catches up, so the WAL would
    // grow to the autocheckpoint backstop, whose checkpoint (80 MB, two fsyncs: 0.2 s here) then
    // runs inside a request. Once the WAL is past SQLite's usual 1000 pages, a second pass with
    // this store's writers held off copies only what came in during the first, and the next
    // commit rewinds the WAL.
    if (frames >= kRewindFrames && copied < frames) {
      std::lock_guard writers(mu_);
      sqlite3_wal_checkpoint_v2(checkpointer_->raw(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr,
                                nullptr);
    }
  }

  size_t sweep(int64_t now_ms) override {
    std::lock_guard lock(mu_);
    Relaxed relaxed(db_);
    Txn txn(db_);
    // Inputs, events and deliveries go with their job (ON DELETE CASCADE); changes() counts the
    // job rows only.
    db_.prepare("DELETE FROM jobs WHERE expires_ms > 0 AND expires_ms <= ?").bind(now_ms).run();
    int64_t n = db_.changes();
    db_.prepare("DELETE FROM cache WHERE expires_ms > 0 AND expires_ms <= ?").bind(now_ms).run();
    n += db_.changes();
    db_.prepare("DELETE FROM idempotency_keys WHERE expires_ms > 0 AND expires_ms <= ?")
        .bind(now_ms)
        .run();
    txn.commit();
    return static_cast<size_t>(n);
  }

  bool writable() override {
    try {
      std::lock_guard lock(mu_);
      Txn txn(db_);
      db_.prepare("UPDATE meta SET probes = probes + 1 WHERE id = 1").run();
      if (db_.changes() != 1) return false;
      txn.commit();
      return true;
    } catch (...) {  // disk full, read-only file, lock held too long, ...: not ready
      return false;
    }
  }

 private:
  int64_t pragma(const std::string& name) {
    Stmt s = db_.prepare("PRAGMA " + name);
    return s.step() ? s.i64(0) : 0;
  }

  // Creates the schema in a new file, upgrades an older one, refuses a newer one or a foreign one.
  void migrate() {
    int64_t version = pragma("user_version");
    if (version > kSchemaVersion) {
      throw StoreError("job store " + db_.path() + ": schema version " + std::to_string(version) +
                       " is newer than this server supports (" + std::to_string(kSchemaVersion) +
                       ")");
    }
    if (version < kSchemaVersion) {
      Txn txn(db_);
      // Read again under the write lock: another process may have migrated meanwhile.
      version = pragma("user_version");
      if (version == 0) {
        Stmt s = db_.prepare("SELECT count(*) FROM sqlite_master");
        s.step();
        if (s.i64(0) != 0) {
          throw StoreError("job store " + db_.path() +
                           ": not a stepaudio job store (a database with other tables)");
        }
      }
      if (version > 0 && pragma("application_id") != kApplicationId) {
        throw StoreError("job store " + db_.path() +
                         ": not a stepaudio job store (unknown application_id)");
      }
      if (version == 0) {
        db_.exec(kSchemaV1);
        db_.exec("PRAGMA application_id = " + std::to_string(kApplicationId));
      }
      if (version < 2) db_.exec(kSchemaV2);
      // Future versions: if (version < 3) { ALTER TABLE ...; } and so on.
      // PRAGMA user_version writes the header page and so commits (or rolls back) with the rest.
      db_.exec("PRAGMA user_version = " + std::to_string(kSchemaVersion));
      txn.commit();
    }
    if (pragma("application_id") != kApplicationId) {
      throw StoreError("job store " + db_.path() +
                       ": not a stepaudio job store (unknown application_id)");
    }
  }

  JobStatus status_of(const std::string& name) const {
    if (auto s = parse_job_status(name)) return *s;
    throw StoreError("job store " + db_.path() + ": unknown job status '" + name + "'");
  }

  JobRecord read_job(const Stmt& s) const {
    JobRecord j;
    j.id = s.text(0);
    j.owner = s.text(1);
    j.status = status_of(s.text(2));
    j.options_json = s.text(3);
    j.audio_url = s.text(4);
    j.webhook_url = s.text(5);
    j.attempts = static_cast<int>(s.i64(6));
    j.result_json = s.text(7);
    j.error_code = s.text(8);
    j.error_message = s.text(9);
    j.created_ms = s.i64(10);
    j.started_ms = s.i64(11);
    j.finished_ms = s.i64(12);
    j.expires_ms = s.i64(13);
    j.cache_key = s.text(14);
    j.webhook_secret = s.text(15);
    return j;
  }

  static WebhookDelivery read_delivery(const Stmt& s) {
    WebhookDelivery d;
    d.id = s.i64(0);
    d.job_id = s.text(1);
    d.url = s.text(2);
    d.owner = s.text(3);
    d.payload = s.text(4);
    d.secret = s.text(5);
    d.attempts = static_cast<int>(s.i64(6));
    d.state = s.text(7);
    d.next_attempt_ms = s.i64(8);
    d.attempts_json = s.text(9);
    return d;
  }

  std::mutex checkpoint_mu_;
  std::unique_ptr<Db> checkpointer_;  // checkpoint()'s own connection, opened on first use
  std::mutex mu_;                     // one connection, one caller at a time
  Db db_;
};

}  // namespace

std::unique_ptr<JobStore> open_sqlite_store(const std::string& path) {
  return std::make_unique<SqliteStore>(path);
}

}  // namespace stepaudio::server
