// SPDX-License-Identifier: Apache-2.0
// LeaseStore::Open: creating a store, checking that an existing file is a
// whole, valid one, and loading it (lease_store.h). Everything here fails
// closed: a file that exists is either read whole or refused, never taken
// for an empty or a smaller store.
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/store/lease_store.h"
#include "util/errno_status.h"
#include "util/status_macros.h"

namespace physpool::server {
namespace {

constexpr int kApplicationId = 0x50505331;  // "PPS1"
constexpr int kSchemaVersion = 1;
constexpr char kWhatToDo[] =
    "physpoold will not start with part of a store: restore a good copy, or "
    "move the file (and its -wal) away to start empty, losing every lease in "
    "it (docs/operations.md, \"A damaged store\")";

// Finalizes a statement when the scope ends.
struct Stmt {
  sqlite3_stmt* s = nullptr;
  ~Stmt() { sqlite3_finalize(s); }
};

// What an SQLite result code means for a store being read.
const char* Kind(int rc) {
  switch (rc & 0xff) {
    case SQLITE_CORRUPT:
      return "damaged";
    case SQLITE_NOTADB:
      return "not a database";
    case SQLITE_IOERR:
      return "I/O error";
    case SQLITE_CANTOPEN:
      return "cannot open";
    case SQLITE_PERM:
    case SQLITE_AUTH:
    case SQLITE_READONLY:
      return "not writable";
    case SQLITE_FULL:
      return "disk full";
    default:
      return "cannot read";
  }
}

// fsync of a file or directory by path.
absl::Status SyncPath(const std::string& path, int flags) {
  const int fd = open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(absl::StrCat("open ", path), errno);
  const int rc = fsync(fd);
  const int err = errno;
  close(fd);
  if (rc != 0) return ErrnoStatus(absl::StrCat("fsync ", path), err);
  return absl::OkStatus();
}

// Reads the whole file once: an I/O error is named as one (SQLite reports
// a page it could not read as "malformed", like a damaged one). NOT_FOUND
// for a missing file (a -wal that is not there).
absl::Status ReadWhole(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return ErrnoStatus(absl::StrCat("open ", path), errno);
  std::vector<char> buf(1 << 20);
  off_t at = 0;
  absl::Status s;
  for (;;) {
    const ssize_t n = pread(fd, buf.data(), buf.size(), at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      s = absl::DataLossError(absl::StrCat("reading ", path, " at byte ", at,
                                           ": ", strerror(errno)));
    }
    if (n <= 0) break;
    at += n;
  }
  close(fd);
  return s;
}

std::string DirOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

absl::Status LeaseStore::Refuse(absl::string_view what, int rc) const {
  // The errno of the VFS call that failed, if one did: SQLite reports a
  // page it could not read at all as damaged (SQLITE_CORRUPT) as well.
  const int err = db_ != nullptr ? sqlite3_system_errno(db_) : 0;
  return absl::FailedPreconditionError(absl::StrCat(
      "lease store ", path_, ": ", err != 0 ? "I/O error" : Kind(rc), " (",
      what, ": ", db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc),
      err != 0 ? absl::StrCat("; the system said: ", strerror(err)) : "", "); ",
      kWhatToDo));
}

absl::StatusOr<std::string> LeaseStore::TextColumn(sqlite3_stmt* q, int col) {
  const unsigned char* t = sqlite3_column_text(q, col);
  if (t == nullptr) {
    return absl::DataLossError(
        absl::StrCat("column ", sqlite3_column_name(q, col), " is NULL"));
  }
  return std::string(reinterpret_cast<const char*>(t));
}

absl::Status LeaseStore::EachRow(
    const char* sql, const char* what,
    absl::FunctionRef<absl::Status(sqlite3_stmt*)> row) {
  Stmt q;
  int rc = sqlite3_prepare_v2(db_, sql, -1, &q.s, nullptr);
  if (rc != SQLITE_OK) return Refuse(what, rc);
  while ((rc = sqlite3_step(q.s)) == SQLITE_ROW) {
    if (absl::Status s = row(q.s); !s.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("lease store ", path_, ": damaged (", what, ": ",
                       s.message(), "); ", kWhatToDo));
    }
  }
  // Anything but the end of the rows (a damaged page, an I/O error) fails:
  // a loop that stopped early would read a smaller store.
  if (rc != SQLITE_DONE) return Refuse(what, rc);
  return absl::OkStatus();
}

