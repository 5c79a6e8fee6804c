// SPDX-License-Identifier: Apache-2.0
// Behaviour knobs of the lease manager (ManagerOptions) and of the fd socket
// (FdSocketOptions), from the config file.
//
// State: none (value types). Thread safety: values; no shared state.
// I/O: none. REQUIRES: nothing.
#ifndef PHYSPOOL_SERVER_OPTIONS_H_
#define PHYSPOOL_SERVER_OPTIONS_H_

#include <sys/types.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "pglist/pool.h"

namespace physpool::server {

struct ManagerOptions {
  pglist::Strategy strategy = pglist::Strategy::kAddress;
  pglist::Placement placement = pglist::Placement::kNextFit;
  uint64_t reserve_bytes = 0;
  absl::Duration default_ttl = absl::Seconds(30);
  absl::Duration max_ttl = absl::Hours(1);
  // EXPIRING is sent this long before a lease expires.
  absl::Duration expiring_warning = absl::Seconds(5);
  // A preempted tenant's device may still write for this long; the memory is
  // zeroed and handed over after it.
  absl::Duration reclaim_grace = absl::Milliseconds(200);
  // A waiting request older than this holds back younger requests (see
  // docs/api.md, "Waiting").
  absl::Duration starvation = absl::Seconds(1);
  // The longest a request may wait for memory (caps the call's deadline).
  absl::Duration max_wait = absl::Minutes(5);
  // Per tenant: waiting requests, Watch streams.
  uint32_t max_waiters_per_tenant = 64;
  uint32_t max_watch_streams_per_tenant = 8;
  // Events queued for one Watch stream whose reader is slow; beyond them it
  // gets a final OVERFLOW event and ends.
  uint32_t max_watch_queue = 1024;
  // The most runs a lease may have (every answer stays below 4 MiB).
  uint32_t max_runs_per_lease = 4096;
  // Retry intervals of zeroing that failed and of a store that failed.
  absl::Duration scrub_retry = absl::Seconds(1);
  absl::Duration store_retry = absl::Milliseconds(500);
  // Per-lease CPU views (isolation on): the fd socket hands out a lease's
  // view, never a segment's backing. Off only by config (isolation: off,
  // or preferred where the source has none).
  bool per_lease_views = true;
  std::string isolation_detail;  // why off, or what the views are
  // How often quarantined views are looked for in /proc while some stay
  // held (a lease's end triggers a scan at once).
  absl::Duration quarantine_scan = absl::Seconds(1);
  // Processes whose descriptors of views are not holders: physpool-keeper,
  // which keeps every view for the next daemon.
  std::set<pid_t> trusted_holders;
};

// Who may use the fd socket and how much of it (listen.fd_socket_access;
// docs/vfio.md, "The fd socket's trust model").
struct FdSocketOptions {
  // Empty (both): any peer that can open the socket (its mode is 0660: the
  // daemon's uid and group). Otherwise the peer's uid must be root, the
  // daemon's euid, in allowed_uids, or its gid in allowed_gids.
  std::vector<uid_t> allowed_uids;
  std::vector<gid_t> allowed_gids;
  // Open connections per peer uid; the next one is answered
  // RESOURCE_EXHAUSTED and closed.
  uint32_t max_connections_per_uid = 16;
  // From accept to the complete request line; then DEADLINE_EXCEEDED.
  absl::Duration request_deadline = absl::Seconds(2);
  // From an answer with descriptors sent to the peer having read it; then
  // the connection is closed (docs/vfio.md, "The fd socket").
  absl::Duration answer_deadline = absl::Seconds(5);
};

// The pglist options `o` asks for on pages of `page_size` bytes (the
// reserve rounded up to whole pages).
inline pglist::PoolOptions PoolOptionsFor(const ManagerOptions& o,
                                          uint64_t page_size) {
  pglist::PoolOptions po;
  po.page_size = page_size;
  po.strategy = o.strategy;
  po.placement = o.placement;
  po.reserve_pages =
      pglist::PageCount((o.reserve_bytes + page_size - 1) / page_size);
  return po;
}

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_OPTIONS_H_
