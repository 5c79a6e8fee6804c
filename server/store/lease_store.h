// SPDX-License-Identifier: Apache-2.0
// The durable record of leases: an SQLite database (WAL mode) holding every
// live lease, every range of memory waiting to be zeroed, the host's boot id
// and the segment layout. Each change is committed before the RPC that made
// it answers, so a daemon killed at any moment restarts with every lease it
// granted and nothing it did not.
//
// The writes are single statements; the caller groups them in transactions
// (Begin/Commit) and savepoints (one per logical change, so that one failing
// change does not take its batch down). Every failure is UNAVAILABLE naming
// the step and SQLite's reason (disk full, I/O error, ...); a failed Commit
// rolls back.
//
// State: the SQLite connection and its prepared statements; what Open read
// (leases, scrub rows, added segments, the voided count).
// Thread safety: not thread-safe. After Open the writes are made by one
// thread at a time (the Committer's applying thread); what Open read is
// read, and the leases taken, by PoolManager::Start's restore, before any
// change is submitted.
// I/O: the store's file and its -wal, on the calling thread, never under
// the pool's lock: Open creates a missing store (a ".new" file, fsynced,
// renamed, its directory fsynced), reads an existing one whole, checks
// and migrates it, deletes the leases a host reboot voided and writes the
// boot id and layout; the writes; the destructor checkpoints the WAL.
// ReadBootId reads its file (/proc/sys/kernel/random/boot_id).
// REQUIRES: one thread at a time; Savepoint, Release and RollbackTo inside
// a transaction (Begin).
#ifndef PHYSPOOL_SERVER_LEASE_STORE_H_
#define PHYSPOOL_SERVER_LEASE_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pglist/units.h"

struct sqlite3;
struct sqlite3_stmt;

namespace physpool::server {

struct StoredLease {
  std::string id;
  std::string tenant;
  std::vector<pglist::PageRun> runs;
  bool preemptible = false;
  int64_t expires_unix_ms = 0;
  int64_t ttl_seconds = 0;
  std::string path;
  std::string label;
  std::string request_id;     // the tenant's AllocateRequest.request_id, or ""
  std::string request_fp;     // fingerprint of that request's parameters
  std::string access_sha256;  // its access token's hash, or ""
};

// A segment added at run time (Admin AddSegment): re-created at the same
// IOVA and backing at the next start.
struct StoredSegment {
  uint64_t iova = 0;
  uint64_t bytes = 0;
  uint32_t freelist = 0;
  int32_t numa = 0;
  std::string path;
};

struct StoredScrub {
  int64_t row = 0;
  std::vector<pglist::PageRun> runs;
  std::string lease;   // the ended lease the memory was ("" if none)
  std::string tenant;  // its tenant: a restored quarantine counts for it
};

// How much of an existing store Open reads before trusting it (every row of
// every table is read either way, and any error refuses the store).
enum class StoreCheck {
  kFull,   // PRAGMA integrity_check: every page, index against table
  kQuick,  // PRAGMA quick_check: every page, not index against table
  kNone,   // the header only (tests and benchmarks of the load itself)
};

class LeaseStore {
 public:
  // Opens the store at `path`, or creates it if there is no file there
  // (made whole under another name and renamed, so that an existing file is
  // never a half-made store). `boot_id` is this boot's id; `layout`
  // describes the segments (compared with the stored one).
  //
  // Fails closed: a file that exists and cannot be read whole and valid is
  // refused, never read in part nor taken for a new store.
  // FAILED_PRECONDITION naming the path, what is wrong and what the
  // operator can do, for a file that is not a regular file, is damaged (a
  // page the check or a row loop cannot read), cannot be read (an I/O
  // error), is not a physpool store (an empty database included), is of a
  // newer schema, is missing while its -wal is there, or was written for
  // another segment layout while leases are live.
  static absl::StatusOr<std::unique_ptr<LeaseStore>> Open(
      const std::string& path, const std::string& boot_id,
      const std::string& layout, StoreCheck check = StoreCheck::kFull);
  ~LeaseStore();

