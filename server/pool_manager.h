// The daemon's state: the allocation core, the leases over it, the tenants'
// usage, the memory being zeroed, the requests waiting for memory and the
// watchers of lease events. gRPC services call it; it never sees gRPC.
//
// Memory coming back (release, expiry, revocation, preemption) stays
// allocated in the core until it has been zeroed, so nobody else can get it
// first. Two threads: a maintenance thread (expiry, warnings, wait
// deadlines, reclaim grace periods) and a scrubber (zeroing).
//
// Thread-safe. Callbacks (allocation completions, event sinks) run without
// the manager's lock held, except event sinks, which run under it and must
// not block or call back into the manager.
#ifndef PHYSPOOL_SERVER_POOL_MANAGER_H_
#define PHYSPOOL_SERVER_POOL_MANAGER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pglist/pool.h"
#include "server/clock.h"
#include "server/histogram.h"
#include "server/lease_store.h"
#include "server/options.h"
#include "server/tenants.h"
#include "vfio/memory_source.h"

namespace physpool::server {

// A run as a tenant sees it.
struct LeaseRun {
  uint64_t iova = 0;
  uint64_t bytes = 0;
  std::string backing_path;
  uint64_t backing_offset = 0;
  uint32_t segment_id = 0;
};

struct LeaseInfo {
  std::string id;
  std::string tenant;
  std::vector<LeaseRun> runs;
  uint64_t bytes = 0;
  bool preemptible = false;
  absl::Time expires;
  absl::Duration ttl;
  std::string path;
  std::string label;
};

struct AllocateParams {
  pglist::Request req;  // privileged is set from the tenant's role
  bool numa_strict = false;
  bool may_wait = false;
  bool may_reclaim = false;
  absl::Duration ttl = absl::ZeroDuration();  // zero: the default
  std::string label;
};

struct LeaseEventInfo {
  enum class Kind { kExpiring = 1, kExpired = 2, kRevoked = 3, kPreempted = 4 };
  Kind kind;
  std::string lease_id;
  std::string reason;
  absl::Time at;
  absl::Time deadline = absl::InfinitePast();  // kPreempted: stop DMA by then
};

struct SegmentView {
  pglist::SegmentInfo info;
  std::string backing_path;
  uint64_t scrubbing_pages = 0;
};

struct TenantUsage {
  uint64_t bytes = 0;
  uint32_t leases = 0;
};

// A snapshot of everything the metrics and GetStats report.
struct ManagerStats {
  pglist::PoolStats pool;
  uint64_t page_size = 0;
  std::vector<SegmentView> segments;
  std::map<std::string, TenantUsage> tenants;
  uint64_t waits_started = 0;  // any -> wait fallbacks
  uint64_t lease_expirations = 0;
  std::map<std::string, uint64_t> revocations;  // by reason
  uint64_t reclaimed_bytes = 0;
  uint64_t scrub_backlog_pages = 0;
  uint32_t waiting = 0;
  Histogram wait_seconds;                          // finished waits
  std::map<std::string, Histogram> alloc_seconds;  // by path
};

enum class OccupancyState {
  kFree = 1,
  kUsed = 2,
  kPreemptible = 3,
  kScrubbing = 4
};
struct OccupancyRun {
  OccupancyState state;
  uint64_t iova = 0;
  uint64_t bytes = 0;
};

class PoolManager {
 public:
  // `store` (may be null: nothing persists) must outlive the manager.
  PoolManager(ManagerOptions options, vfio::MemorySource* source,
              const Clock* clock, TenantRegistry* tenants,
              LeaseStore* store = nullptr);
  ~PoolManager();

  // Builds the pool from the (started) source's segments, restores the
  // store's leases (same ids, runs and expiry) and re-zeroes the memory it
  // lists as being zeroed; starts the threads. FAILED_PRECONDITION if a
  // stored lease does not fit the pool.
  absl::Status Start();
  // Refuses new work (FAILED_PRECONDITION), fails waiters, stops threads.
  void Shutdown();

