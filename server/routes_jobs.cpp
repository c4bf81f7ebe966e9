// The seed's endpoint and the job routes (routes.h): POST /transcribe-and-summarize,
// POST/GET /v1/jobs, GET/DELETE /v1/jobs/{id}, GET /v1/jobs/{id}/events (Server-Sent Events).
#include <mutex>

#include "api_error.h"
#include "routes.h"

namespace stepaudio::server {

using nlohmann::json;

namespace {

// A finished job as the seed endpoint answers it: the result, or its error with a fitting status.
HttpResponse finished_answer(const JobRecord& job) {
  if (job.status == JobStatus::succeeded) {
    HttpResponse r;
    r.body = job.result_json;
    return r;
  }
  return json_error(status_for_code(job.error_code), job.error_code, job.error_message);
}

std::string sse_frame(const JobEvent& e) {
  return "id: " + std::to_string(e.seq) + "\nevent: " + e.type + "\ndata: " + e.data + "\n\n";
}

bool terminal_event(const std::string& type) {
  return type == "result" || type == "error" || type == "canceled";
}

}  // namespace

void Routes::seed(std::shared_ptr<Exchange> ex, Caller caller) {
  SubmitRequest req = parse_submission(ex->request());
  req.caller = std::move(caller);
  submit_then(ex, std::move(req), [this, ex](const JobRecord& job) {
    if (is_terminal(job.status)) return ex->reply(finished_answer(job));  // a cache hit
    wait_for(
        ex, job, c_.options.request_timeout_s, /*cancel_on_close=*/true,
        [ex](const JobRecord& done) { ex->reply(finished_answer(done)); },
        [this, ex, id = job.id, owner = job.owner] {
          // Past the request timeout: the job goes on; the client polls or listens for it.
          if (auto rec = c_.jobs.get(id, owner))
            ex->reply(json_ok(c_.jobs.job_view(*rec), 202));
          else
            ex->reply(json_error(500, "internal", "job " + id + " vanished while it ran"));
        });
  });
}

void Routes::create_job(std::shared_ptr<Exchange> ex, Caller caller) {
  SubmitRequest req = parse_submission(ex->request());
  req.caller = std::move(caller);
  submit_then(ex, std::move(req), [this, ex](const JobRecord& job) {
    json v = c_.jobs.job_view(job);
    HttpResponse r = json_ok({{"id", v["id"]}, {"status", v["status"]}, {"urls", v["urls"]}}, 202);
    r.headers.emplace_back("Location", "/v1/jobs/" + job.id);
    ex->reply(std::move(r));
  });
}

void Routes::list_jobs(Exchange& ex, const Caller& caller) {
  const std::string l = ex.request().query_param("limit");
  size_t limit = 20;
  if (!l.empty()) {
    if (l.size() > 3 || !std::all_of(l.begin(), l.end(), ::isdigit) || std::stoi(l) < 1 ||
        std::stoi(l) > 100)
      throw ApiError(400, "invalid_argument", "limit must be an integer in 1..100");
    limit = size_t(std::stoi(l));
  }
  auto jobs = c_.jobs.store().list_jobs(caller.id, limit + 1, ex.request().query_param("before"));
  const bool more = jobs.size() > limit;
  if (more) jobs.resize(limit);
  json data = json::array();
  for (const auto& j : jobs) data.push_back(c_.jobs.job_view(j));
  ex.reply(json_ok({{"object", "list"},
                    {"data", data},
                    {"has_more", more},
                    {"next_before", more ? json(jobs.back().id) : json(nullptr)}}));
}

void Routes::get_job(Exchange& ex, const Caller& caller, const std::string& id) {
  auto job = c_.jobs.get(id, caller.id);
  if (!job) throw ApiError(404, "not_found", "no job " + id);
  ex.reply(json_ok(c_.jobs.job_view(*job)));
}

void Routes::delete_job(Exchange& ex, const Caller& caller, const std::string& id) {
  auto job = c_.jobs.get(id, caller.id);
  if (!job) throw ApiError(404, "not_found", "no job " + id);
  if (!c_.jobs.cancel(id, caller.id))
    throw ApiError(409, "already_finished",
                   "job " + id + " already " + job_status_name(job->status));
  // Queued jobs are canceled now; a running one stops within one token step.
  ex.reply(json_ok(c_.jobs.job_view(*c_.jobs.get(id, caller.id)), 202));
}

void Routes::events(std::shared_ptr<Exchange> ex, const Caller& caller, const std::string& id) {
  if (!c_.jobs.get(id, caller.id)) throw ApiError(404, "not_found", "no job " + id);
  std::string last = ex->request().header("last-event-id");
  if (last.empty()) last = ex->request().query_param("last_event_id");
  int64_t after = 0;
  if (!last.empty()) {
    if (last.size() > 12 || !std::all_of(last.begin(), last.end(), ::isdigit))
      throw ApiError(400, "invalid_argument", "Last-Event-ID must be an event number");
    after = std::stoll(last);
  }
  ex->start_stream(200, "text/event-stream");
  follow(ex, id, after,
         [ex](const JobEvent& e) { return !ex->send(sse_frame(e)) || terminal_event(e.type); });
}

void Routes::follow(std::shared_ptr<Exchange> ex, const std::string& id, int64_t after,
                    std::function<bool(const JobEvent&)> on_event) {
  // Live events are held back until the stored ones (after `after`) are passed on, then passed
  // on in order once each (by seq), so a replay and a live event never duplicate or reorder.
  struct Stream {
    std::mutex mu;
    int64_t sent = 0;
    bool replayed = false, ended = false;
    std::vector<JobEvent> held;
    uint64_t token = 0;
  };
  auto st = std::make_shared<Stream>();
  st->sent = after;
  auto deliver = [this, ex, st, id, on_event](const JobEvent& e) {  // with st->mu held
    if (st->ended || e.seq <= st->sent) return;
    st->sent = e.seq;
    if (on_event(e)) {
      st->ended = true;
      ex->end();
      if (st->token) c_.jobs.unsubscribe(id, st->token);
    }
  };
  st->token = c_.jobs.subscribe(id, [st, deliver](const JobEvent& e) {
    std::lock_guard lock(st->mu);
    if (!st->replayed)
      st->held.push_back(e);
    else
      deliver(e);
  });
  ex->on_close([this, st, id] { c_.jobs.unsubscribe(id, st->token); });
  c_.offload([this, ex, st, deliver, id] {
    std::vector<JobEvent> stored;
    try {
      stored = c_.jobs.stored_events(id, 0);
    } catch (const StoreError&) {
    }
    std::lock_guard lock(st->mu);
    for (const auto& e : stored) deliver(e);
    for (const auto& e : st->held) deliver(e);
    st->held.clear();
    st->replayed = true;
    // Resumed after the last event of a finished job: nothing more will come. (The terminal
    // event is the last one stored; a job whose terminal event is not stored yet sends it live.)
    if (!st->ended && !stored.empty() && terminal_event(stored.back().type) &&
        stored.back().seq <= st->sent) {
      st->ended = true;
      ex->end();
    }
    if (st->ended) c_.jobs.unsubscribe(id, st->token);
  });
}

}  // namespace stepaudio::server
