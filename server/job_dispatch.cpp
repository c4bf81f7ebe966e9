// The JobManager's side of several nodes (job_manager.h, cluster.h, docs/REDIS.md): a dispatcher
// that pulls jobs from the shared queue while this node's backend has room, heartbeats the
// entries it runs and takes over those of dead nodes; and a bus reader that passes other nodes'
// events to this node's listeners and their cancels to this node's running jobs.
#include <chrono>

#include "job_manager.h"
#include "json_log.h"

namespace stepaudio::server {

using nlohmann::json;

std::optional<size_t> JobManager::shared_queue_depth() {
  if (!queue_) return std::nullopt;
  try {
    return queue_->depth();
  } catch (const StoreError&) {
    return std::nullopt;
  }
}

void JobManager::dispatch_loop() {
  using clock = std::chrono::steady_clock;
  const auto beat_every =
      std::chrono::milliseconds(std::max(100, queue_->visibility_timeout_ms() / 3));
  auto last_beat = clock::now();
  auto next_orphan_check = clock::now();
  bool failing = false;
  for (;;) {
    {
      std::unique_lock lock(bg_mu_);
      if (stopping_) return;
    }
    try {
      std::vector<QueueEntry> held;
      size_t running = 0;  // jobs that hold a slot: not those waiting for another's answer
      {
        std::lock_guard lock(mu_);
        for (const auto& [id, e] : inflight_) {
          held.push_back(e);
          if (e.waits_for.empty()) ++running;
        }
      }
      if (clock::now() - last_beat >= beat_every) {
        queue_->heartbeat(held);
        last_beat = clock::now();
      }
      if (clock::now() >= next_orphan_check) {
        // Older than a visibility timeout: a submit in progress has pushed its job long since.
        const size_t n = queue_->requeue_orphans(now_ms() - queue_->visibility_timeout_ms());
        if (n) log_json("warn", "orphans_requeued", {{"jobs", n}});
        next_orphan_check = clock::now() + 3 * beat_every;
      }
      check_waiting(held);
      if (shutting_down_ || running >= config_.dispatch_slots) {
        std::unique_lock lock(bg_mu_);
        bg_cv_.wait_for(lock, std::chrono::milliseconds(100));
        continue;
      }
      // Short waits: the loop also heartbeats, and notices a stop within one.
      const auto entries = queue_->pull(config_.dispatch_slots - running, 300);
      if (failing) log_json("info", "queue_reachable");
      failing = false;
      for (const QueueEntry& e : entries) {
        if (shutting_down_) break;  // left pending: another node takes them over
        start_entry(e);
      }
    } catch (const StoreError& e) {
      if (!failing) log_json("warn", "queue_unreachable", {{"error", e.what()}});
      failing = true;
      std::unique_lock lock(bg_mu_);
      bg_cv_.wait_for(lock, std::chrono::milliseconds(500));
    }
  }
}

void JobManager::start_entry(const QueueEntry& entry) {
  const std::string& id = entry.job_id;
  {
    std::lock_guard lock(mu_);
    auto it = inflight_.find(id);
    if (it != inflight_.end()) {  // ours already (we missed a heartbeat): keep running it
      it->second = entry;
      return;
    }
  }
  auto job = store_.get_job(id);
  if (!job || is_terminal(job->status)) {  // canceled while it waited, or swept
    queue_->ack(entry);
    return;
  }
  {
    std::lock_guard lock(mu_);
    inflight_[id] = entry;
  }
  ++pending_;  // release_entry() gives it back
  if (job->status == JobStatus::running) {
    // Its node stopped heartbeating mid-job: it died. Bounded, as after a single node's crash.
    if (job->attempts >= config_.max_attempts) {
      const int n = job->attempts;
      finish(id, JobStatus::failed, "", "interrupted",
             "interrupted " + std::to_string(n) + (n == 1 ? " time" : " times") +
                 " (the node running it stopped); giving up");
      return;
    }
    store_.requeue(id);
  }
  auto audio = store_.load_input(id);
  if (!audio) {
    finish(id, JobStatus::failed, "", "interrupted", "the job's audio was not kept");
    return;
  }
  if (entry.reclaimed) {
    log_json("info", "job_taken_over", {{"job", id}, {"attempts", job->attempts}});
    emit(id, "queued", {{"status", "queued"}, {"recovered", true}});
  }
  if (shares_inference(*job)) {
    bool joins_local;
    {
      std::lock_guard lock(mu_);
      joins_local = groups_.count(job->cache_key) > 0;  // run_job makes it a follower here
    }
    if (!joins_local) {
      const bool leads = queue_->claim_inference(job->cache_key, id);
      std::lock_guard lock(mu_);
      (leads ? inflight_[id].leads : inflight_[id].waits_for) = job->cache_key;
      if (!leads) return;  // another node runs the same inference: check_waiting() follows it
    }
  }
  run_job(*job, std::move(*audio), job->cache_key);
}

bool JobManager::shares_inference(const JobRecord& job) const {
  if (job.cache_key.empty() || config_.cache_ttl_ms <= 0) return false;  // no cache to meet in
  try {
    return JobOptions::from_json(json::parse(job.options_json)).cache;
  } catch (const std::exception&) {
    return false;
  }
}

void JobManager::check_waiting(const std::vector<QueueEntry>& held) {
  for (const QueueEntry& e : held) {
    if (e.waits_for.empty()) continue;
    const std::string& id = e.job_id;
    auto job = store_.get_job(id);
    if (!job || is_terminal(job->status)) {  // canceled (or swept) meanwhile
      release_entry(id);
      continue;
    }
    // The leader stores its answer before it gives up its claim: check the cache first.
    if (auto hit = store_.cache_get(e.waits_for, now_ms())) {
      json r = json::parse(*hit);
      r["id"] = id;
      r["cached"] = true;
      finish(id, JobStatus::succeeded, dump_json(r), "", "");
      continue;
    }
    if (!queue_->claim_inference(e.waits_for, id)) continue;  // still running elsewhere
    // The leader failed, was canceled or its node died: this job runs the inference itself.
    auto audio = store_.load_input(id);
    {
      std::lock_guard lock(mu_);
      auto it = inflight_.find(id);
      if (it == inflight_.end()) continue;
      it->second.leads = it->second.waits_for;
      it->second.waits_for.clear();
    }
    if (!audio) {
      finish(id, JobStatus::failed, "", "interrupted", "the job's audio was not kept");
      continue;
    }
    run_job(*job, std::move(*audio), job->cache_key);
  }
}

void JobManager::release_entry(const std::string& job_id) {
  if (!queue_) return;
  std::optional<QueueEntry> entry;
  {
    std::lock_guard lock(mu_);
    auto it = inflight_.find(job_id);
    if (it == inflight_.end()) return;  // not run here (a cancel of another node's job)
    entry = it->second;
    inflight_.erase(it);
  }
  --pending_;
  try {
    if (!entry->leads.empty()) queue_->release_inference(entry->leads, job_id);
    queue_->ack(*entry);
  } catch (const StoreError&) {
    // Unacknowledged: a node takes the entry over after the visibility timeout, sees the job
    // finished and acknowledges it then.
  }
  bg_cv_.notify_all();  // a slot is free: the dispatcher may pull again
}

void JobManager::cancel_local(const std::string& job_id) {
  std::shared_ptr<InferenceTask> task;
  bool follower = false;
  {
    std::lock_guard lock(mu_);
    auto jg = job_group_.find(job_id);
    auto g = jg == job_group_.end() ? groups_.end() : groups_.find(jg->second);
    if (g == groups_.end()) return;  // not running here
    if (g->second.leader == job_id) {
      task = g->second.task;
    } else {
      std::erase(g->second.followers, job_id);
      follower = true;
    }
  }
  if (task) task->cancel = true;
  if (follower) finish(job_id, JobStatus::canceled, "", "canceled", "canceled by the caller");
}

void JobManager::bus_loop() {
  bool failing = false;
  for (;;) {
    {
      std::unique_lock lock(bg_mu_);
      if (stopping_) return;
    }
    try {
      bus_->read(
          300, [this](const std::string& job, const JobEvent& e) { deliver_local(job, e); },
          [this](const std::string& job) { cancel_local(job); });
      failing = false;
    } catch (const StoreError& e) {
      if (!failing) log_json("warn", "bus_unreachable", {{"error", e.what()}});
      failing = true;
      std::unique_lock lock(bg_mu_);
      bg_cv_.wait_for(lock, std::chrono::milliseconds(500));
    }
  }
}

}  // namespace stepaudio::server