  using AllocDone = std::function<void(absl::StatusOr<LeaseInfo>)>;
  // Serves the request now, or (may_wait) queues it until memory frees up or
  // `deadline` passes (DEADLINE_EXCEEDED). `done` runs exactly once, maybe
  // before Allocate returns. Returns a handle for CancelWait (0 if done).
  uint64_t Allocate(const Tenant& tenant, AllocateParams params,
                    absl::Time deadline, AllocDone done);
  // A queued request ends with CANCELLED; no effect otherwise.
  void CancelWait(uint64_t handle);

  // The caller's own lease: NOT_FOUND if unknown or ended, PERMISSION_DENIED
  // if another tenant's.
  absl::StatusOr<LeaseInfo> Renew(const Tenant& tenant, absl::string_view id,
                                  absl::Duration ttl);
  // True if released now, false if the caller had released it already.
  absl::StatusOr<bool> Release(const Tenant& tenant, absl::string_view id);
  absl::StatusOr<LeaseInfo> Get(const Tenant& tenant, absl::string_view id);
  // Live leases of `tenant`, or of everyone.
  std::vector<LeaseInfo> Leases(std::optional<std::string> tenant);
  // Admin revocation of any lease.
  absl::StatusOr<LeaseInfo> Revoke(absl::string_view id,
                                   absl::string_view reason);

  using EventSink = std::function<void(const LeaseEventInfo&)>;
  uint64_t Subscribe(const std::string& tenant, EventSink sink);
  void Unsubscribe(uint64_t id);

  std::vector<SegmentView> Segments();
  absl::StatusOr<SegmentView> SetDraining(uint32_t segment_id, bool drain);
  absl::StatusOr<SegmentView> AddSegment(uint64_t bytes, uint32_t freelist,
                                         int32_t numa);
  absl::Status RemoveSegment(uint32_t segment_id);
  // Runs of one state each, in address order, per segment (all if nullopt).
  absl::StatusOr<std::vector<std::pair<SegmentView, std::vector<OccupancyRun>>>>
  Occupancy(std::optional<uint32_t> segment_id);

  // Re-examines expiries, warnings and deadlines now. For an injected clock
  // that jumps; the system clock needs no help.
  void Wake();

  TenantUsage Usage(const std::string& tenant);
  ManagerStats Stats();
  uint64_t page_size() const { return page_size_; }
  const ManagerOptions& options() const { return opts_; }

 private:
  struct Lease {
    LeaseInfo info;
    pglist::AllocationId alloc = 0;
    bool warned = false;
  };
  struct Waiter {
    uint64_t handle;
    Tenant tenant;
    AllocateParams params;
    absl::Time deadline;
    absl::Time since;
    AllocDone done;
  };
  struct PendingReclaim {
    uint64_t handle;
    Tenant tenant;
    AllocateParams params;
    pglist::ReclaimPlan plan;
    std::vector<pglist::AllocationId> victims;
    std::vector<int64_t> victim_rows;          // their scrub rows in the store
    std::optional<pglist::AllocationId> hold;  // free pages of the window
    absl::Time ready;
    absl::Time deadline;
    absl::Time since;
    AllocDone done;
  };
  using Completion = std::function<void()>;
  struct ScrubJob {
    std::vector<pglist::PageRun> runs;
    // Runs under mu_ once the runs are zeroed; may add completions.
    std::function<void(std::vector<Completion>*)> then;
  };
  struct SegmentRecord {
    pglist::SegmentId id;
    std::string path;
    uint64_t file_offset;
  };