absl::Status LeaseStore::Create(const std::string& path) {
  // A WAL without its database holds commits that a new file would take as
  // its own (or lose): the store was deleted in part.
  for (const char* suffix : {"-wal", "-journal"}) {
    struct stat st;
    const std::string side = path + suffix;
    if (lstat(side.c_str(), &st) == 0 && st.st_size > 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "lease store ", path, ": missing, but ", side, " (", st.st_size,
          " bytes) is there: the store was deleted in part, and its leases "
          "may be in that file; restore the store, or move ",
          side,
          " away to start empty (docs/operations.md, \"A damaged store\")"));
    }
  }
  // Made whole under another name, then renamed: a crash leaves no file or
  // a complete store, so an existing file is never a half-made one.
  const std::string tmp = path + ".new";
  unlink(tmp.c_str());  // a creation that crashed: never a store
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(
      tmp.c_str(), &db,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOFOLLOW,
      nullptr);
  char* err = nullptr;
  if (rc == SQLITE_OK) {
    rc = sqlite3_exec(
        db,
        absl::StrCat(
            "BEGIN;"
            "PRAGMA application_id=",
            kApplicationId, ";PRAGMA user_version=", kSchemaVersion,
            ";"
            "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "CREATE TABLE leases(id TEXT PRIMARY KEY, tenant TEXT NOT NULL,"
            " runs TEXT NOT NULL, preemptible INTEGER NOT NULL,"
            " expires_ms INTEGER NOT NULL, ttl_s INTEGER NOT NULL,"
            " path TEXT NOT NULL, label TEXT NOT NULL);"
            "CREATE TABLE scrubs(row INTEGER PRIMARY KEY, runs TEXT NOT NULL);"
            "COMMIT;")
            .c_str(),
        nullptr, nullptr, &err);
  }
  const std::string why = err != nullptr  ? err
                          : db != nullptr ? sqlite3_errmsg(db)
                                          : sqlite3_errstr(rc);
  sqlite3_free(err);
  sqlite3_close(db);
  absl::Status s;
  if (rc != SQLITE_OK) {
    s = absl::FailedPreconditionError(
        absl::StrCat("lease store ", path, ": cannot create it: ", why));
  }
  if (s.ok()) s = SyncPath(tmp, O_RDONLY);
  if (s.ok() && rename(tmp.c_str(), path.c_str()) != 0) {
    s = ErrnoStatus(absl::StrCat("rename ", tmp, " to ", path), errno);
  }
  if (s.ok()) s = SyncPath(DirOf(path), O_RDONLY | O_DIRECTORY);
  if (!s.ok()) {
    unlink(tmp.c_str());
    return absl::FailedPreconditionError(absl::StrCat(
        "lease store ", path, ": cannot create it: ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status LeaseStore::Check(StoreCheck check) {
  for (const std::string& file : {path_, path_ + "-wal"}) {
    absl::Status read = ReadWhole(file);
    if (!read.ok() && !absl::IsNotFound(read)) {
      return absl::FailedPreconditionError(
          absl::StrCat("lease store ", path_, ": I/O error (", read.message(),
                       "); ", kWhatToDo));
    }
  }
  int app = 0, version = 0, tables = 0;
  RETURN_IF_ERROR(
      EachRow("PRAGMA application_id", "the header", [&](sqlite3_stmt* q) {
        app = sqlite3_column_int(q, 0);
        return absl::OkStatus();
      }));
  RETURN_IF_ERROR(
      EachRow("PRAGMA user_version", "the header", [&](sqlite3_stmt* q) {
        version = sqlite3_column_int(q, 0);
        return absl::OkStatus();
      }));
  RETURN_IF_ERROR(EachRow("SELECT count(*) FROM sqlite_master", "the schema",
                          [&](sqlite3_stmt* q) {
                            tables = sqlite3_column_int(q, 0);
                            return absl::OkStatus();
                          }));
  if (app != kApplicationId) {
    return absl::FailedPreconditionError(absl::StrCat(
        "lease store ", path_, ": not a physpool lease store (application_id ",
        app, tables == 0 ? ", an empty database" : "",
        "); refusing to touch it: physpoold creates its store itself and "
        "never takes an existing file for a new one; point store.path at "
        "another file or move this one away"));
  }
  if (version > kSchemaVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("lease store ", path_, ": schema version ", version,
                     ", written by a newer physpoold (this one reads version ",
                     kSchemaVersion,
                     "); run that version, or restore a store this one wrote"));
  }
  if (version != kSchemaVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("lease store ", path_, ": schema version ", version,
                     " is not ", kSchemaVersion, "; ", kWhatToDo));
  }
  if (check == StoreCheck::kNone) return absl::OkStatus();
  // Every page of every table and index: a damaged page anywhere (a lease
  // row, the index that finds it) refuses the start.
  std::vector<std::string> problems;
  RETURN_IF_ERROR(EachRow(check == StoreCheck::kFull
                              ? "PRAGMA integrity_check(20)"
                              : "PRAGMA quick_check(20)",
                          "checking it", [&](sqlite3_stmt* q) {
                            ASSIGN_OR_RETURN(std::string m, TextColumn(q, 0));
                            if (m != "ok") problems.push_back(std::move(m));
                            return absl::OkStatus();
                          }));
  if (!problems.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("lease store ", path_, ": damaged (",
                     check == StoreCheck::kFull ? "PRAGMA integrity_check"
                                                : "PRAGMA quick_check",
                     ": ", absl::StrJoin(problems, "; "), "); ", kWhatToDo));
  }
  return absl::OkStatus();
}

