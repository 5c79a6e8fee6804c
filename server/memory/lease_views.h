// SPDX-License-Identifier: Apache-2.0
// The leases' CPU views (one descriptor per lease that maps exactly its
// runs: MemorySource::CreateView) and the quarantine of ended leases.
//
// A lease's memory reaches no other tenant while anything its tenant was
// handed can still reach it. The daemon keeps the only reference to a
// view until the fd socket hands one out; when the lease ends the view is
// *quarantined* until the daemon knows nothing else holds it (holders.h):
// - a view the kernel counts references of (a dma-buf) is free once the
//   count is down to the daemon's own references (its descriptor, which it
//   keeps for that, and the source's: the keeper's copy);
// - any other view is free once a /proc scan finds no process that holds a
//   descriptor of it or maps it, no process the scan may not inspect, and
//   the scan can see every process at all (fail closed);
// - and in either case, no descriptor of it is in flight on the fd socket
//   (pins).
// Work on the memory (zeroing, freeing, handing it to a reclaim) waits
// behind a gate on its allocations until their views are gone.
//
// State: the views (live and quarantined) by allocation and by lease id,
// the daemon's descriptors of them, the gates, the quarantined bytes.
// Thread safety: not thread-safe; it takes no Turn: its callers (the
// Quarantine, the Recycler, the lease flows, PoolManager) call it under
// the pool's lock.
// I/O: close(2) of the daemon's descriptor of a view (End, Apply), under
// the lock; nothing else (the Quarantine creates and destroys views).
// REQUIRES: no view of an allocation at its Add; what TakeReady returns
// runs in the same turn.
#ifndef PHYSPOOL_SERVER_LEASE_VIEWS_H_
#define PHYSPOOL_SERVER_LEASE_VIEWS_H_

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/container/node_hash_map.h"
#include "absl/time/time.h"
#include "pglist/pool.h"
#include "server/core/turn.h"
#include "server/core/types.h"
#include "server/memory/holders.h"

namespace physpool::server {

class LeaseViews {
 public:
  // A gate's callback: runs in a turn (under the pool's lock).
  using Then = TurnStep;

  struct View {
    pglist::AllocationId alloc;
    LeaseInfo info;  // as the lease was
    int fd = -1;     // the daemon's reference while the lease lives
    FileId file;
    int pins = 0;           // descriptors in flight on the fd socket
    uint64_t handouts = 0;  // descriptors handed out, ever
    bool ended = false;
    absl::Time ended_at;
    std::vector<Holder> holders;  // found by the last scan
    // The kernel counts its references (a dma-buf): `fd` stays open until
    // the view goes, and own_refs of the others are the source's.
    bool counted = false;
    int64_t own_refs = 0;
  };

  // REQUIRES: no view of v.alloc.
  View& Add(View v);
  View* Find(pglist::AllocationId alloc);
  View* FindLease(const std::string& lease_id);

  // The lease ended: quarantined from now. The daemon's reference is
  // closed, or for a counted view kept to read the count.
  void End(pglist::AllocationId alloc, absl::Time now);

  // Whether any of `allocs` has a view (live or quarantined).
  bool AnyView(const std::vector<pglist::AllocationId>& allocs) const;
  // Runs `then` (by TakeReady) once none of `allocs` has a view. With a
  // deadline, `expired` runs instead if it passes first (the gate goes).
  void Gate(std::vector<pglist::AllocationId> allocs, Then then,
            absl::Time deadline = absl::InfiniteFuture(),
            Then expired = nullptr);

  // What a scan looks for: ended views with nothing in flight.
  struct ScanEntry {
    pglist::AllocationId alloc;
    uint64_t handouts = 0;  // as they were: a handout since voids it
    int fd = -1;            // counted views: the daemon's descriptor
    int64_t own_refs = 0;
  };
  struct ScanSet {
    std::map<FileId, ScanEntry> files;
  };
  ScanSet ToScan() const;
  // What was found, outside the lock.
  struct Evidence {
    ScanReport scan;
    // Counted views: references beyond the daemon's own (the kernel's
    // count less 1 for its descriptor and own_refs); missing if unread.
    std::map<FileId, int64_t> others;
    std::string blind;  // ScanBlindness(): the scan sees not every process
  };
  // The evidence's verdict: views nothing else holds go (their descriptor
  // closed); returned for the source to destroy. Others keep their holders
  // (named ones, processes the scan may not inspect, unnamed references);
  // `newly_held` gets those found held for the first time.
  std::vector<View> Apply(const ScanSet& scanned, const Evidence& found,
                          std::vector<const View*>* newly_held);
  // Gates whose allocations have no view now, and (`now` past their
  // deadline) expired ones: their callbacks, to run under the lock.
  std::vector<Then> TakeReady(absl::Time now);
  std::optional<absl::Time> NextDeadline() const;

  // Quarantined (ended, not yet gone) views.
  uint64_t quarantined_bytes() const { return quarantined_bytes_; }
  uint32_t quarantined() const { return quarantined_; }
  uint64_t QuarantinedBytesOf(const std::string& tenant) const;
  // Of those, bytes held only by what the daemon cannot name or inspect
  // (uninspected processes, a blind scan, unnamed kernel references), as
  // of the last Apply.
  uint64_t unverified_bytes() const { return unverified_bytes_; }
  bool has_quarantined() const { return quarantined_ > 0; }
  std::vector<const View*> Quarantined() const;
  size_t size() const { return views_.size(); }

 private:
  struct GateEntry {
    std::vector<pglist::AllocationId> allocs;
    Then then;
    absl::Time deadline;
    Then expired;
  };
  absl::node_hash_map<pglist::AllocationId, View> views_;  // stable refs
  std::map<std::string, pglist::AllocationId> by_lease_;
  std::list<GateEntry> gates_;
  uint64_t quarantined_bytes_ = 0;
  uint64_t unverified_bytes_ = 0;
  uint32_t quarantined_ = 0;
  std::map<std::string, uint64_t> tenant_bytes_;  // quarantined, by tenant
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_LEASE_VIEWS_H_
