#include "server/lease_store.h"

#include <sqlite3.h>

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "util/file.h"
#include "util/status_macros.h"

namespace physpool::server {
namespace {

constexpr int kApplicationId = 0x50505331;  // "PPS1"
constexpr int kSchemaVersion = 1;

// Finalizes a statement when the scope ends.
struct Stmt {
  sqlite3_stmt* s = nullptr;
  ~Stmt() { sqlite3_finalize(s); }
};

}  // namespace

std::string EncodeRuns(const std::vector<pglist::PageRun>& runs) {
  return absl::StrJoin(
      runs, ",", [](std::string* out, const pglist::PageRun& r) {
        absl::StrAppend(out, r.start.value, ":", r.pages.value);
      });
}

absl::StatusOr<std::vector<pglist::PageRun>> DecodeRuns(
    const std::string& text) {
  std::vector<pglist::PageRun> runs;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(part, ':');
    uint64_t start, pages;
    if (!absl::SimpleAtoi(kv.first, &start) ||
        !absl::SimpleAtoi(kv.second, &pages) || pages == 0) {
      return absl::DataLossError(absl::StrCat("bad run \"", part, "\""));
    }
    runs.push_back({pglist::Pfn(start), pglist::PageCount(pages)});
  }
  if (runs.empty()) return absl::DataLossError("a record without runs");
  return runs;
}

absl::StatusOr<std::string> ReadBootId(const std::string& file) {
  absl::StatusOr<std::string> text = ReadFileToString(file, "the boot id");
  if (!text.ok()) return text.status();
  return std::string(absl::StripAsciiWhitespace(*text));
}

absl::Status LeaseStore::Error(const char* what) const {
  return absl::FailedPreconditionError(absl::StrCat(
      "lease store ", path_, ": ", what, ": ", sqlite3_errmsg(db_)));
}

absl::Status LeaseStore::WriteError(const char* what) const {
  return absl::UnavailableError(absl::StrCat("lease store ", path_, ": ", what,
                                             ": ", sqlite3_errmsg(db_)));
}

absl::Status LeaseStore::Step(sqlite3_stmt* s, const char* what) {
  const int rc = sqlite3_step(s);
  absl::Status st = rc == SQLITE_DONE ? absl::OkStatus() : WriteError(what);
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  return st;
}

