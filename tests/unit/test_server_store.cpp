// The job store contract (server/job_store.h), run against both stores: SQLite on a temporary file
// and Redis on a throwaway redis-server (skipped when it is not installed). SQLite-only checks
// (file format, locking) are in test_server_store_sqlite.cpp.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "redis_test_server.h"
#include "server/job_store.h"
#include "server/redis_store.h"

using namespace stepaudio::server;

namespace {

class StoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sa_store_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/jobs.db";
    if (GetParam() == "redis") {
      std::string why;
      auto* server = stepaudio::test::RedisTestServer::instance(&why);
      if (!server) GTEST_SKIP() << why;
      url_ = server->url();
      RedisConnection(parse_redis_url(url_)).command({"FLUSHALL"});
    }
    store_ = open();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::unique_ptr<JobStore> open() {
    if (GetParam() == "redis")
      return open_redis_store(std::make_shared<RedisClient>(parse_redis_url(url_)));
    return open_sqlite_store(path_);
  }
  void reopen() {
    store_.reset();
    store_ = open();
  }

  std::string dir_, path_, url_;
  std::unique_ptr<JobStore> store_;
};

// A queued upload job; ids sort like their number ("job_007" < "job_010").
JobRecord make_job(int n, const std::string& owner = "key_a", int64_t created_ms = 1000) {
  JobRecord j;
  char id[32];
  std::snprintf(id, sizeof id, "job_%03d", n);
  j.id = id;
  j.owner = owner;
  j.options_json = R"({"task":"asr"})";
  j.created_ms = created_ms;
  return j;
}

WebhookDelivery make_delivery(const std::string& job_id, int64_t next_ms) {
  WebhookDelivery d;
  d.job_id = job_id;
  d.url = "https://example.com/hook";
  d.owner = "key_a";
  d.payload = R"({"id":")" + job_id + R"("})";
  d.secret = "00ff" + job_id;
  d.state = "pending";
  d.next_attempt_ms = next_ms;
  return d;
}

TEST_P(StoreTest, CreateGetRoundTripsEveryField) {
  JobRecord j;
  j.id = "job_0123456789abcdef01234567";
  j.owner = "key_x";
  j.status = JobStatus::running;
  j.options_json = R"({"task":"asr","target_length":30})";
  j.audio_url = "https://example.com/a.wav";
  j.webhook_url = "https://example.com/hook";
  j.attempts = 2;
  j.result_json = R"({"text":"hi"})";
  j.error_code = "code";
  j.error_message = "message with 'quotes' and \"double\" and ünïcode";
  j.created_ms = 1700000000001;
  j.started_ms = 1700000000002;
  j.finished_ms = 1700000000003;
  j.expires_ms = 1700000000004;
  j.cache_key = std::string(64, 'f');
  store_->create_job(j, "");
  auto g = store_->get_job(j.id);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->id, j.id);
  EXPECT_EQ(g->owner, j.owner);
  EXPECT_EQ(g->status, j.status);
  EXPECT_EQ(g->options_json, j.options_json);
  EXPECT_EQ(g->audio_url, j.audio_url);
  EXPECT_EQ(g->webhook_url, j.webhook_url);
  EXPECT_EQ(g->attempts, j.attempts);
  EXPECT_EQ(g->result_json, j.result_json);
  EXPECT_EQ(g->error_code, j.error_code);
  EXPECT_EQ(g->error_message, j.error_message);
  EXPECT_EQ(g->created_ms, j.created_ms);
  EXPECT_EQ(g->started_ms, j.started_ms);
  EXPECT_EQ(g->finished_ms, j.finished_ms);
  EXPECT_EQ(g->expires_ms, j.expires_ms);
  EXPECT_EQ(g->cache_key, j.cache_key);
  EXPECT_FALSE(store_->get_job("job_missing"));
  // A duplicate id is a constraint error, not a silent overwrite.
  EXPECT_THROW(store_->create_job(j, ""), StoreError);

  store_->set_cache_key(j.id, "abc");
  EXPECT_EQ(store_->get_job(j.id)->cache_key, "abc");
}

