// The daemon's state machine: the allocation core, the leases over it
// (Lessor), the requests waiting for memory (WaitQueue), reclaims in
// progress (Reclaimer), memory being zeroed (Scrubber) and the watchers of
// lease events, with every change made durable through the Committer before
// it is answered. gRPC services call it; it never sees gRPC.
//
// Rules it keeps:
// - A grant, renewal, release or revocation is answered only once the store
//   has it (or fails UNAVAILABLE with nothing changed). An end that is not
//   an RPC (expiry, preemption) and the end of zeroing cannot be undone:
//   if their store write fails, their pages stay out of the pool and the
//   manager reports NOT_SERVING until the store takes the write.
// - Memory coming back stays allocated in the core until it has been zeroed
//   and that is recorded; memory that could not be zeroed stays out.
// - No store or memory-source I/O under the lock: store writes go through
//   the Committer (applied by the calling RPC or scrub thread once it has
//   dropped the lock, or by the Committer's thread), zeroing through the
//   scrub thread, hot add and remove prepare their segment before taking
//   the lock.
//
// Threads: a maintenance thread (expiry, warnings, wait deadlines, reclaim
// grace periods, store retries), a scrub thread, the Committer's thread.
// Allocate, Renew, Release and Revoke commit and answer on the calling
// thread when no other thread is committing: call them with no lock held
// that a completion takes.
// Thread-safe. Completion callbacks (AllocDone, LeaseDone, ...) run without
// the manager's lock, maybe before the call that took them returns. Event
// sinks run under it and must not block or call back into the manager.
#ifndef PHYSPOOL_SERVER_POOL_MANAGER_H_
#define PHYSPOOL_SERVER_POOL_MANAGER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pglist/pool.h"
#include "server/access_tokens.h"
#include "server/clock.h"
#include "server/committer.h"
#include "server/histogram.h"
#include "server/lease_store.h"
#include "server/lease_views.h"
#include "server/lessor.h"
#include "server/options.h"
#include "server/reclaimer.h"
#include "server/scrubber.h"
#include "server/tenants.h"
#include "server/wait_queue.h"
#include "vfio/memory_source.h"

namespace physpool::server {

struct LeaseEventInfo {
  enum class Kind {
    kExpiring = 1,
    kExpired = 2,
    kRevoked = 3,
    kPreempted = 4,
    kOverflow = 5,  // sent by the stream itself, never by the manager
  };
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
  uint64_t scrub_failed_pages = 0;  // zeroing failed, held out of the pool
  uint64_t scrub_errors = 0;
  uint64_t store_errors = 0;  // failed store writes
  // Store transactions, the changes they carried (changes / transactions
  // is the group-commit factor) and those applied by the calling thread.
  uint64_t store_transactions = 0;
  uint64_t store_changes = 0;
  uint64_t store_led_transactions = 0;
  bool store_writable = true;
  uint32_t waiting = 0;  // waiters and reclaims in progress
  uint32_t watch_streams = 0;
  // Per-lease views and the quarantine (lease_views.h).
  bool per_lease_views = false;
  uint32_t views = 0;  // live and quarantined
  uint32_t quarantined_leases = 0;
  uint64_t quarantined_bytes = 0;
  uint64_t quarantine_scans = 0;
  double last_scan_seconds = 0;
  uint32_t last_scan_processes = 0;
  // Processes the last scan could not inspect (each may hold any view).
  uint32_t last_scan_uninspected = 0;
  // Quarantined bytes held only by what the daemon cannot name or inspect.
  uint64_t quarantined_unverified_bytes = 0;
  bool quarantine_blind = false;  // the scan cannot see every process
  Histogram wait_seconds;         // finished waits
  std::map<std::string, Histogram> alloc_seconds;  // by path
  // Device domains (docs/vfio.md, "Device domains").
  std::vector<vfio::DeviceDomain> devices;
  uint64_t dma_map_errors = 0;    // grants refused: their map failed
  uint64_t dma_unmap_errors = 0;  // ends whose unmap failed
  uint64_t dma_stuck_bytes = 0;   // held out of the pool: still mapped
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
struct OccupancyPage {
  std::vector<std::pair<SegmentView, std::vector<OccupancyRun>>> segments;
  // Where the next page starts: (segment id, IOVA); nullopt at the end.
  std::optional<std::pair<uint32_t, uint64_t>> next;
};

class PoolManager {
 public:
  // `store` (may be null: nothing persists) must outlive the manager.
  PoolManager(ManagerOptions options, vfio::MemorySource* source,
              const Clock* clock, TenantRegistry* tenants,
              LeaseStore* store = nullptr);
  ~PoolManager();

