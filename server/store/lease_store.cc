// SPDX-License-Identifier: Apache-2.0
#include "server/store/lease_store.h"

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