  // Tries to serve `p` now. OK: the lease. RESOURCE_EXHAUSTED with a
  // FailReason, or a started reclaim (*reclaiming set).
  absl::StatusOr<LeaseInfo> TryAllocate(const Tenant& t,
                                        const AllocateParams& p,
                                        uint64_t handle, absl::Time deadline,
                                        absl::Time since, AllocDone* done,
                                        bool* reclaiming)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckQuota(const Tenant& t, uint64_t bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records a lease for allocation `a` (in the store too); on a store
  // failure frees `a` and returns UNAVAILABLE.
  absl::StatusOr<LeaseInfo> MakeLease(const Tenant& t, const AllocateParams& p,
                                      const pglist::Allocation& a,
                                      absl::string_view path)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Install(Lease lease) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues an allocation's memory for zeroing; frees it (and the store's
  // scrub row) once zero.
  void ScrubAndFree(pglist::AllocationId alloc, int64_t row)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends a lease: events, counters, and its memory to the scrubber.
  // `kind` nullopt: released by its owner (no event). With `scrub` false
  // the memory stays allocated for the caller to deal with (preemption).
  // Returns the store's scrub row for the lease's memory (0 without store).
  int64_t EndLease(std::string id, std::optional<LeaseEventInfo::Kind> kind,
                   absl::string_view reason, absl::Time deadline, bool scrub)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Scrub(std::vector<pglist::PageRun> runs,
             std::function<void(std::vector<Completion>*)> then)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Emit(const std::string& tenant, const LeaseEventInfo& e)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Serves waiters that fit now, oldest first; stops at a starving one.
  void RetryWaiters(std::vector<Completion>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HeadStarving() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishReclaim(PendingReclaim r, std::vector<Completion>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Lease*> Owned(const Tenant& t, absl::string_view id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  SegmentView View(const pglist::SegmentInfo& s)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  LeaseRun ToLeaseRun(const pglist::PageRun& r)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaintenanceLoop();
  void ScrubLoop();

  const ManagerOptions opts_;
  vfio::MemorySource* const source_;
  const Clock* const clock_;
  TenantRegistry* const tenants_;
  LeaseStore* const store_;
  uint64_t page_size_ = 0;

  absl::Mutex mu_;
  absl::CondVar wake_maintenance_;
  absl::CondVar wake_scrubber_;
  std::optional<pglist::Pool> pool_ ABSL_GUARDED_BY(mu_);
  std::map<pglist::Pfn, SegmentRecord> backing_
      ABSL_GUARDED_BY(mu_);  // by base
  std::map<std::string, Lease> leases_ ABSL_GUARDED_BY(mu_);
  std::set<std::pair<absl::Time, std::string>> expiry_ ABSL_GUARDED_BY(mu_);
  // Ended leases (bounded), to answer a second Release and say why a lease
  // is gone: id -> (tenant, how it ended).
  std::map<std::string, std::pair<std::string, std::string>> ended_
      ABSL_GUARDED_BY(mu_);
  std::deque<std::string> ended_order_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, TenantUsage> usage_ ABSL_GUARDED_BY(mu_);
  std::deque<Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  std::vector<PendingReclaim> reclaims_ ABSL_GUARDED_BY(mu_);
  std::deque<ScrubJob> scrub_queue_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<pglist::AllocationId> scrubbing_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<pglist::AllocationId, std::string> lease_of_
      ABSL_GUARDED_BY(mu_);
  std::set<std::pair<absl::Time, std::string>> warn_ ABSL_GUARDED_BY(mu_);
  uint64_t scrub_backlog_pages_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint64_t, std::pair<std::string, EventSink>> sinks_
      ABSL_GUARDED_BY(mu_);
  uint64_t next_handle_ ABSL_GUARDED_BY(mu_) = 1;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t waits_started_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t lease_expirations_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, uint64_t> revocations_ ABSL_GUARDED_BY(mu_);
  uint64_t reclaimed_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  Histogram wait_seconds_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Histogram> alloc_seconds_ ABSL_GUARDED_BY(mu_);
  std::thread maintenance_;
  std::thread scrubber_;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_POOL_MANAGER_H_