absl::Status LeaseStore::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    absl::Status s = absl::FailedPreconditionError(
        absl::StrCat("lease store ", path_, ": ",
                     err != nullptr ? err : "error", " (", sql, ")"));
    sqlite3_free(err);
    return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<LeaseStore>> LeaseStore::Open(
    const std::string& path, const std::string& boot_id,
    const std::string& layout) {
  std::unique_ptr<LeaseStore> st(new LeaseStore());
  st->path_ = path;
  if (sqlite3_open_v2(
          path.c_str(), &st->db_,
          SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOFOLLOW,
          nullptr) != SQLITE_OK) {
    return st->Error("cannot open");
  }
  sqlite3_busy_timeout(st->db_, 2000);
  // A file that is not SQLite fails here ("file is not a database").
  int app = 0;
  bool empty = false;
  {
    Stmt q;
    if (sqlite3_prepare_v2(st->db_, "PRAGMA application_id", -1, &q.s,
                           nullptr) != SQLITE_OK ||
        sqlite3_step(q.s) != SQLITE_ROW) {
      return st->Error("damaged or not a database");
    }
    app = sqlite3_column_int(q.s, 0);
    Stmt tables;
    if (sqlite3_prepare_v2(st->db_, "SELECT count(*) FROM sqlite_master", -1,
                           &tables.s, nullptr) != SQLITE_OK ||
        sqlite3_step(tables.s) != SQLITE_ROW) {
      return st->Error("damaged or not a database");
    }
    empty = sqlite3_column_int(tables.s, 0) == 0;
  }
  if (!empty && app != kApplicationId) {
    return absl::FailedPreconditionError(absl::StrCat(
        "lease store ", path, ": not a physpool lease store (application_id ",
        app, "); refusing to touch it"));
  }
  RETURN_IF_ERROR(st->Exec("PRAGMA journal_mode=WAL"));
  RETURN_IF_ERROR(st->Exec("PRAGMA synchronous=NORMAL"));
  if (empty) {
    RETURN_IF_ERROR(st->Exec(
        "BEGIN;"
        "PRAGMA application_id=1347441457;"
        "PRAGMA user_version=1;"
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE leases(id TEXT PRIMARY KEY, tenant TEXT NOT NULL, runs "
        "TEXT NOT NULL,"
        " preemptible INTEGER NOT NULL, expires_ms INTEGER NOT NULL, ttl_s "
        "INTEGER NOT NULL,"
        " path TEXT NOT NULL, label TEXT NOT NULL);"
        "CREATE TABLE scrubs(row INTEGER PRIMARY KEY, runs TEXT NOT NULL);"
        "COMMIT;"));
  }
  Stmt version;
  sqlite3_prepare_v2(st->db_, "PRAGMA user_version", -1, &version.s, nullptr);
  sqlite3_step(version.s);
  if (sqlite3_column_int(version.s, 0) != kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "lease store ", path, ": schema version ",
        sqlite3_column_int(version.s, 0), " is not ", kSchemaVersion));
  }
  // Added after schema 1 shipped; additive (a table, columns with
  // defaults), so created in place: an older daemon ignores them.
  RETURN_IF_ERROR(st->Exec(
      "CREATE TABLE IF NOT EXISTS segments(iova INTEGER PRIMARY KEY, bytes "
      "INTEGER NOT NULL, freelist INTEGER NOT NULL, numa INTEGER NOT NULL, "
      "path TEXT NOT NULL)"));
  // Columns added after schema 1 shipped (with defaults: older rows and an
  // older daemon are fine).
  auto has_column = [&st](const char* table, const char* column) {
    Stmt cols;
    if (sqlite3_prepare_v2(
            st->db_, absl::StrCat("PRAGMA table_info(", table, ")").c_str(), -1,
            &cols.s, nullptr) != SQLITE_OK) {
      return false;
    }
    while (sqlite3_step(cols.s) == SQLITE_ROW) {
      if (std::string(reinterpret_cast<const char*>(
              sqlite3_column_text(cols.s, 1))) == column) {
        return true;
      }
    }
    return false;
  };
  if (!has_column("leases", "request_id")) {
    RETURN_IF_ERROR(st->Exec(
        "BEGIN;"
        "ALTER TABLE leases ADD COLUMN request_id TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE leases ADD COLUMN request_fp TEXT NOT NULL DEFAULT '';"
        "COMMIT;"));
  }
  if (!has_column("leases", "access_sha")) {
    RETURN_IF_ERROR(st->Exec(
        "ALTER TABLE leases ADD COLUMN access_sha TEXT NOT NULL DEFAULT ''"));
  }
  if (!has_column("scrubs", "lease")) {
    RETURN_IF_ERROR(st->Exec(
        "ALTER TABLE scrubs ADD COLUMN lease TEXT NOT NULL DEFAULT ''"));
  }
  if (!has_column("scrubs", "tenant")) {
    RETURN_IF_ERROR(st->Exec(
        "ALTER TABLE scrubs ADD COLUMN tenant TEXT NOT NULL DEFAULT ''"));
  }
  // The boot id and layout it was written for.
  std::string stored_boot, stored_layout;
  {
    Stmt m;
    if (sqlite3_prepare_v2(st->db_, "SELECT key, value FROM meta", -1, &m.s,
                           nullptr) != SQLITE_OK) {
      return st->Error("damaged (meta)");
    }
    while (sqlite3_step(m.s) == SQLITE_ROW) {
      const std::string k =
          reinterpret_cast<const char*>(sqlite3_column_text(m.s, 0));
      const std::string v =
          reinterpret_cast<const char*>(sqlite3_column_text(m.s, 1));
      if (k == "boot_id") stored_boot = v;
      if (k == "layout") stored_layout = v;
    }
  }
  const bool same_boot = stored_boot == boot_id;
  if (!same_boot) {
    // After a host reboot the memory and every lease on it are gone.
    Stmt n;
    sqlite3_prepare_v2(st->db_, "SELECT count(*) FROM leases", -1, &n.s,
                       nullptr);
    if (sqlite3_step(n.s) == SQLITE_ROW)
      st->voided_ = sqlite3_column_int64(n.s, 0);
    RETURN_IF_ERROR(
        st->Exec("BEGIN; DELETE FROM leases; DELETE FROM scrubs; COMMIT;"));
  }
  // Load what survives.
  {
    Stmt l;
    if (sqlite3_prepare_v2(st->db_,
                           "SELECT id, tenant, runs, preemptible, expires_ms, "
                           "ttl_s, path, label, request_id, request_fp, "
                           "access_sha FROM leases",
                           -1, &l.s, nullptr) != SQLITE_OK) {
      return st->Error("damaged (leases)");
    }
    while (sqlite3_step(l.s) == SQLITE_ROW) {
      StoredLease s;
      s.id = reinterpret_cast<const char*>(sqlite3_column_text(l.s, 0));
      s.tenant = reinterpret_cast<const char*>(sqlite3_column_text(l.s, 1));
      auto runs = DecodeRuns(
          reinterpret_cast<const char*>(sqlite3_column_text(l.s, 2)));
      if (!runs.ok()) {
        return absl::FailedPreconditionError(
            absl::StrCat("lease store ", path, ": damaged lease ", s.id, ": ",
                         runs.status().message()));
      }
      s.runs = *std::move(runs);
      s.preemptible = sqlite3_column_int(l.s, 3) != 0;
      s.expires_unix_ms = sqlite3_column_int64(l.s, 4);
      s.ttl_seconds = sqlite3_column_int64(l.s, 5);
      s.path = reinterpret_cast<const char*>(sqlite3_column_text(l.s, 6));
      s.label = reinterpret_cast<const char*>(sqlite3_column_text(l.s, 7));
      s.request_id = reinterpret_cast<const char*>(sqlite3_column_text(l.s, 8));
      s.request_fp = reinterpret_cast<const char*>(sqlite3_column_text(l.s, 9));
      s.access_sha256 =
          reinterpret_cast<const char*>(sqlite3_column_text(l.s, 10));
      st->leases_.push_back(std::move(s));
    }
    Stmt sc;
    if (sqlite3_prepare_v2(st->db_,
                           "SELECT row, runs, lease, tenant FROM scrubs", -1,
                           &sc.s, nullptr) != SQLITE_OK) {
      return st->Error("damaged (scrubs)");
    }
    while (sqlite3_step(sc.s) == SQLITE_ROW) {
      auto runs = DecodeRuns(
          reinterpret_cast<const char*>(sqlite3_column_text(sc.s, 1)));
      if (!runs.ok())
        return absl::FailedPreconditionError("lease store: damaged scrub row");
      st->scrubs_.push_back(
          {sqlite3_column_int64(sc.s, 0), *std::move(runs),
           reinterpret_cast<const char*>(sqlite3_column_text(sc.s, 2)),
           reinterpret_cast<const char*>(sqlite3_column_text(sc.s, 3))});
      st->next_scrub_row_ =
          std::max(st->next_scrub_row_, st->scrubs_.back().row + 1);
    }
  }
  {
    Stmt sg;
    if (sqlite3_prepare_v2(st->db_,
                           "SELECT iova, bytes, freelist, numa, path FROM "
                           "segments ORDER BY iova",
                           -1, &sg.s, nullptr) != SQLITE_OK) {
      return st->Error("damaged (segments)");
    }
    while (sqlite3_step(sg.s) == SQLITE_ROW) {
      StoredSegment s;
      s.iova = static_cast<uint64_t>(sqlite3_column_int64(sg.s, 0));
      s.bytes = static_cast<uint64_t>(sqlite3_column_int64(sg.s, 1));
      s.freelist = static_cast<uint32_t>(sqlite3_column_int64(sg.s, 2));
      s.numa = static_cast<int32_t>(sqlite3_column_int64(sg.s, 3));
      s.path = reinterpret_cast<const char*>(sqlite3_column_text(sg.s, 4));
      st->segments_.push_back(std::move(s));
    }
  }
  if (same_boot && stored_layout != layout &&
      (!st->leases_.empty() || !st->scrubs_.empty())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "lease store ", path, ": written for another segment layout (",
        stored_layout, ") while ", st->leases_.size(),
        " leases are live; restore the old layout, or delete the store to drop "
        "them"));
  }
  {
    Stmt m;
    sqlite3_prepare_v2(st->db_,
                       "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)",
                       -1, &m.s, nullptr);
    for (auto [k, v] :
         {std::pair{"boot_id", boot_id}, std::pair{"layout", layout}}) {
      sqlite3_reset(m.s);
      sqlite3_bind_text(m.s, 1, k, -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(m.s, 2, v.c_str(), -1, SQLITE_TRANSIENT);
      if (sqlite3_step(m.s) != SQLITE_DONE) return st->Error("writing meta");
    }
  }
  const struct {
    sqlite3_stmt** stmt;
    const char* sql;
  } prepared[] = {
      {&st->put_,
       "INSERT OR REPLACE INTO leases(id, tenant, runs, preemptible, "
       "expires_ms, ttl_s, path, label, request_id, request_fp, access_sha)"
       " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"},
      {&st->expiry_,
       "UPDATE leases SET expires_ms = ?, ttl_s = ? WHERE id = ?"},
      {&st->delete_lease_, "DELETE FROM leases WHERE id = ?"},
      {&st->add_scrub_,
       "INSERT INTO scrubs(row, runs, lease, tenant) VALUES(?, ?, ?, ?)"},
      {&st->scrub_done_, "DELETE FROM scrubs WHERE row = ?"},
      {&st->put_segment_,
       "INSERT OR REPLACE INTO segments(iova, bytes, freelist, numa, path) "
       "VALUES(?, ?, ?, ?, ?)"},
      {&st->delete_segment_, "DELETE FROM segments WHERE iova = ?"},
      {&st->begin_, "BEGIN"},
      {&st->commit_, "COMMIT"},
      {&st->savepoint_, "SAVEPOINT change"},
      {&st->release_, "RELEASE change"},
  };
  for (const auto& p : prepared) {
    if (sqlite3_prepare_v2(st->db_, p.sql, -1, p.stmt, nullptr) != SQLITE_OK) {
      return st->Error("preparing statements");
    }
  }
  return st;
}

