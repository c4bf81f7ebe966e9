// What several nodes of one service share besides the job store (docs/REDIS.md): the queue of
// jobs waiting for a node, and a bus that carries job events and cancellations to every node.
// A single node (the SQLite store) has neither: JobManager runs its jobs on its own backend as
// they come, as before. Implementations: redis_cluster.cpp (Redis Streams).
// Thread-safety: every method may be called from any thread, except pull() and read(), which one
// thread (the JobManager's dispatcher, resp. its bus reader) calls.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "job_store.h"
#include "redis_client.h"

namespace stepaudio::server {

struct QueueEntry {
  std::string entry_id;  // the queue's id of this delivery
  std::string job_id;
  bool reclaimed = false;  // taken over from a node that stopped heartbeating
  // In-flight deduplication across nodes (claim_inference): the cache key this job's inference
  // holds, or the one whose answer it waits for (at most one is set).
  std::string leads, waits_for;
};

// A durable, acknowledged queue of job ids shared by the nodes. An entry pulled by a node stays
// its own while the node heartbeats it; one not heartbeaten for the visibility timeout goes to
// another node (reclaimed). Errors: StoreError.
class JobQueue {
 public:
  virtual ~JobQueue() = default;
  virtual void push(const std::string& job_id) = 0;
  // Up to `max` entries for this node: reclaimed ones first, else new ones, waiting up to
  // wait_ms for one. Empty when there is none.
  virtual std::vector<QueueEntry> pull(size_t max, int wait_ms) = 0;
  // The job is terminal (or given up): the entry is done for good.
  virtual void ack(const QueueEntry& entry) = 0;
  // Keeps these entries (this node runs their jobs) from being reclaimed, and the inference
  // claims of those that lead one from expiring.
  virtual void heartbeat(const std::vector<QueueEntry>& entries) = 0;
  // In-flight deduplication across nodes: the first job to claim a cache key runs the inference;
  // jobs with the same key wait for its answer in the result cache. True when the claim is (now)
  // this job's. A claim not heartbeaten for the visibility timeout expires (its node died).
  virtual bool claim_inference(const std::string& cache_key, const std::string& job_id) = 0;
  virtual void release_inference(const std::string& cache_key, const std::string& job_id) = 0;
  // Queues again the queued jobs created before created_before_ms that have no entry (a submit
  // whose push failed, or whose store write Redis ran after the node gave up on it). -> count.
  virtual size_t requeue_orphans(int64_t created_before_ms) = 0;
  // Entries waiting or running on any node (admission: --max-queue).
  virtual size_t depth() = 0;
  virtual int visibility_timeout_ms() const = 0;
};

// Job events and cancellations, seen by every node. A node passes on what other nodes publish
// (its own messages are skipped: it delivered them itself).
class EventBus {
 public:
  virtual ~EventBus() = default;
  virtual void publish_event(const std::string& job_id, const JobEvent& e) = 0;
  virtual void publish_cancel(const std::string& job_id) = 0;
  // Waits up to wait_ms for messages of other nodes and passes them on. StoreError when the bus
  // is unreachable (the caller waits a little and reads again: nothing is lost meanwhile).
  virtual void read(int wait_ms,
                    const std::function<void(const std::string&, const JobEvent&)>& on_event,
                    const std::function<void(const std::string&)>& on_cancel) = 0;
};

// `node` names this process in the queue (its consumer) and on the bus: unique per process.
std::unique_ptr<JobQueue> make_redis_queue(std::shared_ptr<RedisClient> client,
                                           const std::string& node, int visibility_timeout_ms);
std::unique_ptr<EventBus> make_redis_bus(std::shared_ptr<RedisClient> client,
                                         const std::string& node);

}  // namespace stepaudio::server