  // What the store held at Open. Empty after a host reboot (the leases were
  // void: voided_leases says how many).
  const std::vector<StoredLease>& leases() const { return leases_; }
  // The leases Open read, handed over (the store keeps no copy: a restart
  // of a million leases would hold them twice). leases() is empty after.
  std::vector<StoredLease> TakeLeases() { return std::exchange(leases_, {}); }
  const std::vector<StoredScrub>& scrubs() const { return scrubs_; }
  int64_t voided_leases() const { return voided_; }
  // Segments added at run time, by IOVA. They outlive a host reboot (the
  // operator's pool), their contents do not.
  const std::vector<StoredSegment>& segments() const { return segments_; }
  // One above the highest scrub row at Open: callers number new rows.
  int64_t next_scrub_row() const { return next_scrub_row_; }

  // Transactions. Begin fails if one is open; Commit rolls back on failure.
  absl::Status Begin();
  absl::Status Commit();
  void Rollback();
  // Whether a transaction is open (SQLite ends one itself on some errors).
  bool InTransaction() const;
  // Savepoints inside a transaction: Savepoint, then Release (keep) or
  // RollbackTo (undo what followed it).
  absl::Status Savepoint();
  absl::Status Release();
  void RollbackTo();

  absl::Status PutLease(const StoredLease& lease);
  absl::Status SetExpiry(const std::string& id, int64_t expires_unix_ms,
                         int64_t ttl_seconds);
  absl::Status DeleteLease(const std::string& id);
  // Records `runs` as waiting to be zeroed, under the caller's row number.
  absl::Status AddScrub(int64_t row, const std::vector<pglist::PageRun>& runs,
                        const std::string& lease = "",
                        const std::string& tenant = "");
  // The runs of a scrub row are zero now.
  absl::Status ScrubDone(int64_t row);

  // A small write that tells whether the store takes writes again.
  absl::Status Probe();

  absl::Status PutSegment(const StoredSegment& segment);
  absl::Status DeleteSegment(uint64_t iova);

 private:
  LeaseStore() = default;
  // The phases of Open: making and checking the file (lease_store_open.cc),
  // reading it (lease_store_load.cc).
  static absl::Status Create(const std::string& path);
  absl::Status Check(StoreCheck check);
  absl::Status Migrate();
  absl::Status Load(const std::string& boot_id, const std::string& layout);
  absl::Status LoadLeases();
  absl::Status LoadScrubs();
  absl::Status LoadSegments();
  absl::Status Prepare();
  // Runs `sql` and calls row(stmt) for each row; fails (Refuse) unless the
  // rows end in SQLITE_DONE, or with row()'s error (DATA_LOSS or
  // FAILED_PRECONDITION for a damaged row, named as one).
  absl::Status EachRow(const char* sql, const char* what,
                       absl::FunctionRef<absl::Status(sqlite3_stmt*)> row);
  // A column that must hold text: NULL only in a damaged row.
  static absl::StatusOr<std::string> TextColumn(sqlite3_stmt* q, int col);
  // FAILED_PRECONDITION for a store that cannot be read: what was being
  // read, SQLite's reason and what the operator can do.
  absl::Status Refuse(absl::string_view what, int rc) const;
  absl::Status Exec(const char* sql);
  absl::Status Error(const char* what) const;
  // UNAVAILABLE for a write that failed (the store stays usable).
  absl::Status WriteError(const char* what) const;
  absl::Status Step(sqlite3_stmt* s, const char* what);

  std::string path_;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* put_ = nullptr;
  sqlite3_stmt* expiry_ = nullptr;
  sqlite3_stmt* delete_lease_ = nullptr;
  sqlite3_stmt* add_scrub_ = nullptr;
  sqlite3_stmt* scrub_done_ = nullptr;
  sqlite3_stmt* put_segment_ = nullptr;
  sqlite3_stmt* delete_segment_ = nullptr;
  // Transaction control, prepared once (parsed per call it showed in the
  // RPC path's profile).
  sqlite3_stmt* begin_ = nullptr;
  sqlite3_stmt* commit_ = nullptr;
  sqlite3_stmt* savepoint_ = nullptr;
  sqlite3_stmt* release_ = nullptr;
  std::vector<StoredLease> leases_;
  std::vector<StoredSegment> segments_;
  std::vector<StoredScrub> scrubs_;
  int64_t voided_ = 0;
  int64_t next_scrub_row_ = 1;
};

// "start:pages,start:pages" <-> runs.
std::string EncodeRuns(const std::vector<pglist::PageRun>& runs);
absl::StatusOr<std::vector<pglist::PageRun>> DecodeRuns(
    const std::string& text);

// This boot's id (/proc/sys/kernel/random/boot_id, or `file`).
absl::StatusOr<std::string> ReadBootId(const std::string& file);

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_LEASE_STORE_H_