LeaseStore::~LeaseStore() {
  for (sqlite3_stmt* s :
       {put_, expiry_, delete_lease_, add_scrub_, scrub_done_, put_segment_,
        delete_segment_, begin_, commit_, savepoint_, release_}) {
    sqlite3_finalize(s);
  }
  if (db_ != nullptr) {
    sqlite3_exec(db_, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr,
                 nullptr);
    sqlite3_close(db_);
  }
}

absl::Status LeaseStore::Begin() { return Step(begin_, "BEGIN"); }

absl::Status LeaseStore::Commit() {
  absl::Status s = Step(commit_, "COMMIT");
  if (!s.ok()) Rollback();
  return s;
}

bool LeaseStore::InTransaction() const {
  return sqlite3_get_autocommit(db_) == 0;
}

void LeaseStore::Rollback() {
  if (!sqlite3_get_autocommit(db_))
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
}

absl::Status LeaseStore::Savepoint() { return Step(savepoint_, "SAVEPOINT"); }

absl::Status LeaseStore::Release() { return Step(release_, "RELEASE"); }

void LeaseStore::RollbackTo() {
  sqlite3_exec(db_, "ROLLBACK TO change; RELEASE change", nullptr, nullptr,
               nullptr);
}

absl::Status LeaseStore::PutLease(const StoredLease& l) {
  const std::string runs = EncodeRuns(l.runs);
  sqlite3_bind_text(put_, 1, l.id.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(put_, 2, l.tenant.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(put_, 3, runs.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int(put_, 4, l.preemptible ? 1 : 0);
  sqlite3_bind_int64(put_, 5, l.expires_unix_ms);
  sqlite3_bind_int64(put_, 6, l.ttl_seconds);
  sqlite3_bind_text(put_, 7, l.path.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(put_, 8, l.label.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(put_, 9, l.request_id.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(put_, 10, l.request_fp.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(put_, 11, l.access_sha256.c_str(), -1, SQLITE_TRANSIENT);
  return Step(put_, "writing a lease");
}

absl::Status LeaseStore::SetExpiry(const std::string& id,
                                   int64_t expires_unix_ms,
                                   int64_t ttl_seconds) {
  sqlite3_bind_int64(expiry_, 1, expires_unix_ms);
  sqlite3_bind_int64(expiry_, 2, ttl_seconds);
  sqlite3_bind_text(expiry_, 3, id.c_str(), -1, SQLITE_TRANSIENT);
  return Step(expiry_, "renewing a lease");
}

absl::Status LeaseStore::DeleteLease(const std::string& id) {
  sqlite3_bind_text(delete_lease_, 1, id.c_str(), -1, SQLITE_TRANSIENT);
  return Step(delete_lease_, "ending a lease");
}

absl::Status LeaseStore::AddScrub(int64_t row,
                                  const std::vector<pglist::PageRun>& runs,
                                  const std::string& lease,
                                  const std::string& tenant) {
  const std::string text = EncodeRuns(runs);
  sqlite3_bind_int64(add_scrub_, 1, row);
  sqlite3_bind_text(add_scrub_, 2, text.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(add_scrub_, 3, lease.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(add_scrub_, 4, tenant.c_str(), -1, SQLITE_TRANSIENT);
  return Step(add_scrub_, "recording memory to zero");
}

absl::Status LeaseStore::ScrubDone(int64_t row) {
  sqlite3_bind_int64(scrub_done_, 1, row);
  return Step(scrub_done_, "finishing a scrub");
}

absl::Status LeaseStore::Probe() {
  if (sqlite3_exec(db_,
                   "INSERT OR REPLACE INTO meta(key, value) VALUES("
                   "'write_probe', strftime('%s', 'now'))",
                   nullptr, nullptr, nullptr) != SQLITE_OK) {
    return WriteError("probing");
  }
  return absl::OkStatus();
}

absl::Status LeaseStore::PutSegment(const StoredSegment& s) {
  sqlite3_bind_int64(put_segment_, 1, static_cast<int64_t>(s.iova));
  sqlite3_bind_int64(put_segment_, 2, static_cast<int64_t>(s.bytes));
  sqlite3_bind_int64(put_segment_, 3, s.freelist);
  sqlite3_bind_int64(put_segment_, 4, s.numa);
  sqlite3_bind_text(put_segment_, 5, s.path.c_str(), -1, SQLITE_TRANSIENT);
  return Step(put_segment_, "recording a segment");
}

absl::Status LeaseStore::DeleteSegment(uint64_t iova) {
  sqlite3_bind_int64(delete_segment_, 1, static_cast<int64_t>(iova));
  return Step(delete_segment_, "forgetting a segment");
}

}  // namespace physpool::server