absl::Status LeaseStore::Migrate() {
  // Added after schema 1 shipped; additive (a table, columns with
  // defaults), so made in place: an older daemon ignores them.
  RETURN_IF_ERROR(Exec(
      "CREATE TABLE IF NOT EXISTS segments(iova INTEGER PRIMARY KEY, bytes "
      "INTEGER NOT NULL, freelist INTEGER NOT NULL, numa INTEGER NOT NULL, "
      "path TEXT NOT NULL)"));
  std::set<std::string> columns;
  for (const char* table : {"leases", "scrubs"}) {
    RETURN_IF_ERROR(
        EachRow(absl::StrCat("PRAGMA table_info(", table, ")").c_str(),
                "the schema", [&](sqlite3_stmt* q) {
                  ASSIGN_OR_RETURN(std::string c, TextColumn(q, 1));
                  columns.insert(absl::StrCat(table, ".", c));
                  return absl::OkStatus();
                }));
  }
  const struct {
    const char* column;
    const char* sql;
  } added[] = {
      {"leases.request_id",
       "ALTER TABLE leases ADD COLUMN request_id TEXT NOT NULL DEFAULT ''"},
      {"leases.request_fp",
       "ALTER TABLE leases ADD COLUMN request_fp TEXT NOT NULL DEFAULT ''"},
      {"leases.access_sha",
       "ALTER TABLE leases ADD COLUMN access_sha TEXT NOT NULL DEFAULT ''"},
      {"scrubs.lease",
       "ALTER TABLE scrubs ADD COLUMN lease TEXT NOT NULL DEFAULT ''"},
      {"scrubs.tenant",
       "ALTER TABLE scrubs ADD COLUMN tenant TEXT NOT NULL DEFAULT ''"},
  };
  for (const auto& a : added) {
    if (!columns.count(a.column)) RETURN_IF_ERROR(Exec(a.sql));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<LeaseStore>> LeaseStore::Open(
    const std::string& path, const std::string& boot_id,
    const std::string& layout, StoreCheck check) {
  std::unique_ptr<LeaseStore> st(new LeaseStore());
  st->path_ = path;
  struct stat sb;
  if (lstat(path.c_str(), &sb) != 0) {
    if (errno != ENOENT) {
      return absl::FailedPreconditionError(absl::StrCat(
          "lease store ", path, ": ", ErrnoStatus("lstat", errno).message()));
    }
    RETURN_IF_ERROR(Create(path));
  } else if (!S_ISREG(sb.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("lease store ", path,
                     ": not a regular file (a link, a directory or a device); "
                     "refusing to use it"));
  }
  // Never created here: the file exists (it was checked, or made above).
  const int rc =
      sqlite3_open_v2(path.c_str(), &st->db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW, nullptr);
  if (rc != SQLITE_OK) return st->Refuse("opening it", rc);
  sqlite3_busy_timeout(st->db_, 2000);
  RETURN_IF_ERROR(st->Check(check));
  RETURN_IF_ERROR(st->Exec("PRAGMA journal_mode=WAL"));
  RETURN_IF_ERROR(st->Exec("PRAGMA synchronous=NORMAL"));
  RETURN_IF_ERROR(st->Migrate());
  RETURN_IF_ERROR(st->Load(boot_id, layout));
  RETURN_IF_ERROR(st->Prepare());
  return st;
}

}  // namespace physpool::server
