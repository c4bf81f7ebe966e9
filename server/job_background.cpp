// The JobManager's background work (job_manager.h): crash recovery at start, signed webhook
// deliveries with retries, and the retention sweeper.
#include <chrono>
#include <cmath>
#include <random>

#include "crypto.h"
#include "job_manager.h"
#include "json_log.h"

namespace stepaudio::server {

using nlohmann::json;

void JobManager::start() {
  webhook_thread_ = std::thread([this] { webhook_loop(); });
  sweep_thread_ = std::thread([this] { sweep_loop(); });
  if (queue_) {
    // Several nodes: a job another node was running is not this node's to re-queue; the queue
    // hands over the entries of dead nodes after the visibility timeout (dispatch_loop).
    dispatch_thread_ = std::thread([this] { dispatch_loop(); });
    if (bus_) bus_thread_ = std::thread([this] { bus_loop(); });
    return;
  }
  // Jobs a crash interrupted run again (bounded attempts: store().recover fails the rest).
  const int64_t now = now_ms();
  std::vector<JobRecord> failed;
  const auto queued =
      store_.recover(config_.max_attempts, now,
                     config_.retention_ms > 0 ? now + config_.retention_ms : 0, &failed);
  for (const JobRecord& job : failed) {
    ++pending_;  // announce() releases it
    announce(job.id, job.status, "", job.error_code, job.error_message);
  }
  for (const JobRecord& job : queued) {
    auto audio = store_.load_input(job.id);
    ++pending_;
    if (!audio) {
      finish(job.id, JobStatus::failed, "", "interrupted", "the job's audio was not kept");
      continue;
    }
    emit(job.id, "queued", {{"status", "queued"}, {"recovered", true}});
    run_job(job, std::move(*audio), job.cache_key);
  }
}

void JobManager::stop() {
  {
    std::lock_guard lock(bg_mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  bg_cv_.notify_all();
  if (webhook_thread_.joinable()) webhook_thread_.join();
  if (sweep_thread_.joinable()) sweep_thread_.join();
  if (dispatch_thread_.joinable()) dispatch_thread_.join();
  if (bus_thread_.joinable()) bus_thread_.join();
}

void JobManager::add_webhook(const std::string& job_id) {
  auto job = store_.get_job(job_id);
  if (!job || job->webhook_url.empty()) return;
  WebhookDelivery d;
  d.job_id = job_id;
  d.url = job->webhook_url;
  d.owner = job->owner;
  d.secret = job->webhook_secret;
  const std::string type = std::string("job.") + job_status_name(job->status);
  d.payload = dump_json({{"type", type}, {"job", job_view(*job)}});
  d.state = "pending";
  d.next_attempt_ms = now_ms();
  store_.add_delivery(d);
  bg_cv_.notify_all();
}

void JobManager::webhook_loop() {
  std::mt19937_64 rng(std::random_device{}());
  for (;;) {
    {
      std::unique_lock lock(bg_mu_);
      bg_cv_.wait_for(lock, std::chrono::milliseconds(250));
      if (stopping_) return;
    }
    std::vector<WebhookDelivery> due;
    try {
      due = store_.due_deliveries(now_ms(), 16);
    } catch (const StoreError&) {
      continue;  // the store is down: try again on the next tick
    }
    for (const WebhookDelivery& d : due) {
      try {
        // Several nodes see the same due deliveries: one takes each (for longer than a try).
        const int64_t lease_ms = int64_t(1000 * config_.webhook_fetch.timeout_s) + 30000;
        if (!store_.lease_delivery(d.id, now_ms(), now_ms() + lease_ms)) continue;
      } catch (const StoreError&) {
        break;
      }
      const int64_t t = now_ms() / 1000;
      OutboundRequest req;
      req.method = "POST";
      req.url = d.url;
      req.body = d.payload;
      req.headers = {{"Content-Type", "application/json"},
                     {"User-Agent", "stepaudio-webhook/1"},
                     {"StepAudio-Event", json::parse(d.payload).value("type", "")},
                     {"StepAudio-Delivery", std::to_string(d.id)},
                     {"StepAudio-Signature", webhook_signature_header(d.secret, t, d.payload)}};
      int status = 0;
      std::string error;
      try {
        status = safe_request(req, config_.url_policy, config_.webhook_fetch).status;
        if (status < 200 || status > 299) error = "HTTP " + std::to_string(status);
      } catch (const FetchError& e) {
        error = e.code() + ": " + e.what();
      }
      const int attempt = d.attempts + 1;
      std::string state = error.empty() ? "delivered" : "pending";
      int64_t next = 0;
      if (!error.empty()) {
        if (attempt >= config_.webhook_max_attempts || error.rfind("forbidden_url", 0) == 0 ||
            error.rfind("invalid_url", 0) == 0) {
          state = "failed";
        } else {
          // Exponential backoff with "equal jitter": half the delay fixed, half random, capped.
          const double delay =
              std::min(config_.webhook_max_delay_s,
                       config_.webhook_base_delay_s * std::ldexp(1.0, std::min(attempt - 1, 30)));
          std::uniform_real_distribution<double> jitter(0.5, 1.0);
          next = now_ms() + int64_t(1000 * delay * jitter(rng));
        }
      }
      try {
        store_.record_attempt(d.id, now_ms(), status, error, state, next);
      } catch (const StoreError&) {  // the lease runs out and the delivery is tried again
      }
      metrics_.inc("stepaudio_webhook_attempts_total", {{"result", error.empty()       ? "delivered"
                                                                   : state == "failed" ? "failed"
                                                                                       : "retry"}});
    }
  }
}

void JobManager::sweep_loop() {
  for (;;) {
    {
      std::unique_lock lock(bg_mu_);
      // Every second: retention is kept to within a second or so, and the WAL checkpoint copies
      // little at a time (a busy cache writes ~17 KB per hit).
      bg_cv_.wait_for(lock, std::chrono::seconds(1));
      if (stopping_) return;
    }
    try {
      const size_t n = store_.sweep(now_ms());
      if (n) metrics_.inc("stepaudio_swept_rows_total", {}, double(n));
      store_.checkpoint();
    } catch (const StoreError&) {
    }
  }
}

}  // namespace stepaudio::server