TEST_P(StoreTest, InputBlobLoadAndDrop) {
  std::string audio;
  for (int i = 0; i < 70000; ++i) audio.push_back(static_cast<char>(i * 7));  // has NUL bytes
  store_->create_job(make_job(1), audio);
  auto in = store_->load_input("job_001");
  ASSERT_TRUE(in);
  EXPECT_EQ(*in, audio);
  store_->drop_input("job_001");
  EXPECT_FALSE(store_->load_input("job_001"));
  EXPECT_TRUE(store_->get_job("job_001"));  // the job stays

  JobRecord url_job = make_job(2);
  url_job.audio_url = "https://example.com/a.wav";
  store_->create_job(url_job, "");
  EXPECT_FALSE(store_->load_input("job_002"));
  EXPECT_FALSE(store_->load_input("job_missing"));
}

TEST_P(StoreTest, MarkRunningOnlyFromQueued) {
  store_->create_job(make_job(1), "x");
  EXPECT_TRUE(store_->mark_running("job_001", 5000));
  auto j = store_->get_job("job_001");
  EXPECT_EQ(j->status, JobStatus::running);
  EXPECT_EQ(j->attempts, 1);
  EXPECT_EQ(j->started_ms, 5000);
  EXPECT_FALSE(store_->mark_running("job_001", 6000));  // already running
  EXPECT_EQ(store_->get_job("job_001")->attempts, 1);
  EXPECT_FALSE(store_->mark_running("job_missing", 6000));

  store_->create_job(make_job(2), "x");
  ASSERT_TRUE(
      store_->finish_job("job_002", JobStatus::canceled, "", "canceled", "by user", 7000, 0));
  EXPECT_FALSE(store_->mark_running("job_002", 8000));  // canceled before it started
  EXPECT_EQ(store_->get_job("job_002")->attempts, 0);
}

TEST_P(StoreTest, FinishJobRefusesSecondFinish) {
  store_->create_job(make_job(1), "x");
  ASSERT_TRUE(store_->mark_running("job_001", 2000));
  EXPECT_TRUE(
      store_->finish_job("job_001", JobStatus::succeeded, R"({"text":"a"})", "", "", 3000, 9000));
  EXPECT_FALSE(store_->finish_job("job_001", JobStatus::failed, "", "x", "y", 4000, 0));
  EXPECT_FALSE(store_->finish_job("job_missing", JobStatus::failed, "", "x", "y", 4000, 0));
  auto j = store_->get_job("job_001");
  EXPECT_EQ(j->status, JobStatus::succeeded);
  EXPECT_EQ(j->result_json, R"({"text":"a"})");
  EXPECT_EQ(j->error_code, "");
  EXPECT_EQ(j->finished_ms, 3000);
  EXPECT_EQ(j->expires_ms, 9000);
  EXPECT_THROW(store_->finish_job("job_001", JobStatus::running, "", "", "", 1, 0),
               std::invalid_argument);
}

TEST_P(StoreTest, RecoverRequeuesOrFailsInterruptedJobs) {
  // job_001: running, 1 attempt -> queued again. job_002: running, 3 attempts -> failed.
  // job_003 / job_004: queued (created out of id order). job_005: succeeded, untouched.
  store_->create_job(make_job(1, "key_a", 3000), "x");
  store_->create_job(make_job(2, "key_a", 1000), "x");
  store_->create_job(make_job(3, "key_a", 4000), "x");
  store_->create_job(make_job(4, "key_a", 2000), "x");
  store_->create_job(make_job(5, "key_a", 500), "x");
  ASSERT_TRUE(store_->mark_running("job_005", 10));
  ASSERT_TRUE(store_->finish_job("job_005", JobStatus::succeeded, "{}", "", "", 11, 0));
  for (int i = 0; i < 3; ++i) {  // job_002 interrupted three times
    ASSERT_TRUE(store_->mark_running("job_002", 10));
    if (i < 2) {
      ASSERT_EQ(store_->recover(3, 20).size(), 4u);  // back to queued each time
      EXPECT_EQ(store_->get_job("job_002")->status, JobStatus::queued);
    }
  }
  ASSERT_TRUE(store_->mark_running("job_001", 10));

  auto queued = store_->recover(3, 99000);
  std::vector<std::string> ids;
  for (auto& j : queued) ids.push_back(j.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"job_004", "job_001", "job_003"}));  // oldest first
  EXPECT_EQ(store_->get_job("job_001")->status, JobStatus::queued);
  EXPECT_EQ(store_->get_job("job_001")->attempts, 1);

  auto failed = store_->get_job("job_002");
  EXPECT_EQ(failed->status, JobStatus::failed);
  EXPECT_EQ(failed->error_code, "interrupted");
  EXPECT_EQ(failed->error_message,
            "interrupted 3 times (the server stopped while it ran); giving up");
  EXPECT_EQ(failed->finished_ms, 99000);
  EXPECT_EQ(store_->get_job("job_005")->status, JobStatus::succeeded);

  auto counts = store_->count_by_status();
  ASSERT_EQ(counts.size(), 5u);
  EXPECT_EQ(counts[int(JobStatus::queued)], 3);
  EXPECT_EQ(counts[int(JobStatus::running)], 0);
  EXPECT_EQ(counts[int(JobStatus::succeeded)], 1);
  EXPECT_EQ(counts[int(JobStatus::failed)], 1);
  EXPECT_EQ(counts[int(JobStatus::canceled)], 0);
}

