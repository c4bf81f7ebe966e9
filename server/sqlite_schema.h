// The SQLite job store's schema (sqlite_store.cpp): the tables of each version, applied in order
// by its migrate().
#pragma once

#include <cstdint>

namespace stepaudio::server::sqlite_schema {

// PRAGMA user_version: bump it and add a step to migrate() for every schema change.
constexpr int64_t kSchemaVersion = 2;
// PRAGMA application_id ("SAJS"): tells our database apart from any other SQLite file.
constexpr int64_t kApplicationId = 0x53414A53;

// Version 1. Every column is NOT NULL with "" / 0 for "none", as in JobRecord. Children reference
// jobs ON DELETE CASCADE, so deleting a job (the sweeper) deletes its input, events and deliveries.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE jobs (
  id TEXT PRIMARY KEY,
  owner TEXT NOT NULL,
  status TEXT NOT NULL
    CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
  options_json TEXT NOT NULL,
  audio_url TEXT NOT NULL,
  webhook_url TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  result_json TEXT NOT NULL,
  error_code TEXT NOT NULL,
  error_message TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  started_ms INTEGER NOT NULL,
  finished_ms INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL,
  cache_key TEXT NOT NULL,
  webhook_secret TEXT NOT NULL DEFAULT ''
);
-- list_jobs pages newest first by (created_ms, id): both DESC so that the scan follows the index.
CREATE INDEX jobs_by_owner ON jobs (owner, created_ms DESC, id DESC);
CREATE INDEX jobs_by_status ON jobs (status);
CREATE INDEX jobs_by_expiry ON jobs (expires_ms) WHERE expires_ms > 0;

CREATE TABLE job_inputs (
  job_id TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
  audio BLOB NOT NULL
);

CREATE TABLE events (
  job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  type TEXT NOT NULL,
  data TEXT NOT NULL,
  ts_ms INTEGER NOT NULL,
  PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;

CREATE TABLE deliveries (
  id INTEGER PRIMARY KEY AUTOINCREMENT,  -- ids never reused: a webhook log names them
  job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  url TEXT NOT NULL,
  owner TEXT NOT NULL,
  payload TEXT NOT NULL,
  secret TEXT NOT NULL,  -- the owner's signing secret as of the job's submission
  attempts INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
  next_attempt_ms INTEGER NOT NULL,
  attempts_json TEXT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_ms);
-- deliveries_for, and the cascade from jobs (without it every job delete scans deliveries).
CREATE INDEX deliveries_by_job ON deliveries (job_id);

CREATE TABLE cache (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL,  -- 0 = never
  last_used_ms INTEGER NOT NULL
);
CREATE INDEX cache_by_use ON cache (last_used_ms);
CREATE INDEX cache_by_expiry ON cache (expires_ms) WHERE expires_ms > 0;

-- One row that writable() updates: a real commit, not just a lock.
CREATE TABLE meta (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  probes INTEGER NOT NULL
);
INSERT INTO meta (id, probes) VALUES (1, 0);
)sql";

// Version 2: Idempotency-Key claims (docs/API.md), per owner, swept at their expiry.
constexpr const char* kSchemaV2 = R"sql(
CREATE TABLE idempotency_keys (
  owner TEXT NOT NULL,
  key TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  job_id TEXT NOT NULL,
  expires_ms INTEGER NOT NULL,  -- 0 = never
  PRIMARY KEY (owner, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_by_expiry ON idempotency_keys (expires_ms) WHERE expires_ms > 0;
)sql";

}  // namespace stepaudio::server::sqlite_schema