  // Builds the pool from the (started) source's segments, restores the
  // store's leases (same ids, runs, expiry and request ids) and re-zeroes
  // the memory it lists as being zeroed; starts the threads.
  // FAILED_PRECONDITION if a stored lease does not fit the pool.
  absl::Status Start();
  // Refuses new work (FAILED_PRECONDITION), answers every waiting request
  // and reclaim in progress (UNAVAILABLE), ends the watchers' streams,
  // applies and answers every store change in flight, stops the threads.
  void Shutdown();

  // Called without the lock whenever serving changes (started, not
  // shutting down, the store writable), and once at once.
  void SetHealthCallback(std::function<void(bool serving)> f);

  // Serves the request now, or (may_wait) queues it until memory frees up or
  // `deadline` (capped at now + max_wait) passes (DEADLINE_EXCEEDED). With a
  // request id, a retry of a request this tenant made gets its lease or
  // its final error, or takes over its wait. `done` runs exactly once.
  // Returns a handle for CancelWait (0 if answered already).
  uint64_t Allocate(const Tenant& tenant, AllocateParams params,
                    absl::Time deadline, AllocDone done);
  // A waiting request (or reclaim in progress) ends with CANCELLED.
  void CancelWait(uint64_t handle);

  using LeaseDone = std::function<void(absl::StatusOr<LeaseInfo>)>;
  using ReleaseDone = std::function<void(absl::StatusOr<bool>)>;
  // The caller's own lease: NOT_FOUND if unknown or ended,
  // PERMISSION_DENIED if another tenant's, UNAVAILABLE if the store failed
  // (nothing changed).
  void Renew(const Tenant& tenant, const std::string& id, absl::Duration ttl,
             LeaseDone done);
  // true if released now, false if it was released already.
  void Release(const Tenant& tenant, const std::string& id, ReleaseDone done);
  // An admin's revocation of any lease (NOT_FOUND if not live).
  void Revoke(const std::string& id, const std::string& reason, LeaseDone done);
  // The same, waiting for the answer.
  absl::StatusOr<LeaseInfo> Renew(const Tenant& tenant, absl::string_view id,
                                  absl::Duration ttl);
  absl::StatusOr<bool> Release(const Tenant& tenant, absl::string_view id);
  absl::StatusOr<LeaseInfo> Revoke(absl::string_view id,
                                   absl::string_view reason);

  // The tenant whose leases carry the access token hash `sha`
  // (AllocateRequest.access_token_sha256), if a live one does. Never takes
  // the pool's lock: any caller can present a token.
  std::optional<std::string> TenantOfAccessToken(const std::string& sha);

  // The caller's live lease. NOT_FOUND for an ended one; while it is
  // quarantined the message says so and who holds it.
  absl::StatusOr<LeaseInfo> Get(const Tenant& tenant, absl::string_view id);
  // Any tenant's lease, live or quarantined (admins).
  absl::StatusOr<LeaseInfo> AdminGet(absl::string_view id);

  // The CPU view of the caller's live lease (lease_views.h): a new
  // descriptor (the caller closes it) that maps the runs back to back,
  // run i at offsets[i], and a pin to hold until the descriptor is out of
  // the caller's hands and in the receiver's (the fd socket: the peer has
  // read it). FAILED_PRECONDITION if per-lease views are off or the lease
  // is ending; the source's error if the view cannot be made.
  struct Pin {
    std::function<void()> release;
    ~Pin() {
      if (release) release();
    }
  };
  struct ViewHandout {
    int fd = -1;
    std::vector<uint64_t> offsets;
    std::shared_ptr<Pin> pin;
  };
  absl::StatusOr<ViewHandout> HandOutView(const Tenant& tenant,
                                          const std::string& lease_id);
  bool views_enabled() const { return opts_.per_lease_views; }
  // Live leases (of `tenant`, or all) in id order after `after`, at most
  // `max`.
  std::vector<LeaseInfo> Leases(std::optional<std::string> tenant,
                                const std::string& after, size_t max);