TEST_P(StoreTest, ListJobsPagesNewestFirstWithCursors) {
  // 25 jobs alternating between two owners; pairs share a created_ms so the id breaks ties.
  for (int i = 1; i <= 25; ++i) {
    store_->create_job(make_job(i, i % 2 ? "key_a" : "key_b", 1000 + (i / 2) * 10), "x");
  }
  std::vector<std::string> expected;  // key_a's 13 jobs, newest first by (created_ms, id)
  {
    std::vector<std::pair<int64_t, std::string>> a;
    for (int i = 1; i <= 25; i += 2) a.push_back({1000 + (i / 2) * 10, make_job(i).id});
    std::sort(a.rbegin(), a.rend());
    for (auto& [ms, id] : a) expected.push_back(id);
  }
  std::vector<std::string> got;
  std::string cursor;
  int pages = 0;
  for (;;) {
    auto page = store_->list_jobs("key_a", 5, cursor);
    if (page.empty()) break;
    ++pages;
    EXPECT_LE(page.size(), 5u);
    for (auto& j : page) {
      EXPECT_EQ(j.owner, "key_a");
      got.push_back(j.id);
    }
    cursor = page.back().id;
  }
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(got, expected);

  // Ties on created_ms: job_002 (key_b) and job_003 (key_a) share 1010; check key_b's order too.
  auto b = store_->list_jobs("key_b", 100, "");
  ASSERT_EQ(b.size(), 12u);
  for (size_t i = 1; i < b.size(); ++i) {
    EXPECT_TRUE(b[i - 1].created_ms > b[i].created_ms ||
                (b[i - 1].created_ms == b[i].created_ms && b[i - 1].id > b[i].id));
  }
  EXPECT_TRUE(store_->list_jobs("key_a", 5, "job_unknown").empty());
  EXPECT_TRUE(store_->list_jobs("key_a", 5, "job_002").empty());  // key_b's job as cursor
  EXPECT_TRUE(store_->list_jobs("key_a", 0, "").empty());
  EXPECT_TRUE(store_->list_jobs("key_c", 5, "").empty());
}

TEST_P(StoreTest, EventsGetSequentialSeqs) {
  store_->create_job(make_job(1), "x");
  store_->create_job(make_job(2), "x");
  for (int i = 1; i <= 5; ++i) {
    EXPECT_EQ(
        store_->append_event("job_001", "progress", "{\"i\":" + std::to_string(i) + "}", 100 + i),
        i);
  }
  EXPECT_EQ(store_->append_event("job_002", "queued", "{}", 1), 1);  // per job
  auto all = store_->events_after("job_001", 0);
  ASSERT_EQ(all.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(all[i].seq, i + 1);
    EXPECT_EQ(all[i].type, "progress");
    EXPECT_EQ(all[i].data, "{\"i\":" + std::to_string(i + 1) + "}");
    EXPECT_EQ(all[i].ts_ms, 101 + i);
  }
  auto tail = store_->events_after("job_001", 3);
  ASSERT_EQ(tail.size(), 2u);
  EXPECT_EQ(tail[0].seq, 4);
  EXPECT_TRUE(store_->events_after("job_001", 5).empty());
  EXPECT_THROW(store_->append_event("job_missing", "x", "{}", 1), StoreError);  // foreign key
}

