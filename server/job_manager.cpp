// JobManager (job_manager.h): admission, durable creation, cache and in-flight groups, the backend
// callbacks, cancellation and recovery. Webhook delivery and the retention sweeper live in
// job_background.cpp.
#include "job_manager.h"

#include <chrono>
#include <thread>

#include "api_error.h"
#include "crypto.h"
#include "json_log.h"

namespace stepaudio::server {

using nlohmann::json;

json JobOptions::to_json() const {
  return {{"task", task_name(task)},
          {"target_length", target_length},
          {"language", language},
          {"cache", cache}};
}

JobOptions JobOptions::from_json(const json& j) {
  JobOptions o;
  try {
    if (j.contains("task")) o.task = parse_task(j.at("task").get<std::string>());
    if (j.contains("target_length")) {
      const auto& t = j.at("target_length");
      if (!t.is_number_integer() || t.get<int64_t>() < 1 || t.get<int64_t>() > 2000)
        throw ApiError(400, "invalid_argument", "target_length must be an integer in 1..2000");
      o.target_length = t.get<size_t>();
    }
    if (j.contains("language")) o.language = j.at("language").get<std::string>();
    if (j.contains("cache")) o.cache = j.at("cache").get<bool>();
  } catch (const json::exception& e) {
    throw ApiError(400, "invalid_argument", std::string("bad option: ") + e.what());
  } catch (const Error& e) {
    throw ApiError(400, "invalid_argument", e.what());
  }
  const bool lang_ok =
      o.language == "auto" || (o.language.size() == 2 && std::islower(uint8_t(o.language[0])) &&
                               std::islower(uint8_t(o.language[1])));
  if (!lang_ok)
    throw ApiError(400, "invalid_argument", "language must be \"auto\" or an ISO 639-1 code");
  return o;
}

JobManager::JobManager(const ServiceConfig& config, JobStore& store, InferenceBackend& backend,
                       Metrics& metrics, JobQueue* queue, EventBus* bus)
    : config_(config),
      store_(store),
      backend_(backend),
      metrics_(metrics),
      queue_(queue),
      bus_(bus) {}

JobManager::~JobManager() {
  stop();
}

int64_t JobManager::now_ms() const {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

namespace {

// Releases an admission slot unless the job became durable (then finish() releases it).
struct Admission {
  std::atomic<size_t>& pending;
  bool held = true;
  ~Admission() {
    if (held) --pending;
  }
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

JobManager::PcmDigest JobManager::pcm_digest(const std::string& audio) {
  // The same bytes again (a client's retry, a repeated upload): the digest is remembered, so a
  // cache hit costs a SHA-256 of the bytes instead of a decode (FFmpeg's probing alone is ~10 ms).
  const std::string bytes_hash = sha256_hex(audio);
  {
    std::lock_guard lock(mu_);
    auto it = pcm_digests_.find(bytes_hash);
    if (it != pcm_digests_.end()) return it->second;
  }
  // Decode: bad audio is answered now, and the PCM's hash keys the cache (the same recording in
  // another container still hits). The PCM itself is not kept (see backend.h).
  audio::DecodeOptions decode;
  decode.max_seconds = config_.max_audio_seconds;
  Sha256 pcm_hash;
  PcmDigest d;
  try {
    audio::StreamInfo info = audio::decode_memory_stream(
        reinterpret_cast<const uint8_t*>(audio.data()), audio.size(), decode,
        [&](const audio::StreamInfo&, const float* x, size_t n) { pcm_hash.update(x, n * 4); });
    d.seconds = info.seconds;
    const std::string rate = std::to_string(info.sample_rate);
    pcm_hash.update(rate.data(), rate.size());
  } catch (const Error& e) {
    throw ApiError(status_for(e.code()), e.code_name(), e.what());
  }
  d.hash = pcm_hash.hex_digest();
  std::lock_guard lock(mu_);
  if (pcm_digests_.size() >= 4096) pcm_digests_.clear();  // bounded; a miss only costs a decode
  pcm_digests_[bytes_hash] = d;
  return d;
}

JobRecord JobManager::submit(const SubmitRequest& r) {
  if (!backend_.ready()) {
    const std::string err = backend_.load_error();
    throw ApiError(503, "not_ready",
                   err.empty() ? backend_.not_ready_reason() : "the model failed to load: " + err,
                   err.empty() ? 5 : 0);
  }
  auto queue_full = [this] {
    // A rough wait: one job at a time, at least a second.
    return ApiError(
        429, "queue_full",
        "the queue is full (" + std::to_string(config_.max_queue) + " jobs); retry later",
        int(std::max<size_t>(1, config_.max_queue / 4)));
  };
  // A single node counts its unfinished jobs; nodes sharing a queue count the queue's entries,
  // and a job counts in pending_ only on the node that runs it (this request meanwhile).
  if (pending_.fetch_add(1) >= config_.max_queue && !queue_) {
    --pending_;
    throw queue_full();
  }
  Admission admission{pending_};
  if (queue_ && queue_->depth() >= config_.max_queue) throw queue_full();
  if (!r.webhook_url.empty() && r.webhook_url.rfind("http://", 0) != 0 &&
      r.webhook_url.rfind("https://", 0) != 0)
    throw ApiError(400, "invalid_url", "webhook_url must be an http or https URL");

  std::string audio = r.audio;
  double fetch_ms = 0;
  if (!r.audio_url.empty()) {
    const auto t0 = std::chrono::steady_clock::now();
    try {
      audio = fetch_url(r.audio_url, config_.url_policy, config_.fetch).body;
    } catch (const FetchError& e) {
      throw ApiError(status_for_fetch(e.code()), e.code(), e.what());
    }
    fetch_ms = 1000 * seconds_since(t0);
  }
  if (audio.empty()) throw ApiError(400, "invalid_argument", "no audio: the recording is empty");

  const PcmDigest pcm = pcm_digest(audio);
  // DESIGN.md §7: the PCM, the task options (not the cache flag itself), model and quantization.
  json key_options = r.options.to_json();
  key_options.erase("cache");
  const std::string key = sha256_hex(pcm.hash + "|" + dump_json(key_options) + "|" +
                                     backend_.model_id() + "|" + backend_.quant());
  const double duration_s = pcm.seconds;

  JobRecord job;
  job.id = "job_" + random_hex(12);
  job.owner = r.caller.id;
  job.options_json = dump_json(r.options.to_json());
  job.audio_url = r.audio_url;
  job.webhook_url = r.webhook_url;
  job.created_ms = now_ms();
  job.cache_key = key;
  if (!r.webhook_url.empty()) job.webhook_secret = r.caller.webhook_secret;
  {
    std::lock_guard lock(mu_);
    fetch_ms_[job.id] = fetch_ms;
  }

  // Claimed last, after every check a retry could fail differently: a key is only ever tied to
  // a job that is stored right below (or released again if storing it fails).
  if (!r.idempotency_key.empty()) {
    if (auto original = claim_idempotency(r, job)) {
      std::lock_guard lock(mu_);
      fetch_ms_.erase(job.id);  // this job id is not used
      return *original;
    }
  }
  struct Release {
    JobStore& store;
    const SubmitRequest& r;
    const std::string& id;
    bool armed;
    ~Release() {
      if (!armed) return;
      try {
        store.release_idempotency_key(r.caller.id, r.idempotency_key, id);
      } catch (const StoreError&) {  // the store is down: the key expires with the retention
      }
    }
  } release{store_, r, job.id, !r.idempotency_key.empty()};

  if (r.options.cache && config_.cache_ttl_ms > 0) {
    if (auto hit = store_.cache_get(key, job.created_ms)) {
      metrics_.inc("stepaudio_cache_hits_total");
      json result = json::parse(*hit);
      result["id"] = job.id;
      result["cached"] = true;
      result["timings_ms"]["fetch"] = fetch_ms;
      // Stored as finished in one commit without an fsync: the caller gets the answer itself in
      // this response, so a power cut could lose only the record of an answer already given.
      job.status = JobStatus::succeeded;
      job.result_json = dump_json(result);
      job.finished_ms = job.started_ms = now_ms();
      job.expires_ms = config_.retention_ms > 0 ? job.finished_ms + config_.retention_ms : 0;
      store_.create_job(job, "", /*durable=*/false);
      release.armed = false;
      admission.held = queue_ != nullptr;  // a single node's announce() releases it
      announce(job.id, job.status, job.result_json, "", "");
      return job;
    }
    metrics_.inc("stepaudio_cache_misses_total");
  }
  store_.create_job(job, audio);  // durable from here on: the caller may be told 202
  release.armed = false;
  metrics_.inc("stepaudio_audio_seconds_received_total", {}, duration_s);
  emit(job.id, "queued", {{"status", "queued"}, {"duration_s", duration_s}});
  if (queue_) {
    // Some node (this one, if it has room first) pulls it from the shared queue. The job is
    // stored already: if the push fails, a node queues it again within a visibility timeout or
    // two (JobQueue::requeue_orphans), so the caller is still told 202.
    try {
      queue_->push(job.id);
    } catch (const StoreError& e) {
      log_json("warn", "job_not_queued", {{"job", job.id}, {"error", e.what()}});
    }
    std::lock_guard lock(mu_);
    fetch_ms_.erase(job.id);  // known here only: another node may run it
    return job;
  }
  admission.held = false;
  run_job(job, std::move(audio), key);
  return job;
}

std::optional<JobRecord> JobManager::claim_idempotency(const SubmitRequest& r,
                                                       const JobRecord& job) {
  // What makes two submissions "the same request": the audio (its bytes, or its URL), the
  // options and the webhook.
  const std::string request_hash =
      sha256_hex(dump_json({{"audio", r.audio_url.empty() ? sha256_hex(r.audio) : ""},
                            {"audio_url", r.audio_url},
                            {"options", r.options.to_json()},
                            {"webhook_url", r.webhook_url}}));
  for (int round = 0;; ++round) {
    const int64_t now = now_ms();
    const int64_t expires = config_.retention_ms > 0 ? now + config_.retention_ms : 0;
    auto claim = store_.claim_idempotency_key(r.caller.id, r.idempotency_key,
                                              {request_hash, job.id}, now, expires);
    if (!claim) return std::nullopt;
    if (claim->request_hash != request_hash)
      throw ApiError(409, "idempotency_key_reused",
                     "this Idempotency-Key was used for a different request (job " + claim->job_id +
                         "); use a new key for a new request");
    // The first submission claimed the key just before storing its job: give it a moment.
    for (int i = 0; i < 20; ++i) {
      if (auto original = store_.get_job(claim->job_id)) return original;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    // Still no job: its submission died between the claim and the commit. The key is free.
    if (round > 0)
      throw ApiError(409, "idempotency_key_in_progress",
                     "another request with this Idempotency-Key is in progress", 1);
    store_.release_idempotency_key(r.caller.id, r.idempotency_key, claim->job_id);
  }
}

void JobManager::run_job(const JobRecord& job, std::string audio, const std::string& cache_key) {
  const JobOptions options = JobOptions::from_json(json::parse(job.options_json));
  // Jobs that may share an answer share a group; cache:false jobs run on their own.
  const std::string key = options.cache ? cache_key : cache_key + ":" + job.id;
  std::lock_guard lock(mu_);
  job_group_[job.id] = key;
  auto it = groups_.find(key);
  if (it != groups_.end()) {
    it->second.followers.push_back(job.id);
    return;
  }
  auto task = std::make_shared<InferenceTask>();
  task->job_id = job.id;
  task->audio_bytes = std::move(audio);
  task->decode.max_seconds = config_.max_audio_seconds;
  task->options.task = options.task;
  task->options.target_length = options.target_length;
  task->options.language = options.language;
  task->options.max_audio_seconds = config_.max_audio_seconds;
  const std::string id = job.id;
  InferenceTask* raw = task.get();
  // The store failed at the start: the job stays as stored and runs again later (a single node:
  // at its next start; several: when a node takes its queue entry over).
  auto abandoned = std::make_shared<std::atomic<bool>>(false);
  task->on_start = [this, id, raw, abandoned] {
    try {
      if (!store_.mark_running(id, now_ms())) {
        raw->cancel = true;  // canceled while it waited
        return;
      }
    } catch (const StoreError& e) {
      log_json("error", "job_not_started", {{"job", id}, {"error", e.what()}});
      *abandoned = true;
      raw->cancel = true;
      return;
    }
    auto rec = store_.get_job(id);
    emit(id, "running", {{"status", "running"}, {"attempt", rec ? rec->attempts : 1}});
  };
  auto last = std::make_shared<std::pair<std::string, int>>();
  task->on_progress = [this, id, last](const TaskProgress& p) {
    if (!p.text_delta.empty()) {
      emit(id, "partial", {{"text", p.text_delta}});
      return;
    }
    const int pct = int(p.percent);
    if (last->first == p.stage && last->second == pct) return;  // one event per visible change
    *last = {p.stage, pct};
    emit(id, "progress", {{"stage", p.stage}, {"percent", pct}});
  };
  // "cache": false skips the lookup and the sharing, not the store: the fresh answer serves the
  // next request that allows the cache.
  task->on_success = [this, key, id, cache_key](Understanding u) {
    u.id = id;
    u.model = backend_.model_id();
    json result = json::parse(to_json(u, -1));
    {
      std::lock_guard lock(mu_);
      result["timings_ms"]["fetch"] = fetch_ms_[id];
    }
    metrics_.inc("stepaudio_audio_seconds_processed_total", {}, u.duration_s);
    metrics_.inc("stepaudio_tokens_generated_total", {}, double(u.completion_tokens));
    if (u.generate_ms > 0)
      metrics_.set("stepaudio_decode_tokens_per_second", {},
                   1000.0 * double(u.completion_tokens) / u.generate_ms);
    for (auto [stage, ms] : {std::pair{"decode", u.decode_ms},
                             {"mel", u.mel_ms},
                             {"encode", u.encode_ms},
                             {"prefill", u.prefill_ms},
                             {"generate", u.generate_ms},
                             {"total", u.total_ms}})
      metrics_.observe("stepaudio_stage_seconds", {{"stage", stage}}, ms / 1000.0);
    const std::string text = dump_json(result);
    if (config_.cache_ttl_ms > 0) {
      const int64_t ttl = config_.privacy ? std::min(config_.cache_ttl_ms, config_.retention_ms)
                                          : config_.cache_ttl_ms;
      try {
        store_.cache_put(cache_key, text, now_ms(), ttl, config_.cache_max_entries);
      } catch (const StoreError&) {  // not cached this time; the answer itself is still stored
      }
    }
    finish_group(key, text, nullptr);
  };
  task->on_error = [this, key, abandoned](const Error& e) {
    if (shutting_down_ && e.code() == Errc::canceled) return;  // runs again after the restart
    if (*abandoned) return abandon_group(key);
    finish_group(key, "", &e);
  };
  groups_[key] = Group{job.id, {}, task};
  backend_.submit(task, /*force=*/true);  // admitted by submit()'s count already
}

std::optional<JobManager::Group> JobManager::take_group(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = groups_.find(key);
  if (it == groups_.end()) return std::nullopt;
  Group g = std::move(it->second);
  groups_.erase(it);
  return g;
}

// Finishes every job of a group: the leader with the inference's answer, followers with a copy.
// A canceled leader hands the inference to its first follower instead.
void JobManager::finish_group(const std::string& key, const std::string& result,
                              const Error* error) {
  std::optional<Group> taken = take_group(key);
  if (!taken) return;
  Group& g = *taken;
  if (error && error->code() == Errc::canceled && !g.followers.empty()) {
    finish(g.leader, JobStatus::canceled, "", "canceled", error->what());
    // The first follower leads a new inference, the others follow it (run_job joins them to the
    // group, or starts another if that one already finished).
    for (const std::string& id : g.followers) {
      auto job = store_.get_job(id);
      auto audio = job ? store_.load_input(id) : std::nullopt;
      if (job && audio)
        run_job(*job, std::move(*audio), job->cache_key);
      else if (job)
        finish(id, JobStatus::failed, "", "internal", "the job's audio was not kept");
    }
    return;
  }
  auto done = [&](const std::string& id, bool follower) {
    if (error) {
      const bool canceled = error->code() == Errc::canceled;
      finish(id, canceled ? JobStatus::canceled : JobStatus::failed, "", error->code_name(),
             error->what());
      return;
    }
    json r = json::parse(result);
    r["id"] = id;
    r["cached"] = follower;
    finish(id, JobStatus::succeeded, dump_json(r), "", "");
  };
  done(g.leader, false);
  for (const auto& f : g.followers) done(f, true);
}

void JobManager::finish(const std::string& id, JobStatus status, const std::string& result,
                        const std::string& code, const std::string& message) {
  const int64_t now = now_ms();
  const int64_t expires = config_.retention_ms > 0 ? now + config_.retention_ms : 0;
  try {
    if (!store_.finish_job(id, status, result, code, message, now, expires)) {
      release_entry(id);  // finished meanwhile by another node (a cancel)
      return;
    }
  } catch (const StoreError& e) {
    log_json("error", "job_not_finished", {{"job", id}, {"error", e.what()}});
    return abandon(id);
  }
  try {
    store_.drop_input(id);
  } catch (const StoreError&) {  // deleted with the job at its retention
  }
  announce(id, status, result, code, message);
}

void JobManager::abandon_group(const std::string& key) {
  std::optional<Group> taken = take_group(key);
  if (!taken) return;
  Group& g = *taken;
  abandon(g.leader);
  for (const std::string& id : g.followers) abandon(id);
}

void JobManager::abandon(const std::string& id) {
  bool counted = !queue_;
  {
    std::lock_guard lock(mu_);
    job_group_.erase(id);
    fetch_ms_.erase(id);
    if (queue_) counted = inflight_.erase(id) == 1;  // its entry, unacknowledged, is taken over
  }
  if (counted) --pending_;
  bg_cv_.notify_all();
}

void JobManager::announce(const std::string& id, JobStatus status, const std::string& result,
                          const std::string& code, const std::string& message) {
  {
    std::lock_guard lock(mu_);
    job_group_.erase(id);
    fetch_ms_.erase(id);
  }
  if (queue_)
    release_entry(id);
  else
    --pending_;
  metrics_.inc("stepaudio_jobs_finished_total", {{"status", job_status_name(status)}});
  if (status == JobStatus::succeeded)
    emit(id, "result", json::parse(result));
  else
    emit(id, status == JobStatus::canceled ? "canceled" : "error",
         {{"status", job_status_name(status)}, {"error", {{"code", code}, {"message", message}}}});
  try {
    add_webhook(id);
  } catch (const StoreError& e) {
    log_json("error", "webhook_not_queued", {{"job", id}, {"error", e.what()}});
  }
}

bool JobManager::cancel(const std::string& id, const std::string& owner) {
  auto job = get(id, owner);
  if (!job || is_terminal(job->status)) return false;
  std::shared_ptr<InferenceTask> task;
  bool follower = false;
  {
    std::lock_guard lock(mu_);
    auto jg = job_group_.find(id);
    // (The group may be gone already: its inference just finished and is finishing its jobs.)
    auto g = jg == job_group_.end() ? groups_.end() : groups_.find(jg->second);
    if (g != groups_.end()) {
      if (g->second.leader == id) {
        task = g->second.task;
      } else {
        std::erase(g->second.followers, id);
        follower = true;
      }
    }
  }
  if (task) task->cancel = true;  // the engine stops within one token step
  // A job not running yet is canceled now; a running one when the engine returns.
  if (follower || job->status == JobStatus::queued)
    finish(id, JobStatus::canceled, "", "canceled", "canceled by the caller");
  else if (!task && bus_)
    bus_->publish_cancel(id);  // running on another node: it stops it
  return true;
}

std::optional<JobRecord> JobManager::get(const std::string& id, const std::string& owner) {
  auto job = store_.get_job(id);
  if (!job || job->owner != owner) return std::nullopt;
  return job;
}

void JobManager::emit(const std::string& job_id, const std::string& type, const json& data) {
  JobEvent e;
  e.type = type;
  e.data = dump_json(data);
  e.ts_ms = now_ms();
  // The result is already in the job row: storing it again would double what every job (and
  // every cache hit) writes.
  try {
    e.seq = store_.append_event(job_id, type, type == "result" ? "{}" : e.data, e.ts_ms);
  } catch (const StoreError&) {
    return;  // without a seq it cannot be replayed or ordered: listeners see the job's state
  }
  deliver_local(job_id, e);
  if (bus_) {
    try {
      bus_->publish_event(job_id, e);
    } catch (const StoreError&) {  // stored: a listener on another node replays it on reconnect
    }
  }
}

void JobManager::deliver_local(const std::string& job_id, const JobEvent& e) {
  std::vector<EventFn> fns;
  {
    std::lock_guard lock(mu_);
    auto it = subscribers_.find(job_id);
    if (it != subscribers_.end())
      for (auto& [t, fn] : it->second) fns.push_back(fn);
  }
  for (auto& fn : fns) fn(e);
}

std::vector<JobEvent> JobManager::stored_events(const std::string& job_id, int64_t after_seq) {
  std::vector<JobEvent> events = store_.events_after(job_id, after_seq);
  for (JobEvent& e : events)
    if (e.type == "result" && e.data == "{}")
      if (auto job = store_.get_job(job_id)) e.data = job->result_json;
  return events;
}

uint64_t JobManager::subscribe(const std::string& job_id, EventFn fn) {
  std::lock_guard lock(mu_);
  const uint64_t token = next_token_++;
  subscribers_[job_id][token] = std::move(fn);
  return token;
}

void JobManager::unsubscribe(const std::string& job_id, uint64_t token) {
  std::lock_guard lock(mu_);
  auto it = subscribers_.find(job_id);
  if (it == subscribers_.end()) return;
  it->second.erase(token);
  if (it->second.empty()) subscribers_.erase(it);
}

json JobManager::job_view(const JobRecord& j) {
  json v = {{"id", j.id},
            {"status", job_status_name(j.status)},
            {"created_at", j.created_ms / 1000.0},
            {"attempts", j.attempts},
            {"options", json::parse(j.options_json)},
            {"urls", {{"self", "/v1/jobs/" + j.id}, {"events", "/v1/jobs/" + j.id + "/events"}}}};
  v["started_at"] = j.started_ms ? json(j.started_ms / 1000.0) : json(nullptr);
  v["finished_at"] = j.finished_ms ? json(j.finished_ms / 1000.0) : json(nullptr);
  v["expires_at"] = j.expires_ms ? json(j.expires_ms / 1000.0) : json(nullptr);
  if (!j.audio_url.empty()) v["audio_url"] = j.audio_url;
  v["result"] = j.result_json.empty() ? json(nullptr) : json::parse(j.result_json);
  v["error"] = j.error_code.empty() ? json(nullptr)
                                    : json{{"code", j.error_code}, {"message", j.error_message}};
  if (!j.webhook_url.empty()) {
    json deliveries = json::array();
    for (const auto& d : store_.deliveries_for(j.id))
      deliveries.push_back(
          {{"state", d.state},
           {"attempts", json::parse(d.attempts_json)},
           {"next_attempt_at",
            d.state == "pending" ? json(d.next_attempt_ms / 1000.0) : json(nullptr)}});
    v["webhook"] = {{"url", j.webhook_url}, {"deliveries", deliveries}};
  }
  return v;
}

}  // namespace stepaudio::server