  using EventSink = std::function<void(const LeaseEventInfo&)>;
  using CloseSink = std::function<void(const absl::Status&)>;
  // RESOURCE_EXHAUSTED beyond max_watch_streams_per_tenant. `close` runs
  // (without the lock) if the manager ends the stream (shutdown).
  absl::StatusOr<uint64_t> Subscribe(const std::string& tenant, EventSink sink,
                                     CloseSink close = nullptr);
  void Unsubscribe(uint64_t id);
  // Ends the Watch streams of tenants not in `tenants` (a configuration
  // reload removed them), answered `why`.
  void EndStreamsExcept(const std::set<std::string>& tenants,
                        const absl::Status& why);

  std::vector<SegmentView> Segments();
  absl::StatusOr<SegmentView> SetDraining(uint32_t segment_id, bool drain);
  // Hot add and remove: the segment is prepared (backing, mapping) and torn
  // down outside the lock; the store records it before the answer.
  absl::StatusOr<SegmentView> AddSegment(uint64_t bytes, uint32_t freelist,
                                         int32_t numa);
  // Only segments added with AddSegment: a configured one is
  // FAILED_PRECONDITION (drain it, then take it out of the config).
  absl::Status RemoveSegment(uint32_t segment_id);
  // Runs of one state each, in address order, per segment (all if nullopt),
  // from (segment, IOVA) `from`, at most `max_runs`.
  absl::StatusOr<OccupancyPage> Occupancy(
      std::optional<uint32_t> segment_id,
      std::optional<std::pair<uint32_t, uint64_t>> from, size_t max_runs);

  // A tenant's limits changed: waiters and reclaims over them are answered.
  void LimitsChanged();
  // Re-examines expiries, warnings and deadlines now. For an injected clock
  // that jumps; the system clock needs no help.
  void Wake();

  TenantUsage Usage(const std::string& tenant);
  // Quarantined bytes and leases.
  std::pair<uint64_t, uint32_t> QuarantineTotals();
  ManagerStats Stats();
  // Per device, its tenant and IOMMU domain as they stand.
  std::vector<vfio::DeviceDomain> DeviceDomains() {
    return source_->DeviceDomains();
  }
  uint64_t page_size() const { return page_size_; }
  const ManagerOptions& options() const { return opts_; }

 private:
  using Outbox = std::vector<Completion>;