TEST_P(StoreTest, DeliveriesDueOrderAndAttempts) {
  store_->create_job(make_job(1), "x");
  int64_t late = store_->add_delivery(make_delivery("job_001", 3000));
  int64_t early = store_->add_delivery(make_delivery("job_001", 1000));
  int64_t future = store_->add_delivery(make_delivery("job_001", 9000));
  EXPECT_TRUE(late < early && early < future);

  auto due = store_->due_deliveries(5000, 10);
  ASSERT_EQ(due.size(), 2u);
  EXPECT_EQ(due[0].id, early);
  EXPECT_EQ(due[1].id, late);
  EXPECT_EQ(due[0].url, "https://example.com/hook");
  EXPECT_EQ(due[0].owner, "key_a");
  EXPECT_EQ(due[0].payload, R"({"id":"job_001"})");
  EXPECT_EQ(due[0].secret, "00ffjob_001");
  EXPECT_EQ(due[0].attempts_json, "[]");
  EXPECT_EQ(store_->due_deliveries(5000, 1).size(), 1u);

  store_->record_attempt(early, 1001, 503, "Service \"Unavailable\"", "pending", 6000);
  store_->record_attempt(early, 6001, 0, "connection refused", "pending", 20000);
  store_->record_attempt(late, 3001, 200, "", "delivered", 0);
  due = store_->due_deliveries(10000, 10);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].id, future);

  auto all = store_->deliveries_for("job_001");
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].id, late);
  EXPECT_EQ(all[0].state, "delivered");
  EXPECT_EQ(all[0].attempts, 1);
  EXPECT_EQ(all[1].attempts, 2);
  EXPECT_EQ(all[1].state, "pending");
  EXPECT_EQ(all[1].next_attempt_ms, 20000);
  auto a = nlohmann::json::parse(all[1].attempts_json);
  ASSERT_TRUE(a.is_array());
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0]["at_ms"], 1001);
  EXPECT_EQ(a[0]["status"], 503);
  EXPECT_EQ(a[0]["error"], "Service \"Unavailable\"");
  EXPECT_EQ(a[1]["at_ms"], 6001);
  EXPECT_EQ(a[1]["status"], 0);
  EXPECT_EQ(a[1]["error"], "connection refused");
  EXPECT_EQ(nlohmann::json::parse(all[0].attempts_json)[0]["status"], 200);

  EXPECT_THROW(store_->record_attempt(future, 1, 500, "", "bogus", 0), StoreError);  // CHECK
  EXPECT_NO_THROW(store_->record_attempt(999999, 1, 500, "", "failed", 0));          // gone: no-op
  EXPECT_TRUE(store_->deliveries_for("job_missing").empty());
}

