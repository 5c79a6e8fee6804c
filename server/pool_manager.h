// SPDX-License-Identifier: Apache-2.0
// The daemon's core: the coordinator of its components around one lock
// (docs/architecture.md). Every change happens in a Turn (core/turn.h):
// Locked() takes the lock, runs a step, retries the waiting requests once
// if memory came back, drops the lock and runs what the turn queued.
// Rules: a grant, renewal, release or revocation is answered once the
// store has it (else UNAVAILABLE, nothing changed). An expiry's or a
// preemption's end and the end of zeroing cannot be undone: while their
// write fails, their pages stay out of the pool and it is NOT_SERVING.
// Memory coming back stays allocated in the core until its zeroing is
// recorded; memory that could not be zeroed stays out.
//
// State: the lock; Parts (the core, the leases, waiters, reclaims, memory
// being zeroed, views, and the flows that act on them); health; threads:
// maintenance (expiry, warnings, wait deadlines, reclaim grace periods,
// store probes), scrub, quarantine, and the Committer's.
// Thread safety: thread-safe. Completions (AllocDone, LeaseDone, ...) run
// without the lock, maybe before the call that took them returns; event
// sinks run under it and must not block or call back into the manager.
// I/O: no store I/O under the lock: the Committer writes (on the calling
// RPC or scrub thread once it has dropped the lock, or on its own thread);
// zeroing, the /proc scan and a hot add's or remove's segment work run
// with no lock held; Stats() reads the device domains after it.
// Memory-source I/O under the lock, the named exceptions: an unmap from
// the tenant's devices before the pages are zeroed (DeviceMap::Unmap: an
// expiry's or preemption's end, in its turn; a dropped grant; an end whose
// unmap before its commit failed), the re-map of a lease whose end failed
// to record (DeviceMap::MapAgain), a view's creation at its first hand-out
// and its destruction when its quarantine ends (Quarantine: the view and
// its lease change together), and at start the domains' reconciliation
// and the views' restore (nothing else runs yet).
// REQUIRES: `source` (started before Start), `clock`, `tenants` and `store`
// (if any) outlive it. Allocate, Renew, Release and Revoke commit and
// answer on the calling thread when no other is committing: call them
// holding no lock that a completion takes.
#ifndef PHYSPOOL_SERVER_POOL_MANAGER_H_
#define PHYSPOOL_SERVER_POOL_MANAGER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "pglist/pool.h"
#include "server/core/clock.h"
#include "server/core/options.h"
#include "server/core/turn.h"
#include "server/core/types.h"
#include "server/lease/access_tokens.h"
#include "server/lease/tenants.h"
#include "server/manager_stats.h"
#include "server/memory/occupancy.h"
#include "server/memory/quarantine.h"
#include "server/store/lease_store.h"
#include "vfio/memory_source.h"

namespace physpool::server {

struct Parts;  // the shelves and flows (lease/parts.h)

class PoolManager final : private TurnHost, private Coordinator {
 public:
  // `store` (may be null: nothing persists) must outlive the manager.
  PoolManager(ManagerOptions options, vfio::MemorySource* source,
              const Clock* clock, TenantRegistry* tenants,
              LeaseStore* store = nullptr);
  ~PoolManager() override;

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

  // The CPU view of the caller's live lease (memory/quarantine.h): a new
  // descriptor (the caller closes it) that maps the runs back to back,
  // run i at offsets[i], and a pin to hold until the descriptor is out of
  // the caller's hands and in the receiver's (the fd socket: the peer has
  // read it). FAILED_PRECONDITION if per-lease views are off or the lease
  // is ending; the source's error if the view cannot be made.
  using Pin = Quarantine::Pin;
  using ViewHandout = Quarantine::Handout;
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
  // (without the lock) if the manager ends the stream (shutdown, reload).
  absl::StatusOr<uint64_t> Subscribe(const std::string& tenant, EventSink sink,
                                     CloseSink close = nullptr);
  void Unsubscribe(uint64_t id);
  // Ends the Watch streams of tenants not in `tenants` (a configuration
  // reload removed them), answered `why`.
  void EndStreamsExcept(const std::set<std::string>& tenants,
                        const absl::Status& why);

  std::vector<SegmentView> Segments();  // pool_segments.cc
  absl::StatusOr<SegmentView> SetDraining(uint32_t segment_id, bool drain);
  // Hot add and remove: the segment is prepared (backing, mapping) and torn
  // down outside the lock; the store records it before the answer. Only
  // segments added with AddSegment can be removed: a configured one is
  // FAILED_PRECONDITION (drain it, then take it out of the config).
  absl::StatusOr<SegmentView> AddSegment(uint64_t bytes, uint32_t freelist,
                                         int32_t numa);
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
  std::pair<uint64_t, uint32_t> QuarantineTotals();  // bytes, leases
  ManagerStats Stats();                              // stats.cc
  // Per device, its tenant and IOMMU domain as they stand (stats.cc).
  std::vector<vfio::DeviceDomain> DeviceDomains();
  uint64_t page_size() const { return page_size_; }
  const ManagerOptions& options() const { return opts_; }

 private:
  // Coordinator and TurnHost.
  void Locked(absl::FunctionRef<void(Turn&)> fn) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void WakeMaintenanceBy(absl::Time t) override;
  void WakeMaintenance() override;
  void WakeScrubber() override;
  void ScanSoon() override;
  bool Accepting() const override;

  // A turn of the lock held by this thread, and its end: the waiting
  // requests retried while memory came back (under the lock), then the
  // lock dropped, the turn's work run and health told, and the lock taken
  // again (the loops in threads.cc).
  Turn NewTurn() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EndTurn(Turn& t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs `later` and tells the health callback if serving changed.
  // REQUIRES: mu_ not held.
  void Flush(std::vector<std::function<void()>> later);
  bool ServingLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // restore.cc: the store's leases, memory to zero and views back.
  absl::Status Restore(Turn& t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaintenanceLoop();  // threads.cc
  void ScrubLoop();
  void QuarantineLoop();

  const ManagerOptions opts_;
  vfio::MemorySource* const source_;
  const Clock* const clock_;
  TenantRegistry* const tenants_;
  LeaseStore* const store_;
  const uint64_t page_size_;
  // Access token hashes of the live leases, with a lock of its own (after
  // mu_): TenantOfAccessToken never takes mu_.
  AccessTokens access_tokens_;
  absl::Mutex segment_mu_;  // serialises hot add and remove; before mu_

  mutable absl::Mutex mu_;
  absl::CondVar wake_maintenance_;
  absl::CondVar wake_scrubber_;
  absl::CondVar wake_quarantine_;
  // Everything the turns change (pool_manager.cc); built in the
  // constructor, used under mu_.
  std::unique_ptr<Parts> parts_;
  absl::Status pool_status_;  // the core's options, refused or not
  // Until when the maintenance thread sleeps; InfinitePast while awake.
  absl::Time maintenance_wake_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool threads_stop_ ABSL_GUARDED_BY(mu_) = false;

  absl::Mutex health_mu_;  // after mu_
  std::function<void(bool)> health_fn_ ABSL_GUARDED_BY(health_mu_);
  std::optional<bool> health_told_ ABSL_GUARDED_BY(health_mu_);

  std::thread maintenance_;
  std::thread scrubber_thread_;
  std::thread quarantine_thread_;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_POOL_MANAGER_H_
