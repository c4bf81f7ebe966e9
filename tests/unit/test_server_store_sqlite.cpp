// SQLite-only checks of the job store (server/sqlite_store.cpp): the file format, foreign files,
// schema versions, the busy timeout and the ON DELETE CASCADE of child rows. The contract both
// stores share is tested in test_server_store.cpp.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "server/job_store.h"

using namespace stepaudio::server;

namespace {

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sa_store_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/jobs.db";
    store_ = open_sqlite_store(path_);
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::string dir_, path_;
  std::unique_ptr<JobStore> store_;
};

JobRecord make_job(int n) {
  JobRecord j;
  j.id = "job_00" + std::to_string(n);
  j.owner = "key_a";
  j.options_json = R"({"task":"asr"})";
  j.created_ms = 1000;
  return j;
}

TEST_F(SqliteStoreTest, SweepCascadesChildRows) {
  for (int i = 1; i <= 2; ++i) {
    store_->create_job(make_job(i), "audio");
    store_->append_event(make_job(i).id, "queued", "{}", 1);
    WebhookDelivery d;
    d.job_id = make_job(i).id;
    d.url = "https://example.com/hook";
    d.state = "pending";
    store_->add_delivery(d);
  }
  ASSERT_TRUE(store_->finish_job("job_001", JobStatus::succeeded, "{}", "", "", 100, 5000));
  EXPECT_EQ(store_->sweep(5000), 1u);
  // Raw check that the cascade really removed the child rows.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  for (const char* table : {"job_inputs", "events", "deliveries"}) {
    sqlite3_stmt* s = nullptr;
    std::string sql = std::string("SELECT count(*) FROM ") + table;
    ASSERT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
    EXPECT_EQ(sqlite3_column_int(s, 0), 1) << table;
    sqlite3_finalize(s);
  }
  sqlite3_close(db);
}

TEST_F(SqliteStoreTest, NonDatabaseFileThrowsNamingThePath) {
  std::string bad = dir_ + "/garbage.db";
  {
    std::mt19937 rng(42);
    std::ofstream f(bad, std::ios::binary);
    for (int i = 0; i < 8192; ++i) f.put(static_cast<char>(rng()));
  }
  try {
    open_sqlite_store(bad);
    FAIL() << "opened a file of random bytes";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("file is not a database"), std::string::npos) << e.what();
  }
}

TEST_F(SqliteStoreTest, MissingDirectoryThrowsNamingThePath) {
  std::string p = dir_ + "/no/such/dir/jobs.db";
  try {
    open_sqlite_store(p);
    FAIL();
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

// Runs one SQL statement on a file with the plain C API (as another tool would).
void raw_exec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
}

TEST_F(SqliteStoreTest, NewerSchemaOrForeignDatabaseThrows) {
  store_.reset();
  raw_exec(path_, "PRAGMA user_version = 3");
  try {
    open_sqlite_store(path_);
    FAIL();
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find(path_), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("newer"), std::string::npos) << e.what();
  }

  std::string other = dir_ + "/other.db";
  raw_exec(other, "CREATE TABLE t (x)");
  EXPECT_THROW(open_sqlite_store(other), StoreError);
  std::string other2 = dir_ + "/other2.db";
  raw_exec(other2, "PRAGMA user_version = 1");  // our version number, not our application_id
  EXPECT_THROW(open_sqlite_store(other2), StoreError);
}

TEST_F(SqliteStoreTest, MigratesAVersion1File) {
  store_->create_job(make_job(1), "x");
  store_.reset();
  // A file as version 1 left it: no idempotency_keys table.
  raw_exec(path_, "DROP TABLE idempotency_keys; PRAGMA user_version = 1");
  store_ = open_sqlite_store(path_);
  EXPECT_TRUE(store_->get_job("job_001"));
  EXPECT_FALSE(store_->claim_idempotency_key("key_a", "k", {"h", "job_001"}, 1, 0));
  EXPECT_EQ(store_->claim_idempotency_key("key_a", "k", {"h2", "job_002"}, 2, 0)->job_id,
            "job_001");
}

TEST_F(SqliteStoreTest, NotWritableWhileAnotherConnectionHoldsTheLock) {
  EXPECT_TRUE(store_->writable());
  // Another connection holding the write lock past the busy timeout: not writable, no throw.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(store_->writable());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::seconds(4));  // busy_timeout 5 s
  sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  EXPECT_TRUE(store_->writable());
}

// The WAL's length in pages, as another connection sees it (a PASSIVE checkpoint that copies what
// it can and reports the log size).
int wal_frames(const std::string& path) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  EXPECT_EQ(sqlite3_exec(db, "PRAGMA journal_mode = WAL", nullptr, nullptr, nullptr), SQLITE_OK);
  int frames = -1, copied = -1;
  EXPECT_EQ(sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, &frames, &copied),
            SQLITE_OK);
  sqlite3_close(db);
  return frames;
}

TEST_F(SqliteStoreTest, CheckpointLetsTheNextCommitRewindTheWal) {
  // ~5,600 pages of commits: past the 1000 pages at which checkpoint() makes sure of a rewind.
  const std::string result(8000, 'r');
  for (int i = 0; i < 600; ++i) {
    JobRecord j = make_job(1000 + i);
    j.status = JobStatus::succeeded;
    j.result_json = result;
    store_->create_job(j, "", /*durable=*/false);
  }
  store_->checkpoint();
  store_->create_job(make_job(1), "audio");  // this commit starts the WAL from its beginning
  // Without the rewind the log would hold every page written above (> 1000): the autocheckpoint
  // backstop would later copy it all inside some request.
  EXPECT_LT(wal_frames(path_), 20);
}

}  // namespace
