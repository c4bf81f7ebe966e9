// Jobs from admission to result: the bounded queue, durable creation (the store commits before the
// caller answers 202), fetching and decoding the audio, the result cache (DESIGN.md §7 key) with
// in-flight deduplication, running on the backend, events (stored for SSE replay and fanned out
// live), cancellation, crash recovery, webhooks and retention.
// Thread-safety: every public method may be called from any thread. submit() blocks (fetch,
// decode, a store commit): call it from a blocking pool, never from an I/O thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "auth.h"
#include "backend.h"
#include "cluster.h"
#include "http_client.h"
#include "job_store.h"
#include "metrics.h"

namespace stepaudio::server {

struct ServiceConfig {
  size_t max_queue = 64;  // jobs admitted and not yet finished, over all callers
  double max_audio_seconds = 4 * 3600.0;
  FetchLimits fetch;
  AddressPolicy url_policy;  // audio_url and webhook_url targets
  int max_attempts = 3;      // starts of one job across crashes
  int64_t cache_ttl_ms = 7 * 24 * 3600 * 1000LL;
  size_t cache_max_entries = 10000;
  int64_t retention_ms = 7 * 24 * 3600 * 1000LL;  // finished jobs are deleted after this
  // Privacy: cache entries live no longer than the retention (jobs, events and inputs are gone
  // by then anyway: inputs are dropped when a job finishes, the rest swept at retention).
  bool privacy = false;
  // Webhooks: attempts and backoff (exponential with equal jitter, capped).
  int webhook_max_attempts = 8;
  double webhook_base_delay_s = 1, webhook_max_delay_s = 300;
  FetchLimits webhook_fetch{1u << 20, 15, 5, 0};
  // With a shared queue (several nodes): jobs this node runs at once (its backend's --parallel).
  size_t dispatch_slots = 4;
};

// What a request asks for (stored with the job as options_json).
struct JobOptions {
  Task task = Task::transcribe_and_summarize;
  size_t target_length = 10;
  std::string language = "auto";
  bool cache = true;
  nlohmann::json to_json() const;
  static JobOptions from_json(const nlohmann::json& j);  // throws ApiError(400)
};

struct SubmitRequest {
  Caller caller;
  JobOptions options;
  std::string audio;  // the recording's bytes, or:
  std::string audio_url;
  std::string webhook_url;
  // Idempotency-Key: a retry with the same key (same caller, same request) gets the job of the
  // first submission back instead of a new one; "" = none.
  std::string idempotency_key;
};

using EventFn = std::function<void(const JobEvent&)>;

class JobManager {
 public:
  // queue and bus (cluster.h, both or neither): several nodes share the jobs. Without them this
  // node runs the jobs it admits, on its own backend.
  JobManager(const ServiceConfig& config, JobStore& store, InferenceBackend& backend,
             Metrics& metrics, JobQueue* queue = nullptr, EventBus* bus = nullptr);
  ~JobManager();

  // Admits, fetches, decodes, and stores the job durably; then it runs in the background. A cache
  // hit returns a job that already succeeded. Throws ApiError (429 queue full with Retry-After,
  // 4xx bad input, 503 not ready).
  JobRecord submit(const SubmitRequest& request);
  // Re-queues the jobs a crash interrupted (store().recover) and starts the background threads.
  void start();
  void stop();
  // From now on an engine error from a stop (canceled) leaves the job as it is in the store: it
  // runs again at the next start.
  void set_stopping() { shutting_down_ = true; }

  // The caller's job, or nullopt (also for another caller's job: ids are not secrets to share).
  std::optional<JobRecord> get(const std::string& id, const std::string& owner);
  // Requests cancellation; false when the job is unknown or already finished.
  bool cancel(const std::string& id, const std::string& owner);
  // The stored events after `after_seq`, whole (a "result" event with its result).
  std::vector<JobEvent> stored_events(const std::string& job_id, int64_t after_seq);
  // Live events of a job (after the call); returns a token for unsubscribe().
  uint64_t subscribe(const std::string& job_id, EventFn fn);
  void unsubscribe(const std::string& job_id, uint64_t token);