  // Allocation.
  absl::Status CheckQuota(const Tenant& t, uint64_t bytes, bool adding)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Tries to serve `p` now. OK: taken (a grant committing or a reclaim
  // started; *done moved). Else why not, with a FailReason.
  absl::Status TryServe(const Tenant& t, const AllocateParams& p,
                        const std::string& fp, uint64_t handle,
                        absl::Time deadline, absl::Time since, AllocDone* done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Grant(const Tenant& t, const AllocateParams& p, const std::string& fp,
             const pglist::Allocation& a, absl::string_view path,
             AllocDone done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `mapped`: the fate of the map into the tenant's devices.
  void OnGrantRecorded(const std::string& id, const absl::Status& s,
                       const absl::Status& mapped);
  void StartReclaim(const Tenant& t, const AllocateParams& p,
                    const std::string& fp, const pglist::ReclaimPlan& plan,
                    uint64_t handle, absl::Time deadline, absl::Time since,
                    AllocDone done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishReclaim(uint64_t handle, Outbox* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Answers `done` (after the lock) and remembers a final error of a
  // request with an id.
  void Answer(AllocDone done, absl::StatusOr<LeaseInfo> r, const Tenant& t,
              const AllocateParams& p, const std::string& fp, Outbox* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Serves waiters that fit now, oldest first; answers those that never
  // can.
  void RetryWaiters(Outbox* out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string NewLeaseId() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  LeaseInfo MakeInfo(const Tenant& t, const AllocateParams& p,
                     const std::vector<pglist::PageRun>& runs, bool preemptible,
                     absl::string_view path) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  LeaseRun ToLeaseRun(const pglist::PageRun& r)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Lease ends.
  // Ends a lease in memory now: events, counters; its allocation stays.
  // Unless `unmapped` (done already), first unmaps it from its tenant's
  // devices (UnmapFromDevices).
  Lessor::Lease EndNow(const std::string& id,
                       std::optional<LeaseEventInfo::Kind> kind,
                       const std::string& reason, absl::Time deadline,
                       bool unmapped = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Device domains: after this, no device of `tenant` reaches `alloc`'s
  // pages. If the unmap fails the allocation is marked stuck: it is never
  // zeroed or freed by this daemon (a restart reconciles it), and the
  // failure is logged and counted.
  void UnmapFromDevices(const std::string& tenant, pglist::AllocationId alloc)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<vfio::MemorySource::ViewRange> RangesOf(
      pglist::AllocationId alloc) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Memory of a grant that failed after (or while) it was mapped: unmapped,
  // then zeroed (the device may have written) and freed.
  void DropFailedGrant(const std::string& tenant, pglist::AllocationId alloc)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records an ended lease's end (and its memory as to be zeroed under a new
  // scrub row) durably, retrying until the store takes it; then
  // `recorded(row)` runs under the lock.
  void RecordEnd(const Lessor::Lease& l,
                 std::function<void(int64_t row, Outbox*)> recorded)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Leases up to this size that no view reaches are zeroed in their end's
  // change (Release, Revoke) instead of by the scrub thread afterwards.
  static constexpr uint64_t kInlineZeroBytes = 1 << 20;
  // Ends an owner's or admin's lease durably first (Release, Revoke).
  void EndDurably(const std::string& id,
                  std::optional<LeaseEventInfo::Kind> kind,
                  const std::string& reason,
                  std::function<void(absl::Status, const LeaseInfo&)> done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Once no view of `allocs` is left (quarantine), zeroes them (their
  // runs), then deletes `rows` and frees them.
  void ScrubAndFree(std::vector<pglist::AllocationId> allocs,
                    std::vector<int64_t> rows)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ScrubAndFreeNow(std::vector<pglist::AllocationId> allocs,
                       std::vector<int64_t> rows)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends a reclaim that cannot hand its window over: answered `why`, its
  // held pages freed, its victims zeroed and freed once released (or held
  // back if stuck). Used when the victims stayed quarantined past the
  // deadline, and when a victim could not be unmapped from its devices.
  void AbandonReclaim(uint64_t handle, absl::Status why, Outbox* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unpin(pglist::AllocationId alloc);
  // Registers the views a previous daemon made (persistent sources):
  // those of live leases and of ended ones in `ended` (lease id -> the
  // allocation being zeroed and the lease's tenant, whose quota a
  // quarantine counts against); others are destroyed.
  struct EndedLease {
    pglist::AllocationId alloc;
    std::string tenant;
  };
  void RestoreViews(const std::map<std::string, EndedLease>& ended)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks `v` counted if the kernel counts its references (a dma-buf), with
  // the source's own references. A `fresh` view (nothing handed out yet)
  // checks that the count is exactly those and the daemon's descriptor; if
  // not, counts are not trusted from then on.
  void CountReferences(LeaseViews::View& v, bool fresh)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  LeaseInfo QuarantinedInfo(const LeaseViews::View& v) const;
  // Deletes `rows` durably (retrying), then frees `allocs`.
  void FreeWhenRecorded(std::vector<pglist::AllocationId> allocs,
                        std::vector<int64_t> rows)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Emit(const std::string& tenant, const LeaseEventInfo& e)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The store.
  // A change that cannot be undone: retried until it succeeds; meanwhile
  // the store is not writable (NOT_SERVING). `ok` runs under the lock.
  void SubmitDurable(Committer::Change change, std::function<void(Outbox*)> ok)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StoreFailed(const absl::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs `out` and tells the health callback if serving changed. Call
  // without the lock.
  void Flush(Outbox* out);
  bool ServingLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  SegmentView View(const pglist::SegmentInfo& s)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaintenanceLoop();
  // Wakes the maintenance thread if it sleeps past `t` (clock_ time): a
  // grant or renewal with a later deadline does not wake it.
  void WakeMaintenanceBy(absl::Time t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ScrubLoop();
  void QuarantineLoop();

  struct Deferred {
    Committer::Change change;
    std::function<void(Outbox*)> ok;
  };
  struct SegmentRecord {
    pglist::SegmentId id;
    std::string path;
    uint64_t file_offset;
    bool added;  // by AddSegment (now or before a restart), not the config
  };

  const ManagerOptions opts_;
  vfio::MemorySource* const source_;
  const Clock* const clock_;
  TenantRegistry* const tenants_;
  LeaseStore* const store_;
  uint64_t page_size_ = 0;
  Committer committer_;
  // Access token hashes of the live leases, with a lock of its own (after
  // mu_): TenantOfAccessToken never takes mu_.
  AccessTokens access_tokens_;
  absl::Mutex segment_mu_;  // serialises hot add and remove; before mu_

  absl::Mutex mu_;
  absl::CondVar wake_maintenance_;
  absl::CondVar wake_scrubber_;
  absl::CondVar wake_quarantine_;
  std::optional<pglist::Pool> pool_ ABSL_GUARDED_BY(mu_);
  std::map<pglist::Pfn, SegmentRecord> backing_ ABSL_GUARDED_BY(mu_);
  Lessor lessor_ ABSL_GUARDED_BY(mu_);
  WaitQueue waiters_ ABSL_GUARDED_BY(mu_);
  Reclaimer reclaims_ ABSL_GUARDED_BY(mu_);
  Scrubber scrubber_ ABSL_GUARDED_BY(mu_);
  LeaseViews views_ ABSL_GUARDED_BY(mu_);
  absl::Time next_scan_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  // Until when the maintenance thread sleeps; InfinitePast while awake.
  absl::Time maintenance_wake_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t quarantine_scans_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration last_scan_ ABSL_GUARDED_BY(mu_);
  int last_scan_processes_ ABSL_GUARDED_BY(mu_) = 0;
  size_t last_scan_uninspected_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_unverified_log_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // Whether dma-buf counts are understood here (CountReferences).
  bool counts_trusted_ ABSL_GUARDED_BY(mu_) = true;
  // Why the /proc scan cannot see every process (ScanBlindness), or "".
  // Set in Start, before the threads.
  std::string blind_;
  // Answers waiting on a grant being recorded (a retry attaches), and on an
  // end being recorded (a second Release).
  std::map<std::string, std::vector<AllocDone>> granting_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<std::function<void(absl::Status)>>> ending_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<pglist::AllocationId> scrubbing_ ABSL_GUARDED_BY(mu_);
  struct Sink {
    std::string tenant;
    EventSink sink;
    CloseSink close;
  };
  std::map<uint64_t, Sink> sinks_ ABSL_GUARDED_BY(mu_);
  std::vector<Deferred> deferred_ ABSL_GUARDED_BY(mu_);
  uint32_t unrecorded_ ABSL_GUARDED_BY(mu_) = 0;  // durable changes failing
  bool store_writable_ ABSL_GUARDED_BY(mu_) = true;
  bool probing_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time next_store_retry_ ABSL_GUARDED_BY(mu_);
  int64_t next_scrub_row_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t next_handle_ ABSL_GUARDED_BY(mu_) = 1;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool threads_stop_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t waits_started_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t lease_expirations_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, uint64_t> revocations_ ABSL_GUARDED_BY(mu_);
  uint64_t reclaimed_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t store_errors_ ABSL_GUARDED_BY(mu_) = 0;
  // Zeroing inside a lease's end that failed (the scrubber took over).
  uint64_t inline_zero_errors_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dma_map_errors_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dma_unmap_errors_ ABSL_GUARDED_BY(mu_) = 0;
  // Allocations whose unmap failed: never zeroed or freed (see
  // UnmapFromDevices).
  std::set<pglist::AllocationId> dma_stuck_ ABSL_GUARDED_BY(mu_);
  Histogram wait_seconds_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Histogram> alloc_seconds_ ABSL_GUARDED_BY(mu_);

  absl::Mutex health_mu_;  // after mu_
  std::function<void(bool)> health_fn_ ABSL_GUARDED_BY(health_mu_);
  std::optional<bool> health_told_ ABSL_GUARDED_BY(health_mu_);

  std::thread maintenance_;
  std::thread scrubber_thread_;
  std::thread quarantine_thread_;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_POOL_MANAGER_H_
