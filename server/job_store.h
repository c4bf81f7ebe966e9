// The job store behind the service (DESIGN.md §7): jobs, their event log (SSE replay), the input
// audio of jobs not yet run, webhook deliveries and the result cache. The default is embedded
// SQLite (sqlite_store.cpp); a later issue adds Redis behind the same interface.
//
// Durability: every mutating call has committed (WAL, synchronous=FULL for job creation and state
// changes) when it returns, so a 202 sent after create_job() survives kill -9.
// Thread-safety: every method may be called from any thread concurrently (implementations
// serialize internally). Errors: StoreError (store unreachable, disk full, corrupt file).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace stepaudio::server {

class StoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class JobStatus { queued, running, succeeded, failed, canceled };
const char* job_status_name(JobStatus s);  // "queued", ...
std::optional<JobStatus> parse_job_status(const std::string& s);
inline bool is_terminal(JobStatus s) {
  return s == JobStatus::succeeded || s == JobStatus::failed || s == JobStatus::canceled;
}

// finish_job's precondition, for every store: throws std::invalid_argument for a non-terminal
// status (a caller bug, not a store failure).
void require_terminal(JobStatus s);

struct JobRecord {
  std::string id;     // "job_" + 24 lowercase hex (random)
  std::string owner;  // the API key's id ("" when auth is off)
  JobStatus status = JobStatus::queued;
  std::string options_json;  // the request's task options as JSON (task, target_length, ...)
  std::string audio_url;     // "" for an uploaded body (then the input blob holds the audio)
  std::string webhook_url;   // "" for none
  int attempts = 0;          // times the job was started (mark_running)
  std::string result_json;   // succeeded: the result JSON (DESIGN.md §6)
  std::string error_code, error_message;                    // failed / canceled
  int64_t created_ms = 0, started_ms = 0, finished_ms = 0;  // unix epoch milliseconds; 0 = not yet
  int64_t expires_ms = 0;      // retention end (0 = keep); the sweeper deletes the job after it
  std::string cache_key;       // hex SHA-256 once the audio was decoded ("" before)
  std::string webhook_secret;  // the submitter's webhook signing secret (never in job views)
};

struct JobEvent {
  int64_t seq = 0;   // 1, 2, 3, ... per job (the SSE id)
  std::string type;  // "queued", "running", "progress", "partial", "result", "error", "canceled"
  std::string data;  // JSON text
  int64_t ts_ms = 0;
};

struct WebhookDelivery {
  int64_t id = 0;
  std::string job_id, url, owner;
  std::string payload;  // the exact body that is signed and sent on every attempt
  std::string secret;   // the owner's webhook signing secret (hex), as of the job's submission
  int attempts = 0;     // attempts made so far
  std::string state;    // "pending" | "delivered" | "failed"
  int64_t next_attempt_ms = 0;
  // Each attempt as it happened: {"at_ms", "status" (HTTP status, 0 = no response), "error"}.
  std::string attempts_json = "[]";
};

// Idempotency-Key (docs/API.md): which job a caller's key was first used for, and a hash of that
// request (a reuse of the key for a different request is refused).
struct IdempotencyClaim {
  std::string request_hash, job_id;
};

class JobStore {
 public:
  virtual ~JobStore() = default;

