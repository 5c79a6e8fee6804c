// The leases' CPU views (one descriptor per lease that maps exactly its
// runs: MemorySource::CreateView) and the quarantine of ended leases.
//
// A lease's memory reaches no other tenant while anything its tenant was
// handed can still reach it. The daemon keeps the only reference to a
// view until the fd socket hands one out; when the lease ends it drops its
// own, and the view is *quarantined* until a scan of /proc (holders.h)
// finds no process that holds a descriptor of it or maps it, and no
// descriptor is in flight on the fd socket (pins). Work on the memory
// (zeroing, freeing, handing it to a reclaim) waits behind a gate on its
// allocations until their views are gone.
//
// Not thread-safe: the PoolManager calls it under its lock.
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
#include "server/holders.h"
#include "server/lessor.h"

namespace physpool::server {

class LeaseViews {
 public:
  // A gate's callback: runs under the manager's lock, may queue work to run
  // after it (the manager's Outbox).
  using Then = std::function<void(std::vector<std::function<void()>>*)>;

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
    // The processes the fd socket handed it to (SO_PEERCRED): one the scan
    // may not inspect counts as holding it (fail closed).
    std::set<pid_t> recipients;
  };

  // REQUIRES: no view of v.alloc.
  View& Add(View v);
  View* Find(pglist::AllocationId alloc);
  View* FindLease(const std::string& lease_id);

  // The lease ended: closes the daemon's reference; quarantined from now.
  void End(pglist::AllocationId alloc, absl::Time now);

  // Whether any of `allocs` has a view (live or quarantined).
  bool AnyView(const std::vector<pglist::AllocationId>& allocs) const;
  // Runs `then` (by TakeReady) once none of `allocs` has a view. With a
  // deadline, `expired` runs instead if it passes first (the gate goes).
  void Gate(std::vector<pglist::AllocationId> allocs, Then then,
            absl::Time deadline = absl::InfiniteFuture(),
            Then expired = nullptr);

  // What a scan looks for: ended views with nothing in flight.
  struct ScanSet {
    std::map<FileId, std::pair<pglist::AllocationId, uint64_t>> files;
  };
  ScanSet ToScan() const;
  // The scan's result: views not held (and not handed out since) go;
  // returns them (for the source to destroy). Others keep their holders;
  // `newly_held` gets those found held for the first time.
  std::vector<View> Apply(const ScanSet& scanned,
                          const std::map<FileId, std::vector<Holder>>& held,
                          const std::set<pid_t>& unreadable,
                          std::vector<const View*>* newly_held);
  // Gates whose allocations have no view now, and (`now` past their
  // deadline) expired ones: their callbacks, to run under the lock.
  std::vector<Then> TakeReady(absl::Time now);
  std::optional<absl::Time> NextDeadline() const;

  // Quarantined (ended, not yet gone) views.
  uint64_t quarantined_bytes() const { return quarantined_bytes_; }
  uint32_t quarantined() const { return quarantined_; }
  uint64_t QuarantinedBytesOf(const std::string& tenant) const;
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
  uint32_t quarantined_ = 0;
  std::map<std::string, uint64_t> tenant_bytes_;  // quarantined, by tenant
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_LEASE_VIEWS_H_