TEST_P(StoreTest, CacheTtlLruAndReplace) {
  store_->cache_put("k1", "v1", 1000, 500, 10);
  EXPECT_EQ(store_->cache_get("k1", 1499), "v1");
  EXPECT_FALSE(store_->cache_get("k1", 1500));  // expired at created + ttl
  EXPECT_FALSE(store_->cache_get("nope", 1000));

  store_->cache_put("k1", "v1b", 2000, 0, 10);  // replace; ttl 0 = no expiry
  EXPECT_EQ(store_->cache_get("k1", 1'000'000'000), "v1b");

  // LRU with max 3; k1 was last used at 1e9, so it counts as the most recent throughout.
  store_->cache_put("a", "A", 3000, 0, 3);
  store_->cache_put("b", "B", 3001, 0, 3);
  store_->cache_put("c", "C", 3002, 0, 3);  // 4 entries: a is the least recently used
  EXPECT_FALSE(store_->cache_get("a", 3003));
  EXPECT_EQ(store_->cache_get("b", 3004), "B");  // b now more recent than c
  store_->cache_put("d", "D", 3005, 0, 3);       // c is the least recently used
  EXPECT_FALSE(store_->cache_get("c", 3006));
  EXPECT_EQ(store_->cache_get("b", 3007), "B");
  EXPECT_EQ(store_->cache_get("d", 3008), "D");
  EXPECT_EQ(store_->cache_get("k1", 3009), "v1b");

  // The entry just put survives even with an older clock than the rest.
  store_->cache_put("e", "E", 10, 0, 1);
  EXPECT_EQ(store_->cache_get("e", 11), "E");
  EXPECT_FALSE(store_->cache_get("k1", 12));
}

TEST_P(StoreTest, SweepDeletesExpiredJobsWithTheirRows) {
  for (int i = 1; i <= 3; ++i) {
    store_->create_job(make_job(i), "audio");
    store_->append_event(make_job(i).id, "queued", "{}", 1);
    store_->add_delivery(make_delivery(make_job(i).id, 5));
  }
  // job_001 expires at 5000, job_002 at 9000, job_003 never.
  ASSERT_TRUE(store_->finish_job("job_001", JobStatus::succeeded, "{}", "", "", 100, 5000));
  ASSERT_TRUE(store_->finish_job("job_002", JobStatus::failed, "", "e", "m", 100, 9000));
  ASSERT_TRUE(store_->finish_job("job_003", JobStatus::succeeded, "{}", "", "", 100, 0));
  store_->cache_put("old", "v", 0, 4000, 100);  // expires 4000
  store_->cache_put("fresh", "v", 0, 0, 100);   // never

  EXPECT_EQ(store_->sweep(5000), 2u);  // job_001 + "old"
  EXPECT_FALSE(store_->get_job("job_001"));
  EXPECT_FALSE(store_->load_input("job_001"));
  EXPECT_TRUE(store_->events_after("job_001", 0).empty());
  EXPECT_TRUE(store_->deliveries_for("job_001").empty());
  EXPECT_EQ(store_->due_deliveries(100, 10).size(), 2u);
  for (const char* id : {"job_002", "job_003"}) {
    EXPECT_TRUE(store_->get_job(id));
    EXPECT_TRUE(store_->load_input(id));
    EXPECT_EQ(store_->events_after(id, 0).size(), 1u);
    EXPECT_EQ(store_->deliveries_for(id).size(), 1u);
  }
  EXPECT_EQ(store_->sweep(5000), 0u);
  EXPECT_EQ(store_->sweep(1'000'000), 1u);  // job_002; job_003 and "fresh" are kept
  EXPECT_TRUE(store_->get_job("job_003"));
  EXPECT_EQ(store_->cache_get("fresh", 1'000'000), "v");
}

TEST_P(StoreTest, ReopenKeepsEverything) {
  store_->create_job(make_job(1), "bytes");
  ASSERT_TRUE(store_->mark_running("job_001", 50));
  store_->append_event("job_001", "running", "{}", 50);
  int64_t d = store_->add_delivery(make_delivery("job_001", 10));
  store_->record_attempt(d, 11, 500, "boom", "pending", 20);
  store_->cache_put("k", "v", 1, 0, 10);
  EXPECT_TRUE(store_->writable());
  reopen();
  auto j = store_->get_job("job_001");
  ASSERT_TRUE(j);
  EXPECT_EQ(j->status, JobStatus::running);
  EXPECT_EQ(j->attempts, 1);
  EXPECT_EQ(store_->load_input("job_001"), "bytes");
  EXPECT_EQ(store_->events_after("job_001", 0).size(), 1u);
  EXPECT_EQ(store_->append_event("job_001", "result", "{}", 60), 2);
  auto ds = store_->deliveries_for("job_001");
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0].attempts, 1);
  EXPECT_EQ(ds[0].next_attempt_ms, 20);
  EXPECT_EQ(store_->cache_get("k", 2), "v");
  EXPECT_TRUE(store_->writable());
}

TEST_P(StoreTest, WritableAndCounts) {
  EXPECT_TRUE(store_->writable());
  EXPECT_EQ(store_->count_by_status(), (std::vector<int64_t>{0, 0, 0, 0, 0}));
  store_->create_job(make_job(1), "x");
  store_->create_job(make_job(2), "x");
  ASSERT_TRUE(store_->mark_running("job_002", 1));
  EXPECT_EQ(store_->count_by_status(), (std::vector<int64_t>{1, 1, 0, 0, 0}));
}