  // Jobs. create_job stores the record and, for uploads, the input audio bytes (kept until
  // drop_input or the job's deletion). durable=false skips the fsync (still survives kill -9,
  // not a power cut): for a job created already finished, whose answer the caller has in hand.
  virtual void create_job(const JobRecord& job, const std::string& input_audio,
                          bool durable = true) = 0;
  virtual std::optional<JobRecord> get_job(const std::string& id) = 0;
  // The owner's jobs, newest first; `before_id` is the cursor of the previous page ("" = first).
  virtual std::vector<JobRecord> list_jobs(const std::string& owner, size_t limit,
                                           const std::string& before_id) = 0;
  virtual std::optional<std::string> load_input(const std::string& id) = 0;
  virtual void drop_input(const std::string& id) = 0;
  // queued -> running, attempts + 1, started_ms; false if the job is not queued (canceled, gone).
  virtual bool mark_running(const std::string& id, int64_t now_ms) = 0;
  virtual void set_cache_key(const std::string& id, const std::string& key) = 0;
  // running -> queued: the job's node died (its queue entry was reclaimed); false otherwise.
  virtual bool requeue(const std::string& id) = 0;
  // -> succeeded / failed / canceled with result or error; false if already terminal.
  // expires_ms: the retention end (0 = keep forever).
  virtual bool finish_job(const std::string& id, JobStatus status, const std::string& result_json,
                          const std::string& error_code, const std::string& error_message,
                          int64_t now_ms, int64_t expires_ms) = 0;
  // After a crash: every `running` job goes back to `queued` if attempts < max_attempts, else
  // to `failed` (error_code "interrupted", with the count in the message, expires_ms =
  // failed_expires_ms; appended to *failed when given). Returns every queued job (oldest first)
  // for the scheduler to enqueue again.
  virtual std::vector<JobRecord> recover(int max_attempts, int64_t now_ms,
                                         int64_t failed_expires_ms = 0,
                                         std::vector<JobRecord>* failed = nullptr) = 0;
  // Counts by status (for /metrics): index = int(JobStatus).
  virtual std::vector<int64_t> count_by_status() = 0;

  // Events (append-only per job; seq assigned here).
  virtual int64_t append_event(const std::string& job_id, const std::string& type,
                               const std::string& data, int64_t now_ms) = 0;
  virtual std::vector<JobEvent> events_after(const std::string& job_id, int64_t after_seq) = 0;

  // Webhooks.
  virtual int64_t add_delivery(const WebhookDelivery& d) = 0;
  virtual std::vector<WebhookDelivery> due_deliveries(int64_t now_ms, size_t limit) = 0;
  virtual std::vector<WebhookDelivery> deliveries_for(const std::string& job_id) = 0;
  // Takes a due delivery for one attempt: it is not due again before until_ms (or record_attempt),
  // so that of several nodes only one sends it. False when another node took it first.
  virtual bool lease_delivery(int64_t delivery_id, int64_t now_ms, int64_t until_ms) {
    (void)delivery_id, (void)now_ms, (void)until_ms;
    return true;  // one process per store: nobody to race with
  }
  // Appends an attempt and sets state / next_attempt_ms.
  virtual void record_attempt(int64_t delivery_id, int64_t at_ms, int status,
                              const std::string& error, const std::string& state,
                              int64_t next_attempt_ms) = 0;

  // Result cache: value is the result JSON. get() misses on expired entries.
  virtual std::optional<std::string> cache_get(const std::string& key, int64_t now_ms) = 0;
  // Inserts or replaces; then evicts the oldest entries beyond max_entries.
  virtual void cache_put(const std::string& key, const std::string& value, int64_t now_ms,
                         int64_t ttl_ms, size_t max_entries) = 0;

  // Idempotency keys, per owner. The first claim of (owner, key) stores `claim` and returns
  // nullopt; later ones get the stored claim back, until expires_ms passes (0 = never).
  virtual std::optional<IdempotencyClaim> claim_idempotency_key(const std::string& owner,
                                                                const std::string& key,
                                                                const IdempotencyClaim& claim,
                                                                int64_t now_ms,
                                                                int64_t expires_ms) = 0;
  // Drops the claim if it still names job_id (its submit failed before the job was stored).
  virtual void release_idempotency_key(const std::string& owner, const std::string& key,
                                       const std::string& job_id) = 0;

  // Retention: deletes jobs (with events, inputs, deliveries) whose expires_ms passed, expired
  // cache entries and expired idempotency keys. Returns the number of rows deleted (jobs + cache
  // entries; rows removed with their job, and idempotency keys, are not counted).
  virtual size_t sweep(int64_t now_ms) = 0;
  // Moves committed writes from the log into the main file (SQLite: a WAL checkpoint) off the
  // request path; called periodically by the sweeper. Errors are ignored (retried next time).
  virtual void checkpoint() {}
  // A write round trip (for /readyz): false when the store cannot commit.
  virtual bool writable() = 0;
};

// Opens (creating if needed) the SQLite database at `path` in WAL mode and migrates its schema.
// Throws StoreError naming the file when it cannot be opened or is not our database.
std::unique_ptr<JobStore> open_sqlite_store(const std::string& path);

}  // namespace stepaudio::server
