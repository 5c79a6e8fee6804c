// SPDX-License-Identifier: Apache-2.0
// Test-only access to a lease store's SQLite file through a connection of
// its own, as an operator's `sqlite3` or a second process would reach it:
// reading what the LeaseStore wrote, and injecting write faults.
//
// Thread safety: none; each call opens and closes its own connection.
#ifndef PHYSPOOL_SERVER_STORE_TESTING_STORE_FILE_H_
#define PHYSPOOL_SERVER_STORE_TESTING_STORE_FILE_H_

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace physpool::testing {

class StoreFile {
 public:
  explicit StoreFile(std::string path) : path_(std::move(path)) {}

  // Runs `sql` (one or more statements) on the file.
  absl::Status Sql(const std::string& sql) const {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) !=
        SQLITE_OK) {
      sqlite3_close(db);
      return absl::InternalError("cannot open the store");
    }
    sqlite3_busy_timeout(db, 5000);
    char* error = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
    absl::Status s = rc == SQLITE_OK
                         ? absl::OkStatus()
                         : absl::InternalError(error ? error : "sqlite");
    sqlite3_free(error);
    sqlite3_close(db);
    return s;
  }

  // The integers of column 0 of `query`; none if the file cannot be read.
  std::vector<int64_t> Ints(const std::string& query) const {
    std::vector<int64_t> out;
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) ==
        SQLITE_OK) {
      sqlite3_stmt* q = nullptr;
      if (sqlite3_prepare_v2(db, query.c_str(), -1, &q, nullptr) == SQLITE_OK) {
        while (sqlite3_step(q) == SQLITE_ROW)
          out.push_back(sqlite3_column_int64(q, 0));
      }
      sqlite3_finalize(q);
    }
    sqlite3_close(db);
    return out;
  }

  // Makes the store refuse every `what` ("INSERT ON scrubs", "DELETE ON
  // leases", "INSERT ON meta": the probe, ...) until Heal.
  absl::Status Fail(const std::string& what) {
    return Sql(absl::StrCat("CREATE TRIGGER fault_", ++faults_, " BEFORE ",
                            what,
                            " BEGIN SELECT RAISE(ABORT, 'injected fault'); "
                            "END;"));
  }
  // Drops every fault Fail made.
  absl::Status Heal() {
    std::string sql;
    for (; faults_ > 0; --faults_)
      absl::StrAppend(&sql, "DROP TRIGGER fault_", faults_, ";");
    return Sql(sql);
  }

 private:
  std::string path_;
  int faults_ = 0;
};

}  // namespace physpool::testing

#endif  // PHYSPOOL_SERVER_STORE_TESTING_STORE_FILE_H_
