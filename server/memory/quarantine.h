// SPDX-License-Identifier: Apache-2.0
// The quarantine of ended leases' views (lease_views.h, holders.h): hands
// out views, pins them while a descriptor is in flight, restores the views
// a previous daemon made, and scans for holders of ended ones. Memory of an
// ended lease returns only once nothing is known to hold its view; the
// gates of LeaseViews then run their continuations (zeroing, a reclaim).
//
// State: the scan's schedule and figures, whether dma-buf counts are
// trusted, why the scan is blind (if it is).
// Thread safety: not thread-safe; methods take the Turn that proves the
// pool's lock, except Gather (the quarantine thread, no lock). A pin's
// release re-enters through the Coordinator, from any thread.
// I/O: under the lock (named exceptions, listed in pool_manager.h),
// HandOut creates a view at the first hand-out (MemorySource::CreateView;
// fstat, its dma-buf count from /proc/self/fdinfo) and dup(2)s it at each;
// Apply destroys the views that went (MemorySource::DestroyView, close);
// at start, Start reads /proc/self (ScanBlindness) and Restore opens a
// previous daemon's views (ViewNames, OpenView, DestroyView of views of
// no lease). End closes the daemon's descriptor of an uncounted view.
// Gather scans /proc with no lock held.
// REQUIRES: `pool`, `source`, `views`, `segments` and `coordinator`
// outlive it, and it outlives every Pin it handed out; a Pin is released
// with the pool's lock not held; TakeScan -> Gather -> Apply by one thread
// at a time (only Apply closes the descriptors Gather reads).
#ifndef PHYSPOOL_SERVER_MEMORY_QUARANTINE_H_
#define PHYSPOOL_SERVER_MEMORY_QUARANTINE_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pglist/pool.h"
#include "server/core/turn.h"
#include "server/core/types.h"
#include "server/memory/holders.h"
#include "server/memory/lease_views.h"
#include "server/memory/segments.h"
#include "vfio/memory_source.h"

namespace physpool::server {

class Quarantine {
 public:
  struct Options {
    bool per_lease_views = true;
    absl::Duration scan_interval = absl::Seconds(1);
    std::set<pid_t> trusted_holders;  // physpool-keeper
  };
  Quarantine(Options options, pglist::Pool* pool, vfio::MemorySource* source,
             LeaseViews* views, Segments* segments, Coordinator* coordinator)
      : opts_(std::move(options)),
        pool_(pool),
        source_(source),
        views_(views),
        segments_(segments),
        coordinator_(coordinator) {}

  // At start: whether the scan can see every process (logged if not).
  void Start(Turn& t);

  // A pin: held until a handed-out descriptor is out of the daemon's
  // hands and in the receiver's.
  struct Pin {
    std::function<void()> release;
    ~Pin() {
      if (release) release();
    }
  };
  struct Handout {
    int fd = -1;  // a new descriptor, the caller's
    std::vector<uint64_t> offsets;
    std::shared_ptr<Pin> pin;
  };
  // The view of live lease `info` (its allocation `alloc`), made at its
  // first hand-out; FAILED_PRECONDITION with views off.
  absl::StatusOr<Handout> HandOut(Turn& t, pglist::AllocationId alloc,
                                  const LeaseInfo& info);
  // A lease ended: its view (if any) is quarantined from now.
  void End(Turn& t, pglist::AllocationId alloc);

  // At start: registers the views a previous daemon made: `live` names the
  // allocation and info of a live lease's view; `ended` (lease id -> the
  // allocation being zeroed and its tenant) those of ended leases; others
  // are destroyed.
  struct EndedLease {
    pglist::AllocationId alloc;
    std::string tenant;
  };
  using LiveLookup =
      std::function<std::optional<std::pair<pglist::AllocationId, LeaseInfo>>(
          const std::string& name)>;
  void Restore(Turn& t, const LiveLookup& live,
               const std::map<std::string, EndedLease>& ended);

  // The quarantine thread: gates whose views are gone run (in the turn);
  // then, if a scan is due, Take -> Gather (no lock) -> Apply.
  void RunReadyGates(Turn& t);
  bool ScanDue(Turn& t) const;
  // When to look again: the next scan or gate deadline (system time).
  absl::Time NextWake(Turn& t) const;
  LeaseViews::ScanSet TakeScan(Turn& t);
  LeaseViews::Evidence Gather(const LeaseViews::ScanSet& set) const;
  void Apply(Turn& t, const LeaseViews::ScanSet& set,
             const LeaseViews::Evidence& found, absl::Duration took);
  // Scan again at once (a pin went, a view ended).
  void ScanNow(Turn&);

  // An ended lease's info with its quarantine.
  LeaseInfo Quarantined(const LeaseViews::View& v) const;

  struct Figures {
    uint64_t scans = 0;
    absl::Duration last_scan;
    int last_processes = 0;
    size_t last_uninspected = 0;
    bool blind = false;
  };
  Figures figures(Turn&) const;

 private:
  void Unpin(pglist::AllocationId alloc);
  // Marks `v` counted if the kernel counts its references (a dma-buf); a
  // `fresh` view must count exactly its own, or counts are not trusted.
  void CountReferences(LeaseViews::View& v, bool fresh);

  const Options opts_;
  pglist::Pool* const pool_;
  vfio::MemorySource* const source_;
  LeaseViews* const views_;
  Segments* const segments_;
  Coordinator* const coordinator_;
  absl::Time next_scan_ = absl::InfiniteFuture();
  uint64_t scans_ = 0;
  absl::Duration last_scan_;
  int last_processes_ = 0;
  size_t last_uninspected_ = 0;
  absl::Time last_unverified_log_ = absl::InfinitePast();
  bool counts_trusted_ = true;
  std::string blind_;  // ScanBlindness(), set at Start
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_MEMORY_QUARANTINE_H_