TEST_P(StoreTest, ConcurrentAppendsGetGaplessSeqs) {
  store_->create_job(make_job(1), "x");
  std::vector<std::vector<int64_t>> seqs(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        seqs[t].push_back(store_->append_event("job_001", "progress", "{}", i));
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<int64_t> all;
  for (auto& v : seqs) {
    EXPECT_TRUE(std::is_sorted(v.begin(), v.end()));  // each thread sees its own appends in order
    all.insert(v.begin(), v.end());
  }
  ASSERT_EQ(all.size(), 800u);  // no duplicates
  EXPECT_EQ(*all.begin(), 1);
  EXPECT_EQ(*all.rbegin(), 800);  // and no gaps
  EXPECT_EQ(store_->events_after("job_001", 0).size(), 800u);
}

// What "durable before 202" rests on: a job is on disk as soon as create_job() returns, even if
// the process dies right after without closing the database.
TEST_P(StoreTest, JobSurvivesProcessKilledRightAfterCreate) {
  store_.reset();
  for (bool sigkill : {true, false}) {
    std::string id = sigkill ? "job_killed" : "job_exited";
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      try {
        auto s = open();
        JobRecord j = make_job(1);
        j.id = id;
        s->create_job(j, "audio bytes");
        if (sigkill) raise(SIGKILL);
        _exit(0);  // no destructors: the connection is never closed
      } catch (...) {
        _exit(2);  // never fall back into the test runner in the child
      }
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    if (sigkill) {
      ASSERT_TRUE(WIFSIGNALED(status));
      EXPECT_EQ(WTERMSIG(status), SIGKILL);
    } else {
      ASSERT_TRUE(WIFEXITED(status));
      EXPECT_EQ(WEXITSTATUS(status), 0);
    }
    auto s = open();
    auto j = s->get_job(id);
    ASSERT_TRUE(j) << id;
    EXPECT_EQ(j->status, JobStatus::queued);
    EXPECT_EQ(s->load_input(id), "audio bytes");
  }
}

TEST_P(StoreTest, IdempotencyKeysClaimOnceUntilTheyExpire) {
  const IdempotencyClaim first{"hash1", "job_001"}, second{"hash2", "job_002"};
  EXPECT_FALSE(store_->claim_idempotency_key("key_a", "k", first, 1000, 5000));  // claimed
  auto again = store_->claim_idempotency_key("key_a", "k", second, 2000, 6000);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->request_hash, "hash1");
  EXPECT_EQ(again->job_id, "job_001");
  // Per owner: another caller's same key is a different key.
  EXPECT_FALSE(store_->claim_idempotency_key("key_b", "k", second, 2000, 6000));
  // A release names the job it claimed for: another job's release leaves the claim.
  store_->release_idempotency_key("key_a", "k", "job_999");
  EXPECT_TRUE(store_->claim_idempotency_key("key_a", "k", second, 2000, 6000));
  store_->release_idempotency_key("key_a", "k", "job_001");
  EXPECT_FALSE(store_->claim_idempotency_key("key_a", "k", second, 2000, 0));  // free again
  EXPECT_EQ(store_->claim_idempotency_key("key_a", "k", first, 3000, 0)->job_id, "job_002");
  // An expired claim is free again (swept or not).
  EXPECT_FALSE(store_->claim_idempotency_key("key_c", "k", first, 1000, 5000));
  EXPECT_TRUE(store_->claim_idempotency_key("key_c", "k", second, 4999, 0));
  EXPECT_FALSE(store_->claim_idempotency_key("key_c", "k", second, 5000, 0));
  EXPECT_EQ(store_->claim_idempotency_key("key_c", "k", first, 5001, 0)->job_id, "job_002");
  // Keys of any bytes (the Redis store hashes them into its key names).
  const std::string odd = "a:b/c \xc3\xa9 *?";
  EXPECT_FALSE(store_->claim_idempotency_key("key_a", odd, first, 1000, 0));
  EXPECT_EQ(store_->claim_idempotency_key("key_a", odd, second, 1000, 0)->job_id, "job_001");
}

TEST_P(StoreTest, RequeueAndDeliveryLeases) {
  store_->create_job(make_job(1), "x");
  EXPECT_FALSE(store_->requeue("job_001"));  // queued: nothing to do
  ASSERT_TRUE(store_->mark_running("job_001", 10));
  EXPECT_TRUE(store_->requeue("job_001"));
  EXPECT_EQ(store_->get_job("job_001")->status, JobStatus::queued);
  EXPECT_EQ(store_->count_by_status(), (std::vector<int64_t>{1, 0, 0, 0, 0}));
  ASSERT_TRUE(store_->mark_running("job_001", 20));
  EXPECT_EQ(store_->get_job("job_001")->attempts, 2);
  EXPECT_FALSE(store_->requeue("job_missing"));

  const int64_t d = store_->add_delivery(make_delivery("job_001", 1000));
  EXPECT_TRUE(store_->lease_delivery(d, 1000, 60000));
  if (GetParam() == "redis") {  // shared by nodes: a leased delivery is not due again
    EXPECT_FALSE(store_->lease_delivery(d, 1000, 60000));
    EXPECT_TRUE(store_->due_deliveries(2000, 10).empty());
    store_->record_attempt(d, 2000, 500, "boom", "pending", 3000);
    EXPECT_EQ(store_->due_deliveries(3000, 10).size(), 1u);
  }
}

INSTANTIATE_TEST_SUITE_P(Stores, StoreTest, ::testing::Values("sqlite", "redis"),
                         [](const auto& info) { return info.param; });

}  // namespace