  // The public JSON of a job (docs/API.md "Job").
  nlohmann::json job_view(const JobRecord& job);
  size_t pending() const { return pending_; }
  // Jobs waiting or running on all nodes; nullopt without a shared queue or when unreachable.
  std::optional<size_t> shared_queue_depth();
  JobStore& store() { return store_; }
  InferenceBackend& backend() { return backend_; }
  const ServiceConfig& config() const { return config_; }

 private:
  struct PcmDigest {
    std::string hash;  // SHA-256 of the decoded samples and their rate
    double seconds = 0;
  };
  // Decodes (validating the recording) and hashes the PCM; throws ApiError for bad audio.
  PcmDigest pcm_digest(const std::string& audio);
  // Stores the event (seq) and passes it to the live subscribers. A "result" event is stored
  // without its payload (the job row holds the result): stored_event() puts it back.
  void emit(const std::string& job_id, const std::string& type, const nlohmann::json& data);
  void run_job(const JobRecord& job, std::string audio, const std::string& cache_key);
  // The job an Idempotency-Key was first used for, or nullopt after claiming the key for `job`.
  // Throws ApiError 409 when the key came with a different request.
  std::optional<JobRecord> claim_idempotency(const SubmitRequest& r, const JobRecord& job);
  void finish(const std::string& job_id, JobStatus status, const std::string& result,
              const std::string& code, const std::string& message);
  // After a job became terminal in the store: events, metrics, webhook, the admission slot.
  void announce(const std::string& id, JobStatus status, const std::string& result,
                const std::string& code, const std::string& message);
  void finish_group(const std::string& key, const std::string& result, const Error* error);
  // The store failed while the job ran or finished: forget it here, leave it as stored (it runs
  // again after a restart, or when another node takes its queue entry over).
  void abandon_group(const std::string& key);
  void abandon(const std::string& id);
  // Passes an event to this node's subscribers of the job.
  void deliver_local(const std::string& job_id, const JobEvent& e);
  // Shared queue (job_dispatch.cpp): pulls jobs while this node has room, heartbeats the ones
  // it runs, takes over those of dead nodes; and passes on other nodes' events and cancels.
  void dispatch_loop();
  void start_entry(const QueueEntry& entry);
  bool shares_inference(const JobRecord& job) const;  // may wait for another job's answer
  // Jobs waiting for another node's inference: its answer from the cache, or the claim when the
  // other one failed or died.
  void check_waiting(const std::vector<QueueEntry>& held);
  void release_entry(const std::string& job_id);  // the job ended here: its slot, its entry
  void bus_loop();
  void cancel_local(const std::string& job_id);  // a cancel from another node
  void add_webhook(const std::string& job_id);
  void webhook_loop();
  void sweep_loop();
  int64_t now_ms() const;

  ServiceConfig config_;
  JobStore& store_;
  InferenceBackend& backend_;
  Metrics& metrics_;
  JobQueue* queue_;
  EventBus* bus_;
  std::atomic<size_t> pending_{0};
  std::atomic<bool> shutting_down_{false};

  std::mutex mu_;
  // cache key -> the job running the inference and the jobs waiting for the same answer.
  struct Group {
    std::string leader;
    std::vector<std::string> followers;
    std::shared_ptr<InferenceTask> task;
  };
  std::map<std::string, Group> groups_;
  // Removes the group of `key` and returns it (nullopt when there is none). Takes mu_.
  std::optional<Group> take_group(const std::string& key);
  std::map<std::string, std::string> job_group_;  // job id -> cache key, while unfinished
  std::map<std::string, double> fetch_ms_;        // job id -> audio_url fetch time
  std::map<std::string, PcmDigest> pcm_digests_;  // SHA-256 of uploaded bytes -> digest
  std::map<std::string, std::map<uint64_t, EventFn>> subscribers_;
  std::map<std::string, QueueEntry> inflight_;  // shared queue: job id -> entry, run here
  uint64_t next_token_ = 1;

  std::mutex bg_mu_;
  std::condition_variable bg_cv_;
  bool stopping_ = false;
  std::thread webhook_thread_, sweep_thread_, dispatch_thread_, bus_thread_;
};

}  // namespace stepaudio::server
