// A small RAII layer over the SQLite C API for the job store (sqlite_store.cpp): owned handles, a
// per-connection cache of prepared statements and a transaction guard. Errors throw StoreError with
// the file's path and sqlite3_errmsg. Not thread-safe: the store serializes all use of a
// connection.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <unordered_map>

#include "job_store.h"

namespace stepaudio::server::sqlite {

struct DbCloser {
  // close_v2: never fails with SQLITE_BUSY over an unfinalized statement (it defers instead).
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

// Bytes bound as a BLOB without a copy (SQLITE_STATIC): the input audio can be tens of MB. The
// string must outlive the statement's execution.
struct BlobRef {
  const std::string& bytes;
};

class Db;

// One use of a cached prepared statement. Going out of scope resets it and clears its bindings, so
// a statement abandoned mid-result never keeps a read transaction (a WAL snapshot) open and never
// points at a freed buffer.
class Stmt {
 public:
  Stmt(const Db& db, sqlite3_stmt* s) : db_(db), s_(s) {}
  ~Stmt() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  // Binds the parameters 1..n in order: integers, text (std::string / const char*) or BlobRef.
  template <class... Args>
  Stmt& bind(const Args&... args) {
    int i = 0;
    (bind_one(++i, args), ...);
    return *this;
  }
  // Steps once: true with a row to read, false when done.
  bool step();
  // Steps to the end (statements that return no rows).
  void run() {
    while (step()) {
    }
  }

  int64_t i64(int col) const { return sqlite3_column_int64(s_, col); }
  std::string text(int col) const {
    auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
    return p ? std::string(p, sqlite3_column_bytes(s_, col)) : std::string();
  }
  std::string blob(int col) const {
    // column_blob before column_bytes (the SQLite docs' order): bytes of the value as a blob.
    auto* p = static_cast<const char*>(sqlite3_column_blob(s_, col));
    return p ? std::string(p, sqlite3_column_bytes(s_, col)) : std::string();
  }

 private:
  template <class T>
  void bind_one(int i, const T& v) {
    int rc;
    if constexpr (std::is_same_v<T, BlobRef>) {
      rc = sqlite3_bind_blob64(s_, i, v.bytes.data(), v.bytes.size(), SQLITE_STATIC);
    } else if constexpr (std::is_integral_v<T>) {
      rc = sqlite3_bind_int64(s_, i, static_cast<sqlite3_int64>(v));
    } else {
      // Text is copied (SQLITE_TRANSIENT): callers pass temporaries.
      const std::string& s = v;
      rc = sqlite3_bind_text64(s_, i, s.data(), s.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
    }
    check_bind(rc);
  }
  void check_bind(int rc) const;

  const Db& db_;
  sqlite3_stmt* s_;
};

class Db {
 public:
  // Opens (creating if needed) the file at `path`; throws StoreError naming it.
  explicit Db(const std::string& path) : path_(path) {
    sqlite3* raw = nullptr;
    int rc =
        sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
    db_.reset(raw);  // open_v2 returns a handle (holding the message) even when it fails
    if (rc != SQLITE_OK) {
      throw StoreError("job store " + path_ +
                       ": cannot open: " + (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
    }
    sqlite3_extended_result_codes(raw, 1);
  }

  // The statement for `sql`, prepared once per connection and reused.
  Stmt prepare(const std::string& sql) {
    auto it = stmts_.find(sql);
    if (it == stmts_.end()) {
      sqlite3_stmt* s = nullptr;
      if (sqlite3_prepare_v3(db_.get(), sql.c_str(), static_cast<int>(sql.size()),
                             SQLITE_PREPARE_PERSISTENT, &s, nullptr) != SQLITE_OK) {
        fail("preparing \"" + sql + "\"");
      }
      it = stmts_.emplace(sql, StmtPtr(s)).first;
    }
    return Stmt(*this, it->second.get());
  }
  // Runs one-off SQL (pragmas, DDL, BEGIN/COMMIT), possibly several statements.
  void exec(const std::string& sql) {
    if (sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
      fail("\"" + sql.substr(0, 60) + (sql.size() > 60 ? "...\"" : "\""));
    }
  }
  // Rows changed by the last INSERT/UPDATE/DELETE (not counting foreign-key cascades).
  int64_t changes() const { return sqlite3_changes64(db_.get()); }
  int64_t last_insert_rowid() const { return sqlite3_last_insert_rowid(db_.get()); }
  sqlite3* raw() const { return db_.get(); }
  const std::string& path() const { return path_; }

  [[noreturn]] void fail(const std::string& what) const {
    throw StoreError("job store " + path_ + ": " + what + ": " + sqlite3_errmsg(db_.get()));
  }

 private:
  std::string path_;
  DbPtr db_;
  // Declared after db_ so that the statements are finalized before the connection closes.
  std::unordered_map<std::string, StmtPtr> stmts_;
};

inline bool Stmt::step() {
  int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  db_.fail(std::string("running \"") + sqlite3_sql(s_) + "\"");
}

inline void Stmt::check_bind(int rc) const {
  if (rc != SQLITE_OK) db_.fail(std::string("binding \"") + sqlite3_sql(s_) + "\"");
}

// A write transaction; rolled back unless commit() succeeded (also after a failed COMMIT).
class Txn {
 public:
  // IMMEDIATE takes the write lock up front: a read-then-write transaction (append_event's
  // max(seq) + 1) then never fails halfway with SQLITE_BUSY_SNAPSHOT when another connection (a
  // second process on the same file) wrote in between; it waits on busy_timeout instead.
  explicit Txn(Db& db) : db_(db) { db_.exec("BEGIN IMMEDIATE"); }
  ~Txn() {
    if (!sqlite3_get_autocommit(db_.raw())) {
      sqlite3_exec(db_.raw(), "ROLLBACK", nullptr, nullptr, nullptr);
    }
  }
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  void commit() { db_.exec("COMMIT"); }

 private:
  Db& db_;
};

}  // namespace stepaudio::server::sqlite
