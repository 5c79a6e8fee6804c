// SPDX-License-Identifier: Apache-2.0
// LeaseStore::Open's reading of a checked store (lease_store.h): the meta
// row that says whose memory the leases are on, every lease, scrub and
// added segment (any damaged row refuses the whole store), then the
// statements every write uses.
#include <sqlite3.h>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/store/lease_store.h"
#include "util/status_macros.h"

namespace physpool::server {

absl::Status LeaseStore::Load(const std::string& boot_id,
                              const std::string& layout) {
  std::string stored_boot, stored_layout;
  RETURN_IF_ERROR(EachRow("SELECT key, value FROM meta", "the meta table",
                          [&](sqlite3_stmt* q) {
                            ASSIGN_OR_RETURN(std::string k, TextColumn(q, 0));
                            ASSIGN_OR_RETURN(std::string v, TextColumn(q, 1));
                            if (k == "boot_id") stored_boot = v;
                            if (k == "layout") stored_layout = v;
                            return absl::OkStatus();
                          }));
  if (stored_boot != boot_id) {
    // After a host reboot the memory and every lease on it are gone.
    RETURN_IF_ERROR(EachRow("SELECT count(*) FROM leases", "the leases table",
                            [&](sqlite3_stmt* q) {
                              voided_ = sqlite3_column_int64(q, 0);
                              return absl::OkStatus();
                            }));
    RETURN_IF_ERROR(
        Exec("BEGIN; DELETE FROM leases; DELETE FROM scrubs; COMMIT;"));
  }
  RETURN_IF_ERROR(LoadLeases());
  RETURN_IF_ERROR(LoadScrubs());
  RETURN_IF_ERROR(LoadSegments());
  if (stored_boot == boot_id && stored_layout != layout &&
      (!leases_.empty() || !scrubs_.empty())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "lease store ", path_, ": written for another segment layout (",
        stored_layout, ") while ", leases_.size(),
        " leases are live; restore the old layout, or delete the store to drop "
        "them"));
  }
  sqlite3_stmt* raw = nullptr;
  sqlite3_prepare_v2(db_,
                     "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", -1,
                     &raw, nullptr);
  const std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> m(
      raw, sqlite3_finalize);
  for (auto [k, v] :
       {std::pair{"boot_id", boot_id}, std::pair{"layout", layout}}) {
    sqlite3_reset(m.get());
    sqlite3_bind_text(m.get(), 1, k, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(m.get(), 2, v.c_str(), -1, SQLITE_TRANSIENT);
    if (sqlite3_step(m.get()) != SQLITE_DONE) return Error("writing meta");
  }
  return absl::OkStatus();
}

// Every lease row; a run list that does not decode is a damaged row.
absl::Status LeaseStore::LoadLeases() {
  return EachRow(
      "SELECT id, tenant, runs, preemptible, expires_ms, ttl_s, path, label, "
      "request_id, request_fp, access_sha FROM leases",
      "the leases table", [&](sqlite3_stmt* q) -> absl::Status {
        StoredLease s;
        ASSIGN_OR_RETURN(s.id, TextColumn(q, 0));
        ASSIGN_OR_RETURN(s.tenant, TextColumn(q, 1));
        ASSIGN_OR_RETURN(const std::string runs, TextColumn(q, 2));
        absl::StatusOr<std::vector<pglist::PageRun>> decoded = DecodeRuns(runs);
        if (!decoded.ok()) {
          return absl::DataLossError(
              absl::StrCat("lease ", s.id, ": ", decoded.status().message()));
        }
        s.runs = *std::move(decoded);
        s.preemptible = sqlite3_column_int(q, 3) != 0;
        s.expires_unix_ms = sqlite3_column_int64(q, 4);
        s.ttl_seconds = sqlite3_column_int64(q, 5);
        ASSIGN_OR_RETURN(s.path, TextColumn(q, 6));
        ASSIGN_OR_RETURN(s.label, TextColumn(q, 7));
        ASSIGN_OR_RETURN(s.request_id, TextColumn(q, 8));
        ASSIGN_OR_RETURN(s.request_fp, TextColumn(q, 9));
        ASSIGN_OR_RETURN(s.access_sha256, TextColumn(q, 10));
        leases_.push_back(std::move(s));
        return absl::OkStatus();
      });
}

// Every scrub row (memory still to be zeroed), and the next row number.
absl::Status LeaseStore::LoadScrubs() {
  return EachRow(
      "SELECT row, runs, lease, tenant FROM scrubs", "the scrubs table",
      [&](sqlite3_stmt* q) -> absl::Status {
        StoredScrub s;
        s.row = sqlite3_column_int64(q, 0);
        ASSIGN_OR_RETURN(const std::string runs, TextColumn(q, 1));
        absl::StatusOr<std::vector<pglist::PageRun>> decoded = DecodeRuns(runs);
        if (!decoded.ok()) {
          return absl::DataLossError(absl::StrCat("scrub row ", s.row, ": ",
                                                  decoded.status().message()));
        }
        s.runs = *std::move(decoded);
        ASSIGN_OR_RETURN(s.lease, TextColumn(q, 2));
        ASSIGN_OR_RETURN(s.tenant, TextColumn(q, 3));
        next_scrub_row_ = std::max(next_scrub_row_, s.row + 1);
        scrubs_.push_back(std::move(s));
        return absl::OkStatus();
      });
}

// Every segment added at run time, by address.
absl::Status LeaseStore::LoadSegments() {
  return EachRow(
      "SELECT iova, bytes, freelist, numa, path FROM segments ORDER BY iova",
      "the segments table", [&](sqlite3_stmt* q) -> absl::Status {
        StoredSegment s;
        s.iova = static_cast<uint64_t>(sqlite3_column_int64(q, 0));
        s.bytes = static_cast<uint64_t>(sqlite3_column_int64(q, 1));
        s.freelist = static_cast<uint32_t>(sqlite3_column_int64(q, 2));
        s.numa = static_cast<int32_t>(sqlite3_column_int64(q, 3));
        ASSIGN_OR_RETURN(s.path, TextColumn(q, 4));
        segments_.push_back(std::move(s));
        return absl::OkStatus();
      });
}

absl::Status LeaseStore::Prepare() {
  const struct {
    sqlite3_stmt** stmt;
    const char* sql;
  } prepared[] = {
      {&put_,
       "INSERT OR REPLACE INTO leases(id, tenant, runs, preemptible, "
       "expires_ms, ttl_s, path, label, request_id, request_fp, access_sha)"
       " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"},
      {&expiry_, "UPDATE leases SET expires_ms = ?, ttl_s = ? WHERE id = ?"},
      {&delete_lease_, "DELETE FROM leases WHERE id = ?"},
      {&add_scrub_,
       "INSERT INTO scrubs(row, runs, lease, tenant) VALUES(?, ?, ?, ?)"},
      {&scrub_done_, "DELETE FROM scrubs WHERE row = ?"},
      {&put_segment_,
       "INSERT OR REPLACE INTO segments(iova, bytes, freelist, numa, path) "
       "VALUES(?, ?, ?, ?, ?)"},
      {&delete_segment_, "DELETE FROM segments WHERE iova = ?"},
      {&begin_, "BEGIN"},
      {&commit_, "COMMIT"},
      {&savepoint_, "SAVEPOINT change"},
      {&release_, "RELEASE change"},
  };
  for (const auto& p : prepared) {
    if (sqlite3_prepare_v2(db_, p.sql, -1, p.stmt, nullptr) != SQLITE_OK) {
      return Error("preparing statements");
    }
  }
  return absl::OkStatus();
}

}  // namespace physpool::server
