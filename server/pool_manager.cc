#include "server/pool_manager.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "server/log.h"
#include "server/request_fingerprint.h"
#include "util/errno_status.h"
#include "util/status_macros.h"

namespace physpool::server {
namespace {

using pglist::FailReason;
using pglist::FailReasonOf;

constexpr size_t kEndedMemory =
    16384;  // ended leases and failed request ids remembered

std::vector<double> SecondsBuckets() {
  return {1e-6, 5e-6, 2e-5, 1e-4, 5e-4, 2e-3, 1e-2, 5e-2, 0.25, 1, 5, 30};
}

const char* KindName(LeaseEventInfo::Kind k) {
  switch (k) {
    case LeaseEventInfo::Kind::kExpiring:
      return "expiring";
    case LeaseEventInfo::Kind::kExpired:
      return "expired";
    case LeaseEventInfo::Kind::kRevoked:
      return "revoked";
    case LeaseEventInfo::Kind::kPreempted:
      return "preempted";
    case LeaseEventInfo::Kind::kOverflow:
      return "overflow";
  }
  return "ended";
}

// Reasons a request may wait for: frees could serve it.
bool Waitable(FailReason r) {
  return r == FailReason::kNoSpace || r == FailReason::kReserve ||
         r == FailReason::kNoReclaim;
}

// Final answers a request id remembers: a retry gets the same. Not
// remembered: what a retry may well get past (the store, shutdown,
// cancellation, a retry that took over).
bool Remembered(absl::StatusCode c) {
  return c == absl::StatusCode::kInvalidArgument ||
         c == absl::StatusCode::kResourceExhausted ||
         c == absl::StatusCode::kDeadlineExceeded ||
         c == absl::StatusCode::kPermissionDenied;
}

absl::Status StoreUnavailable(const absl::Status& s, absl::string_view what) {
  return absl::UnavailableError(
      absl::StrCat("the lease store failed: ", s.message(), "; ", what,
                   " (retry; docs/operations.md, \"The store\")"));
}

}  // namespace

PoolManager::PoolManager(ManagerOptions options, vfio::MemorySource* source,
                         const Clock* clock, TenantRegistry* tenants,
                         LeaseStore* store)
    : opts_(std::move(options)),
      source_(source),
      clock_(clock),
      tenants_(tenants),
      store_(store),
      committer_(store),
      lessor_(opts_.expiring_warning, kEndedMemory, &access_tokens_),
      waiters_(opts_.starvation),
      scrubber_(opts_.scrub_retry),
      wait_seconds_(SecondsBuckets()) {}

PoolManager::~PoolManager() { Shutdown(); }

absl::Status PoolManager::Start() {
  page_size_ = source_->page_size();
  if (opts_.per_lease_views) {
    blind_ = ScanBlindness();
    if (!blind_.empty()) {
      Log(LogLevel::kWarn,
          "the quarantine's /proc scan cannot see every process: ended "
          "leases whose views the kernel does not count stay quarantined",
          {F("why", blind_)});
    }
  }
  pglist::PoolOptions po;
  po.page_size = page_size_;
  po.strategy = opts_.strategy;
  po.placement = opts_.placement;
  po.reserve_pages =
      pglist::PageCount((opts_.reserve_bytes + page_size_ - 1) / page_size_);
  ASSIGN_OR_RETURN(pglist::Pool pool, pglist::Pool::Create(po));
  std::map<pglist::Pfn, SegmentRecord> backing;
  std::set<uint64_t> added;  // at run time, before a restart
  for (const StoredSegment& a :
       store_ != nullptr ? store_->segments() : std::vector<StoredSegment>{}) {
    added.insert(a.iova);
  }
  for (const vfio::BackedSegment& seg : source_->segments()) {
    ASSIGN_OR_RETURN(pglist::SegmentId id, pool.AddSegment(seg.spec));
    backing[pglist::Pfn(seg.spec.iova / page_size_)] = {
        id, seg.path, seg.file_offset, added.count(seg.spec.iova) > 0};
  }
  {
    absl::MutexLock l(&mu_);
    pool_ = std::move(pool);
    backing_ = std::move(backing);
    if (store_ != nullptr) {
      next_scrub_row_ = store_->next_scrub_row();
      // Zeroed (below) once the views of the leases they were are
      // registered: those still held stay quarantined.
      std::vector<std::pair<pglist::AllocationId, int64_t>> to_zero;
      std::map<std::string, EndedLease> ended;
      for (const StoredScrub& sc : store_->scrubs()) {
        auto a = pool_->Claim(sc.runs, false);
        if (!a.ok()) {
          return absl::FailedPreconditionError(
              absl::StrCat("the store's memory to zero does not fit the pool: ",
                           a.status().message()));
        }
        scrubbing_.insert(a->id);
        to_zero.push_back({a->id, sc.row});
        if (!sc.lease.empty()) ended[sc.lease] = {a->id, sc.tenant};
      }
      for (const StoredLease& sl : store_->leases()) {
        auto a = pool_->Claim(sl.runs, sl.preemptible);
        if (!a.ok()) {
          return absl::FailedPreconditionError(
              absl::StrCat("stored lease ", sl.id,
                           " does not fit the pool: ", a.status().message()));
        }
        Lessor::Lease l;
        l.alloc = a->id;
        l.state = Lessor::State::kLive;
        l.request_fp = sl.request_fp;
        LeaseInfo& info = l.info;
        info.id = sl.id;
        info.tenant = sl.tenant;
        info.preemptible = sl.preemptible;
        info.ttl = absl::Seconds(sl.ttl_seconds);
        info.expires = absl::FromUnixMillis(sl.expires_unix_ms);
        info.path = sl.path;
        info.label = sl.label;
        info.request_id = sl.request_id;
        info.access_sha256 = sl.access_sha256;
        for (const pglist::PageRun& r : a->runs) {
          info.runs.push_back(ToLeaseRun(r));
          info.bytes += info.runs.back().bytes;
        }
        lessor_.Add(std::move(l));
      }
      // The device domains map exactly the live leases, before any memory
      // of an ended one is zeroed and reused.
      std::vector<vfio::MemorySource::LiveLease> live;
      for (const StoredLease& sl : store_->leases()) {
        if (!source_->HasDevices(sl.tenant)) continue;
        vfio::MemorySource::LiveLease ll{sl.tenant, {}};
        for (const LeaseRun& r : lessor_.Find(sl.id)->info.runs)
          ll.runs.push_back({r.iova, r.bytes});
        live.push_back(std::move(ll));
      }
      ASSIGN_OR_RETURN(const vfio::MemorySource::Reconciled rec,
                       source_->Reconcile(live));
      const std::vector<vfio::DeviceDomain> domains = source_->DeviceDomains();
      if (std::any_of(
              domains.begin(), domains.end(), [](const vfio::DeviceDomain& d) {
                return !d.device.tenant.empty();
              })) {  // tenant domains only: the pool's is not reconciled
        Log(rec.map_errors ? LogLevel::kWarn : LogLevel::kInfo,
            "device domains reconciled",
            {F("kept", rec.kept), F("unmapped", rec.unmapped),
             F("mapped", rec.mapped), F("map_errors", rec.map_errors)});
      }
      RestoreViews(ended);
      for (const auto& [alloc, row] : to_zero) ScrubAndFree({alloc}, {row});
      Log(LogLevel::kInfo, "leases restored",
          {F("leases", store_->leases().size()),
           F("zeroing", store_->scrubs().size()),
           F("voided_by_reboot", store_->voided_leases())});
    }
    started_ = true;
  }
  maintenance_ = std::thread([this] { MaintenanceLoop(); });
  scrubber_thread_ = std::thread([this] { ScrubLoop(); });
  quarantine_thread_ = std::thread([this] { QuarantineLoop(); });
  Outbox none;
  Flush(&none);
  return absl::OkStatus();
}

void PoolManager::Shutdown() {
  Outbox out;
  std::vector<CloseSink> closes;
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;
    stopping_ = true;
    const absl::Status gone = absl::UnavailableError(
        "physpoold is shutting down; retry with the same request_id");
    waiters_.Drain([&](Waiter w) {
      Answer(std::move(w.done), gone, w.tenant, w.params, w.fingerprint, &out);
    });
    reclaims_.ForEach([&](PendingReclaim& r) {
      if (r.done) {
        out.push_back([d = std::move(r.done), gone] { d(gone); });
        r.done = nullptr;
      }
    });
    for (auto& [id, s] : sinks_) {
      if (s.close) closes.push_back(std::move(s.close));
    }
    sinks_.clear();
    Log(LogLevel::kDebug, "shutdown: answering in-flight requests",
        {F("answers", out.size()), F("watch_streams", closes.size())});
  }
  Flush(&out);
  const absl::Status ended =
      absl::UnavailableError("physpoold is shutting down");
  for (auto& c : closes) c(ended);
  {
    absl::MutexLock l(&mu_);
    threads_stop_ = true;
    wake_maintenance_.SignalAll();
    wake_scrubber_.SignalAll();
    wake_quarantine_.SignalAll();
  }
  if (maintenance_.joinable()) maintenance_.join();
  if (scrubber_thread_.joinable()) scrubber_thread_.join();
  if (quarantine_thread_.joinable()) quarantine_thread_.join();
  // What is in flight is applied and answered; zeroing not finished is
  // redone at the next start (the store lists it).
  committer_.Stop();
}

void PoolManager::SetHealthCallback(std::function<void(bool)> f) {
  {
    absl::MutexLock l(&health_mu_);
    health_fn_ = std::move(f);
    health_told_.reset();
  }
  Outbox none;
  Flush(&none);
}

bool PoolManager::ServingLocked() const {
  return started_ && !stopping_ && store_writable_;
}

void PoolManager::Flush(Outbox* out) {
  for (auto& c : *out) c();
  out->clear();
  bool serving;
  {
    absl::MutexLock l(&mu_);
    serving = ServingLocked();
  }
  absl::MutexLock l(&health_mu_);
  if (health_fn_ && health_told_ != serving) {
    health_told_ = serving;
    health_fn_(serving);
  }
}

// --- Allocation --------------------------------------------------------------

absl::Status PoolManager::CheckQuota(const Tenant& t, uint64_t bytes,
                                     bool adding) {
  TenantUsage u = lessor_.Usage(t.name);
  // Memory the tenant's ended leases still reach counts as its own.
  const uint64_t quarantined = views_.QuarantinedBytesOf(t.name);
  u.bytes += quarantined;
  const TenantUsage pending = reclaims_.Pending(t.name);
  u.bytes += pending.bytes;
  u.leases += pending.leases;
  const TenantLimits limits = tenants_->ByName(t.name).value_or(t).limits;
  const uint32_t more = adding ? 1 : 0;
  const uint64_t more_bytes = adding ? bytes : 0;
  if (limits.max_leases != 0 && u.leases + more > limits.max_leases) {
    return pglist::FailWith(
        absl::StatusCode::kResourceExhausted, FailReason::kNeverFits,
        absl::StrCat("quota: tenant \"", t.name, "\" holds ", u.leases,
                     pending.leases ? " (with reclaims in progress)" : "",
                     " of its ", limits.max_leases, " leases"));
  }
  if (limits.max_bytes != 0 && u.bytes + more_bytes > limits.max_bytes) {
    return pglist::FailWith(
        absl::StatusCode::kResourceExhausted, FailReason::kNeverFits,
        absl::StrCat("quota: tenant \"", t.name, "\" holds ", u.bytes,
                     pending.bytes ? " (with reclaims in progress)" : "",
                     quarantined ? absl::StrCat(" (", quarantined,
                                                " of them quarantined: ended "
                                                "leases it still maps)")
                                 : "",
                     " of its ", limits.max_bytes, " bytes; ", bytes,
                     " more would exceed it"));
  }
  return absl::OkStatus();
}

absl::Status PoolManager::TryServe(const Tenant& t, const AllocateParams& p,
                                   const std::string& fp, uint64_t handle,
                                   absl::Time deadline, absl::Time since,
                                   AllocDone* done) {
  const uint64_t rounded =
      p.req.bytes > ~uint64_t{0} - page_size_
          ? p.req.bytes
          : (p.req.bytes + page_size_ - 1) / page_size_ * page_size_;
  RETURN_IF_ERROR(CheckQuota(t, rounded, true));
  const absl::Time t0 = absl::Now();
  auto a = pool_->Allocate(p.req);
  pglist::Request any_node = p.req;
  any_node.numa = -1;
  if (!a.ok() && p.req.numa >= 0 && !p.numa_strict &&
      FailReasonOf(a.status()) != FailReason::kInvalid) {
    a = pool_->Allocate(any_node);
  }
  const std::string path(a.ok() ? pglist::PathName(a->path) : "failed");
  auto [h, inserted] = alloc_seconds_.try_emplace(path, SecondsBuckets());
  h->second.Observe(absl::ToDoubleSeconds(absl::Now() - t0));
  if (a.ok()) {
    Grant(t, p, fp, *a, pglist::PathName(a->path), std::move(*done));
    return absl::OkStatus();
  }
  if (FailReasonOf(a.status()) != FailReason::kNoSpace || !p.may_reclaim)
    return a.status();
  AllocateParams planned = p;
  if (!p.numa_strict) planned.req = any_node;
  ASSIGN_OR_RETURN(pglist::ReclaimPlan plan, pool_->PlanReclaim(planned.req));
  StartReclaim(t, planned, fp, plan, handle, deadline, since, std::move(*done));
  return absl::OkStatus();
}

std::string PoolManager::NewLeaseId() {
  absl::BitGen gen;
  std::string id;
  do {
    id = absl::StrFormat("l-%016x", absl::Uniform<uint64_t>(gen));
  } while (lessor_.Find(id) != nullptr || lessor_.FindEnded(id) != nullptr);
  return id;
}

LeaseRun PoolManager::ToLeaseRun(const pglist::PageRun& r) {
  auto it = std::prev(backing_.upper_bound(r.start));
  LeaseRun out;
  out.iova = pool_->ToIova(r.start);
  out.bytes = r.pages.value * page_size_;
  out.backing_path = it->second.path;
  out.backing_offset =
      it->second.file_offset + (r.start - it->first).value * page_size_;
  out.segment_id = it->second.id;
  return out;
}

LeaseInfo PoolManager::MakeInfo(const Tenant& t, const AllocateParams& p,
                                const std::vector<pglist::PageRun>& runs,
                                bool preemptible, absl::string_view path) {
  LeaseInfo info;
  info.id = NewLeaseId();
  info.tenant = t.name;
  info.preemptible = preemptible;
  absl::Duration ttl = p.ttl > absl::ZeroDuration() ? p.ttl : opts_.default_ttl;
  info.ttl = std::min(ttl, opts_.max_ttl);
  // Whole milliseconds: what the store keeps is what the tenant is told.
  info.expires =
      absl::FromUnixMillis(absl::ToUnixMillis(clock_->Now() + info.ttl));
  info.path = std::string(path);
  info.label = p.label;
  info.request_id = p.request_id;
  info.access_sha256 = p.access_sha256;
  for (const pglist::PageRun& r : runs) {
    info.runs.push_back(ToLeaseRun(r));
    info.bytes += info.runs.back().bytes;
  }
  return info;
}

namespace {
StoredLease ToStored(const LeaseInfo& info,
                     const std::vector<pglist::PageRun>& runs,
                     const std::string& fp) {
  return {info.id,
          info.tenant,
          runs,
          info.preemptible,
          absl::ToUnixMillis(info.expires),
          absl::ToInt64Seconds(info.ttl),
          info.path,
          info.label,
          info.request_id,
          fp,
          info.access_sha256};
}
}  // namespace

void PoolManager::Grant(const Tenant& t, const AllocateParams& p,
                        const std::string& fp, const pglist::Allocation& a,
                        absl::string_view path, AllocDone done) {
  Lessor::Lease l;
  l.alloc = a.id;
  l.state = Lessor::State::kCommitting;
  l.request_fp = fp;
  l.info = MakeInfo(t, p, a.runs, a.preemptible, path);
  // Nobody may reclaim it before it is granted.
  if (a.preemptible) (void)pool_->SetPreemptible(a.id, false);
  const std::string id = l.info.id;
  StoredLease stored = ToStored(l.info, a.runs, fp);
  // The tenant's devices reach the lease before it is granted: mapped by
  // the committing thread before the transaction, without the lock (the
  // lease is not handed out before its commit, so nobody can end it).
  auto mapped = std::make_shared<absl::Status>();
  Committer::Prepare map;
  if (source_->HasDevices(t.name)) {
    map = [this, tenant = t.name, runs = RangesOf(a.id), mapped] {
      *mapped = source_->MapLease(tenant, runs);
    };
  }
  lessor_.Add(std::move(l));
  granting_[id].push_back(std::move(done));
  committer_.Submit(
      [stored = std::move(stored), mapped](LeaseStore& s) {
        if (!mapped->ok()) return *mapped;  // nothing to record
        return s.PutLease(stored);
      },
      [this, id, mapped](absl::Status s) { OnGrantRecorded(id, s, *mapped); },
      std::move(map));
}

std::vector<vfio::MemorySource::ViewRange> PoolManager::RangesOf(
    pglist::AllocationId alloc) {
  std::vector<vfio::MemorySource::ViewRange> out;
  for (const pglist::PageRun& r : pool_->Find(alloc)->runs)
    out.push_back({pool_->ToIova(r.start), r.pages.value * page_size_});
  return out;
}

void PoolManager::UnmapFromDevices(const std::string& tenant,
                                   pglist::AllocationId alloc) {
  if (!source_->HasDevices(tenant)) return;
  if (absl::Status s = source_->UnmapLease(tenant, RangesOf(alloc)); !s.ok()) {
    ++dma_unmap_errors_;
    dma_stuck_.insert(alloc);
    Log(LogLevel::kError,
        "unmapping an ended lease from its tenant's devices failed: its "
        "memory stays out of the pool until a restart reconciles the "
        "domains",
        {F("tenant", tenant), F("error", s.ToString())});
  }
}

void PoolManager::DropFailedGrant(const std::string& tenant,
                                  pglist::AllocationId alloc) {
  if (!source_->HasDevices(tenant)) {
    (void)pool_->Free(alloc);  // never handed out: still zero
    return;
  }
  UnmapFromDevices(tenant, alloc);
  ScrubAndFreeNow({alloc}, {});  // a device may have written meanwhile
}

void PoolManager::OnGrantRecorded(const std::string& id, const absl::Status& s,
                                  const absl::Status& mapped) {
  Outbox out;
  {
    absl::MutexLock l(&mu_);
    Lessor::Lease* lease = lessor_.Find(id);
    std::vector<AllocDone> dones = std::move(granting_[id]);
    granting_.erase(id);
    if (!mapped.ok()) {
      ++dma_map_errors_;
      Lessor::Lease gone = lessor_.Discard(id);
      DropFailedGrant(gone.info.tenant, gone.alloc);
      for (auto& d : dones)
        out.push_back([d = std::move(d), mapped] { d(mapped); });
      RetryWaiters(&out);
    } else if (s.ok()) {
      lessor_.Activate(id);
      if (lease->info.preemptible)
        (void)pool_->SetPreemptible(lease->alloc, true);
      if (LogEnabled(LogLevel::kDebug)) {
        Log(LogLevel::kDebug, "lease granted",
            {F("lease", id), F("tenant", lease->info.tenant),
             F("bytes", lease->info.bytes), F("path", lease->info.path)});
      }
      WakeMaintenanceBy(lessor_.FirstDeadline(lease->info));
      for (auto& d : dones)
        out.push_back([d = std::move(d), info = lease->info] { d(info); });
    } else {
      StoreFailed(s);
      Lessor::Lease gone = lessor_.Discard(id);
      DropFailedGrant(gone.info.tenant, gone.alloc);
      const absl::Status why = StoreUnavailable(s, "nothing was granted");
      for (auto& d : dones) out.push_back([d = std::move(d), why] { d(why); });
      RetryWaiters(&out);
    }
  }
  Flush(&out);
}

void PoolManager::Answer(AllocDone done, absl::StatusOr<LeaseInfo> r,
                         const Tenant& t, const AllocateParams& p,
                         const std::string& fp, Outbox* out) {
  if (!r.ok() && !p.request_id.empty() && Remembered(r.status().code())) {
    lessor_.RememberFailure(t.name, p.request_id, fp, r.status());
  }
  if (done) out->push_back([d = std::move(done), r = std::move(r)] { d(r); });
}

uint64_t PoolManager::Allocate(const Tenant& tenant, AllocateParams params,
                               absl::Time deadline, AllocDone done) {
  Committer::Scope drive(&committer_);  // commits on this thread
  Outbox out;
  uint64_t handle = 0;
  {
    absl::MutexLock l(&mu_);
    params.req.privileged = tenant.Has(kRolePrivileged);
    params.req.run_cap = opts_.max_runs_per_lease;
    const std::string fp = RequestFingerprint(params);
    const absl::Time now = clock_->Now();
    const std::string& rid = params.request_id;
    auto mismatch = [&](absl::string_view what) {
      return absl::FailedPreconditionError(absl::StrCat(
          "request_id \"", rid, "\" was used for ", what,
          " with other parameters; a retry must repeat the request"));
    };
    const std::optional<std::string> access_owner =
        params.access_sha256.empty()
            ? std::nullopt
            : lessor_.TenantOfAccess(params.access_sha256);
    if (stopping_ || !started_) {
      out.push_back([d = std::move(done)] {
        d(absl::FailedPreconditionError("physpoold is shutting down"));
      });
    } else if (!params.access_sha256.empty() && !opts_.per_lease_views) {
      out.push_back([d = std::move(done)] {
        d(absl::FailedPreconditionError(
            "access_token_sha256 needs per-lease views (isolation: off "
            "hands out whole segments, which reach other leases)"));
      });
    } else if (access_owner && *access_owner != tenant.name) {
      out.push_back([d = std::move(done)] {
        d(absl::InvalidArgumentError(
            "access_token_sha256 is the hash of a token another tenant's "
            "leases carry: choose a new random token"));
      });
    } else if (!rid.empty() && lessor_.ByRequest(tenant.name, rid)) {
      Lessor::Lease* lease = lessor_.ByRequest(tenant.name, rid);
      if (!SameRequest(lease->request_fp, params)) {
        Answer(std::move(done), mismatch("lease " + lease->info.id), tenant,
               params, fp, &out);
      } else if (lease->state == Lessor::State::kCommitting) {
        granting_[lease->info.id].push_back(std::move(done));
      } else {
        out.push_back([d = std::move(done), info = lease->info] { d(info); });
      }
    } else if (auto ended = rid.empty()
                                ? std::nullopt
                                : lessor_.EndedByRequest(tenant.name, rid)) {
      out.push_back([d = std::move(done), ended, rid] {
        d(absl::FailedPreconditionError(
            absl::StrCat("request_id \"", rid, "\" was granted lease ",
                         ended->first, ", which has ended (", ended->second.how,
                         "); a new request needs a new request_id")));
      });
    } else if (auto failure = rid.empty()
                                  ? std::nullopt
                                  : lessor_.FailureOf(tenant.name, rid)) {
      absl::Status s = failure->second == fp
                           ? failure->first
                           : mismatch("a request that failed");
      out.push_back([d = std::move(done), s] { d(s); });
    } else if (Waiter* w = rid.empty() ? nullptr
                                       : waiters_.ByRequest(tenant.name, rid)) {
      if (w->fingerprint != fp) {
        out.push_back(
            [d = std::move(done), s = mismatch("a waiting request")] { d(s); });
      } else {
        // The retry takes over the wait (the first caller is likely gone).
        out.push_back([d = std::move(w->done)] {
          d(absl::AbortedError(
              "a retry with the same request_id took over this wait"));
        });
        w->done = std::move(done);
        w->deadline = std::min(deadline, now + opts_.max_wait);
        handle = w->handle;
        wake_maintenance_.Signal();
      }
    } else if (PendingReclaim* r =
                   rid.empty() ? nullptr
                               : reclaims_.ByRequest(tenant.name, rid)) {
      if (r->fingerprint != fp) {
        out.push_back(
            [d = std::move(done), s = mismatch("a reclaim")] { d(s); });
      } else {
        if (r->done) {
          out.push_back([d = std::move(r->done)] {
            d(absl::AbortedError(
                "a retry with the same request_id took over this request"));
          });
        }
        r->done = std::move(done);
        r->deadline = deadline;
        handle = r->handle;
      }
    } else {
      // wait.max_ms caps what may wait: for memory, or for a reclaim (its
      // grace period, its victims' quarantine).
      if (params.may_wait || params.may_reclaim)
        deadline = std::min(deadline, now + opts_.max_wait);
      handle = next_handle_++;
      absl::Status s;
      if (const Waiter* rival =
              waiters_.StarvingRival(params, now, waiters_.end())) {
        s = pglist::FailWith(
            absl::StatusCode::kResourceExhausted, FailReason::kNoSpace,
            absl::StrCat("no space now: an older waiting request for the "
                         "same memory (",
                         rival->params.req.bytes,
                         " bytes) is served first (docs/api.md, \"Waiting\")"));
      } else {
        s = TryServe(tenant, params, fp, handle, deadline, now, &done);
      }
      if (s.ok()) {
        // Taken: a grant being recorded, or a reclaim in progress.
      } else if (params.may_wait && deadline > now &&
                 Waitable(FailReasonOf(s))) {
        if (waiters_.CountOf(tenant.name) >= opts_.max_waiters_per_tenant) {
          Answer(std::move(done),
                 absl::ResourceExhaustedError(absl::StrCat(
                     "wait.max_waiters_per_tenant: tenant \"", tenant.name,
                     "\" already has ", opts_.max_waiters_per_tenant,
                     " waiting requests")),
                 tenant, params, fp, &out);
          handle = 0;
        } else {
          waiters_.Push({handle, tenant, std::move(params), fp, deadline, now,
                         std::move(done)});
          ++waits_started_;
          wake_maintenance_.Signal();
        }
      } else {
        Answer(std::move(done), s, tenant, params, fp, &out);
        handle = 0;
      }
    }
  }
  Flush(&out);
  return handle;
}

void PoolManager::CancelWait(uint64_t handle) {
  Outbox out;
  {
    absl::MutexLock l(&mu_);
    const absl::Status cancelled =
        absl::CancelledError("the caller cancelled the request");
    if (auto w = waiters_.Remove(handle)) {
      out.push_back([d = std::move(w->done), cancelled] { d(cancelled); });
    } else if (PendingReclaim* r = reclaims_.ByHandle(handle);
               r != nullptr && r->done) {
      // The victims are preempted already; their memory still waits out the
      // grace period, is zeroed and comes back, but becomes no lease.
      out.push_back([d = std::move(r->done), cancelled] { d(cancelled); });
      r->done = nullptr;
    }
  }
  Flush(&out);
}

void PoolManager::RetryWaiters(Outbox* out) {
  if (waiters_.size() == 0) return;
  const absl::Time now = clock_->Now();
  const uint64_t free_pages = pool_->allocatable_free_pages().value;
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    Waiter& w = *it;
    // Cheap first: a request cannot fit in fewer free pages than it needs
    // (a reclaiming one might).
    if (!w.params.may_reclaim &&
        (w.params.req.bytes + page_size_ - 1) / page_size_ > free_pages) {
      ++it;
      continue;
    }
    if (w.deadline <= now ||  // the maintenance thread ends it
        waiters_.StarvingRival(w.params, now, it) != nullptr) {
      ++it;
      continue;
    }
    const absl::Time since = w.since;
    absl::Status s = TryServe(w.tenant, w.params, w.fingerprint, w.handle,
                              w.deadline, since, &w.done);
    if (s.ok()) {
      wait_seconds_.Observe(absl::ToDoubleSeconds(now - since));
      it = waiters_.Erase(it);
    } else if (!Waitable(FailReasonOf(s))) {
      // It can never be served as it stands (quota, never fits): say so now
      // rather than hold others back.
      wait_seconds_.Observe(absl::ToDoubleSeconds(now - since));
      Answer(std::move(w.done), s, w.tenant, w.params, w.fingerprint, out);
      it = waiters_.Erase(it);
    } else {
      ++it;
    }
  }
}

void PoolManager::LimitsChanged() {
  Outbox out;
  {
    absl::MutexLock l(&mu_);
    RetryWaiters(&out);
  }
  Flush(&out);
}

// --- Reclaim -----------------------------------------------------------------

void PoolManager::StartReclaim(const Tenant& t, const AllocateParams& p,
                               const std::string& fp,
                               const pglist::ReclaimPlan& plan, uint64_t handle,
                               absl::Time deadline, absl::Time since,
                               AllocDone done) {
  PendingReclaim r;
  r.handle = handle;
  r.tenant = t;
  r.params = p;
  r.fingerprint = fp;
  r.plan = plan;
  r.bytes = plan.window.pages.value * page_size_;
  r.victims = plan.victims;
  r.ready = clock_->Now() + opts_.reclaim_grace;
  r.deadline = deadline;
  r.since = since;
  r.done = std::move(done);
  std::vector<pglist::PageRun> free_runs = pool_->FreeRunsIn(plan.window);
  if (!free_runs.empty()) {
    auto hold = pool_->Claim(free_runs, false);
    if (hold.ok()) r.hold = hold->id;
  }
  std::vector<std::string> victim_leases;
  for (pglist::AllocationId v : plan.victims) {
    (void)pool_->SetPreemptible(v, false);  // no second reclaim may take it
    if (const std::string* id = lessor_.LeaseOf(v))
      victim_leases.push_back(*id);
  }
  r.unrecorded_ends = static_cast<int>(victim_leases.size());
  const absl::Time ready = r.ready;
  reclaims_.Add(std::move(r));
  for (const std::string& id : victim_leases) {
    Lessor::Lease gone =
        EndNow(id, LeaseEventInfo::Kind::kPreempted,
               absl::StrCat("reclaimed for tenant \"", t.name, "\""), ready);
    const pglist::AllocationId alloc = gone.alloc;
    RecordEnd(gone, [this, handle, alloc](int64_t row, Outbox*) {
      mu_.AssertHeld();
      PendingReclaim* pr = reclaims_.ByHandle(handle);
      if (pr != nullptr) {
        pr->victim_rows.push_back(row);
        --pr->unrecorded_ends;
        wake_maintenance_.Signal();
      } else {
        ScrubAndFree({alloc}, {row});  // the reclaim is gone (shut down)
      }
    });
  }
  Log(LogLevel::kInfo, "reclaim started",
      {F("tenant", t.name), F("victims", plan.victims.size()),
       F("window_iova", pool_->ToIova(plan.window.start)),
       F("bytes", plan.window.pages.value * page_size_)});
  wake_maintenance_.Signal();
}

// The victims' memory is zero: the window becomes the requester's lease,
// or (no longer wanted, too late, over quota now) comes back.
void PoolManager::FinishReclaim(uint64_t handle, Outbox* out) {
  PendingReclaim* r = reclaims_.ByHandle(handle);
  if (r == nullptr) return;
  std::vector<pglist::AllocationId> allocs = r->victims;
  if (r->hold) allocs.push_back(*r->hold);
  const absl::Time now = clock_->Now();
  absl::Status refused;
  if (!r->done) {
    refused = absl::CancelledError("no longer wanted");
  } else if (now > r->deadline) {
    refused = absl::DeadlineExceededError(
        "the deadline passed during the reclaim grace period");
  } else {
    refused = CheckQuota(r->tenant, r->bytes, false);
  }
  wait_seconds_.Observe(absl::ToDoubleSeconds(now - r->since));
  if (!refused.ok()) {
    auto taken = reclaims_.Take(handle);
    if (taken->done) {
      Answer(std::move(taken->done), refused, taken->tenant, taken->params,
             taken->fingerprint, out);
    }
    FreeWhenRecorded(std::move(allocs), std::move(taken->victim_rows));
    return;
  }
  // The lease and the end of the victims' zeroing in one transaction.
  LeaseInfo info = MakeInfo(r->tenant, r->params, {r->plan.window},
                            r->params.req.preemptible, "aggressive");
  StoredLease stored = ToStored(info, {r->plan.window}, r->fingerprint);
  std::vector<int64_t> rows = r->victim_rows;
  committer_.Submit(
      [stored, rows](LeaseStore& s) -> absl::Status {
        for (int64_t row : rows) RETURN_IF_ERROR(s.ScrubDone(row));
        return s.PutLease(stored);
      },
      [this, handle, info, allocs](absl::Status s) {
        Outbox out;
        {
          absl::MutexLock l(&mu_);
          auto taken = reclaims_.Take(handle);
          if (s.ok()) {
            // The plan holds (its victims and free pages were kept for it):
            // the core frees the victims whole and takes the window, and
            // counts the aggressive path's success.
            for (pglist::AllocationId a : allocs) scrubbing_.erase(a);
            if (taken->hold) (void)pool_->Free(*taken->hold);
            for (pglist::AllocationId v : taken->victims)
              (void)pool_->SetPreemptible(v, true);
            const absl::Time t0 = absl::Now();
            auto a = pool_->CommitReclaim(taken->params.req, taken->plan);
            alloc_seconds_.try_emplace("aggressive", SecondsBuckets())
                .first->second.Observe(absl::ToDoubleSeconds(absl::Now() - t0));
            if (!a.ok()) {
              // Cannot happen (the window was kept for it); never strand
              // the victims' memory.
              Log(LogLevel::kError, "reclaim plan did not hold",
                  {F("error", a.status().ToString())});
              for (pglist::AllocationId v : taken->victims)
                (void)pool_->Free(v);
              a = pool_->Claim({taken->plan.window}, false);
            }
            if (!a.ok()) {
              Log(LogLevel::kError, "reclaimed window lost",
                  {F("error", a.status().ToString())});
            } else {
              Lessor::Lease lease;
              lease.alloc = a->id;
              lease.state = Lessor::State::kLive;
              lease.request_fp = taken->fingerprint;
              lease.info = info;
              lessor_.Add(std::move(lease));
              Answer(std::move(taken->done), info, taken->tenant, taken->params,
                     taken->fingerprint, &out);
            }
            RetryWaiters(&out);
          } else {
            StoreFailed(s);
            Answer(std::move(taken->done),
                   StoreUnavailable(s, "nothing was granted"), taken->tenant,
                   taken->params, taken->fingerprint, &out);
            FreeWhenRecorded(allocs, taken->victim_rows);
          }
        }
        Flush(&out);
      });
}

// --- Leases
// --------------------------------------------------------------------

Lessor::Lease PoolManager::EndNow(const std::string& id,
                                  std::optional<LeaseEventInfo::Kind> kind,
                                  const std::string& reason,
                                  absl::Time deadline, bool unmapped) {
  const std::string how = kind ? KindName(*kind) : "released";
  Lessor::Lease l = lessor_.End(id, how);
  (void)pool_->SetPreemptible(l.alloc, false);
  scrubbing_.insert(l.alloc);
  // Before anything else: the tenant's devices lose the pages first.
  if (!unmapped) UnmapFromDevices(l.info.tenant, l.alloc);
  if (views_.Find(l.alloc) != nullptr) {
    views_.End(l.alloc, clock_->Now());
    next_scan_ = absl::Now();  // most views are unmapped by now: look at once
    wake_quarantine_.Signal();
  }
  if (kind) {
    Emit(l.info.tenant, {*kind, id, reason, clock_->Now(), deadline});
    if (*kind == LeaseEventInfo::Kind::kExpired) ++lease_expirations_;
    if (*kind == LeaseEventInfo::Kind::kRevoked) ++revocations_["admin"];
    if (*kind == LeaseEventInfo::Kind::kPreempted) {
      ++revocations_["preempted"];
      reclaimed_bytes_ += l.info.bytes;
    }
  }
  if (LogEnabled(LogLevel::kDebug)) {
    Log(LogLevel::kDebug, "lease ended",
        {F("lease", id), F("tenant", l.info.tenant), F("how", how),
         F("bytes", l.info.bytes)});
  }
  return l;
}

void PoolManager::RecordEnd(const Lessor::Lease& l,
                            std::function<void(int64_t, Outbox*)> recorded) {
  const int64_t row = next_scrub_row_++;
  std::vector<pglist::PageRun> runs = pool_->Find(l.alloc)->runs;
  SubmitDurable(
      [id = l.info.id, tenant = l.info.tenant, row,
       runs](LeaseStore& s) -> absl::Status {
        RETURN_IF_ERROR(s.DeleteLease(id));
        return s.AddScrub(row, runs, id, tenant);
      },
      [row, recorded = std::move(recorded)](Outbox* out) {
        recorded(row, out);
      });
}

void PoolManager::EndDurably(
    const std::string& id, std::optional<LeaseEventInfo::Kind> kind,
    const std::string& reason,
    std::function<void(absl::Status, const LeaseInfo&)> done) {
  Lessor::Lease* lease = lessor_.Find(id);
  lessor_.SetEnding(id, true);
  (void)pool_->SetPreemptible(lease->alloc, false);
  const int64_t row = next_scrub_row_++;
  std::vector<pglist::PageRun> runs = pool_->Find(lease->alloc)->runs;
  // A small lease that no view reaches (no quarantine to wait for) is
  // zeroed as part of its end's change, by the committing thread without
  // the lock, before the transaction: once the end commits its memory is
  // free, with no scrub row, no scrub-thread hand-off and no second commit.
  // If the zeroing fails, the change records a scrub row instead and the
  // scrubber takes over. If the daemon dies before the commit (or the
  // commit fails), the lease is still live with zeroed memory: its owner
  // (or an admin) had asked to end it, and a retry does.
  std::vector<std::pair<uint64_t, uint64_t>> zero_now;
  if (lease->info.bytes <= kInlineZeroBytes &&
      views_.Find(lease->alloc) == nullptr) {
    for (const pglist::PageRun& r : runs)
      zero_now.push_back({pool_->ToIova(r.start), r.pages.value * page_size_});
  }
  // Before the end answers (and before any zeroing) the tenant's devices
  // lose the pages: unmapped in the same step, without the lock. If the
  // commit then fails, the lease stays live and is mapped again.
  auto zeroed = std::make_shared<bool>(false);
  const bool devices = source_->HasDevices(lease->info.tenant);
  auto unmapped = std::make_shared<bool>(!devices);  // nothing to unmap
  Committer::Prepare zero;
  if (!zero_now.empty() || devices) {
    zero = [this, id, zero_now, zeroed, unmapped, devices,
            tenant = lease->info.tenant, ranges = RangesOf(lease->alloc)] {
      if (devices) {
        absl::Status s = source_->UnmapLease(tenant, ranges);
        *unmapped = s.ok();
        if (!s.ok()) return;  // EndNow retries, and holds the memory back
      }
      *zeroed = !zero_now.empty();
      for (const auto& [iova, bytes] : zero_now) {
        if (absl::Status z = source_->Zero(iova, bytes); !z.ok()) {
          Log(LogLevel::kWarn,
              "zeroing at the end of a lease failed; the scrubber retries",
              {F("lease", id), F("error", z.ToString())});
          *zeroed = false;
          break;
        }
      }
    };
  }
  committer_.Submit(
      [id, tenant = lease->info.tenant, row, runs,
       zeroed](LeaseStore& s) -> absl::Status {
        RETURN_IF_ERROR(s.DeleteLease(id));
        if (*zeroed) return absl::OkStatus();
        return s.AddScrub(row, runs, id, tenant);
      },
      [this, id, row, kind, reason, zeroed, unmapped, devices,
       tried = !zero_now.empty(), done = std::move(done)](absl::Status s) {
        Outbox out;
        LeaseInfo info;
        std::vector<std::function<void(absl::Status)>> others;
        {
          absl::MutexLock l(&mu_);
          others = std::move(ending_[id]);
          ending_.erase(id);
          Lessor::Lease* lease = lessor_.Find(id);
          info = lease->info;
          if (s.ok()) {
            Lessor::Lease gone =
                EndNow(id, kind, reason, absl::InfinitePast(), *unmapped);
            if (tried && !*zeroed && *unmapped) ++inline_zero_errors_;
            if (*zeroed) {
              scrubbing_.erase(gone.alloc);
              (void)pool_->Free(gone.alloc);
              RetryWaiters(&out);
            } else {
              ScrubAndFree({gone.alloc}, {row});
            }
          } else {
            StoreFailed(s);
            lessor_.SetEnding(id, false);
            if (lease->info.preemptible)
              (void)pool_->SetPreemptible(lease->alloc, true);
            if (devices && *unmapped) {  // still live: its devices get it back
              if (absl::Status m = source_->MapLease(lease->info.tenant,
                                                     RangesOf(lease->alloc));
                  !m.ok()) {
                ++dma_map_errors_;
                Log(LogLevel::kError,
                    "a lease whose end was not recorded could not be mapped "
                    "for its tenant's devices again",
                    {F("lease", id), F("error", m.ToString())});
              }
            }
          }
        }
        const absl::Status result =
            s.ok() ? s : StoreUnavailable(s, "the lease was not ended");
        done(result, info);
        for (auto& o : others) o(result);
        Flush(&out);
      },
      std::move(zero));
}

void PoolManager::Renew(const Tenant& t, const std::string& id,
                        absl::Duration ttl, LeaseDone done) {
  Committer::Scope drive(&committer_);  // commits on this thread
  Outbox out;
  {
    absl::MutexLock l(&mu_);
    auto lease = lessor_.Owned(t.name, id, t.lease_scope);
    if (!lease.ok()) {
      out.push_back([d = std::move(done), s = lease.status()] { d(s); });
    } else if ((*lease)->state == Lessor::State::kEnding) {
      out.push_back([d = std::move(done), id] {
        d(absl::FailedPreconditionError(
            absl::StrCat("lease ", id, " is being released")));
      });
    } else {
      const LeaseInfo& info = (*lease)->info;
      const absl::Duration new_ttl =
          ttl > absl::ZeroDuration() ? std::min(ttl, opts_.max_ttl) : info.ttl;
      const absl::Time expires =
          absl::FromUnixMillis(absl::ToUnixMillis(clock_->Now() + new_ttl));
      committer_.Submit(
          [id, expires, new_ttl](LeaseStore& s) {
            return s.SetExpiry(id, absl::ToUnixMillis(expires),
                               absl::ToInt64Seconds(new_ttl));
          },
          [this, t, id, expires, new_ttl, done](absl::Status s) {
            absl::StatusOr<LeaseInfo> result;
            {
              absl::MutexLock l(&mu_);
              auto lease = lessor_.Owned(t.name, id, t.lease_scope);
              if (!s.ok()) {
                StoreFailed(s);
                result = StoreUnavailable(s, "the lease was not renewed");
              } else if (!lease.ok()) {
                result = lease.status();  // ended meanwhile (expired)
              } else {
                lessor_.SetExpiry(id, expires, new_ttl);
                WakeMaintenanceBy(lessor_.FirstDeadline((*lease)->info));
                result = (*lease)->info;
              }
            }
            done(std::move(result));
            Outbox none;
            Flush(&none);
          });
    }
  }
  Flush(&out);
}

void PoolManager::Release(const Tenant& t, const std::string& id,
                          ReleaseDone done) {
  Committer::Scope drive(&committer_);  // commits on this thread
  Outbox out;
  {
    absl::MutexLock l(&mu_);
    auto lease = lessor_.Owned(t.name, id, t.lease_scope);
    if (!lease.ok()) {
      const Lessor::Ended* e = lessor_.FindEnded(id);
      const bool again = e != nullptr && e->tenant == t.name;
      out.push_back([d = std::move(done), again, s = lease.status()] {
        if (again) {
          d(false);
        } else {
          d(s);
        }
      });
    } else if ((*lease)->state == Lessor::State::kEnding) {
      // Being ended by another call: answer once that is recorded.
      ending_[id].push_back([done](absl::Status s) {
        if (s.ok()) {
          done(false);
        } else {
          done(s);
        }
      });
    } else {
      EndDurably(id, std::nullopt, "released",
                 [done](absl::Status s, const LeaseInfo&) {
                   if (s.ok()) {
                     done(true);
                   } else {
                     done(s);
                   }
                 });
    }
  }
  Flush(&out);
}

void PoolManager::Revoke(const std::string& id, const std::string& reason,
                         LeaseDone done) {
  Committer::Scope drive(&committer_);  // commits on this thread
  Outbox out;
  {
    absl::MutexLock l(&mu_);
    Lessor::Lease* lease = lessor_.Find(id);
    if (lease == nullptr || lease->state == Lessor::State::kCommitting) {
      out.push_back([d = std::move(done), id] {
        d(absl::NotFoundError(absl::StrCat("no live lease ", id)));
      });
    } else if (lease->state == Lessor::State::kEnding) {
      out.push_back([d = std::move(done), id] {
        d(absl::FailedPreconditionError(
            absl::StrCat("lease ", id, " is being released")));
      });
    } else {
      EndDurably(id, LeaseEventInfo::Kind::kRevoked,
                 reason.empty() ? "revoked by an admin" : reason,
                 [done](absl::Status s, const LeaseInfo& info) {
                   if (s.ok()) {
                     done(info);
                   } else {
                     done(s);
                   }
                 });
    }
  }
  Flush(&out);
}

namespace {
// Waits for a callback-style call's answer.
template <typename T, typename Call>
T Await(Call call) {
  absl::Notification n;
  std::optional<T> result;
  call([&](T r) {
    result = std::move(r);
    n.Notify();
  });
  n.WaitForNotification();
  return std::move(*result);
}
}  // namespace

absl::StatusOr<LeaseInfo> PoolManager::Renew(const Tenant& tenant,
                                             absl::string_view id,
                                             absl::Duration ttl) {
  return Await<absl::StatusOr<LeaseInfo>>(
      [&](LeaseDone d) { Renew(tenant, std::string(id), ttl, std::move(d)); });
}

absl::StatusOr<bool> PoolManager::Release(const Tenant& tenant,
                                          absl::string_view id) {
  return Await<absl::StatusOr<bool>>(
      [&](ReleaseDone d) { Release(tenant, std::string(id), std::move(d)); });
}

absl::StatusOr<LeaseInfo> PoolManager::Revoke(absl::string_view id,
                                              absl::string_view reason) {
  return Await<absl::StatusOr<LeaseInfo>>([&](LeaseDone d) {
    Revoke(std::string(id), std::string(reason), std::move(d));
  });
}

std::optional<std::string> PoolManager::TenantOfAccessToken(
    const std::string& sha) {
  return access_tokens_.TenantOf(sha);
}

absl::StatusOr<LeaseInfo> PoolManager::Get(const Tenant& t,
                                           absl::string_view id) {
  absl::MutexLock l(&mu_);
  auto lease = lessor_.Owned(t.name, std::string(id), t.lease_scope);
  if (!lease.ok()) {
    // Ended is ended; the owner also learns why the memory is not back.
    const LeaseViews::View* v = views_.FindLease(std::string(id));
    if (v != nullptr && v->ended && v->info.tenant == t.name &&
        t.lease_scope.empty() &&
        lease.status().code() == absl::StatusCode::kNotFound) {
      const std::string who = Describe(v->holders);
      return absl::NotFoundError(absl::StrCat(
          lease.status().message(), "; its ", v->info.bytes,
          " bytes are quarantined until its view is unmapped",
          who.empty() ? "" : " (held by ", who, who.empty() ? "" : ")"));
    }
    return lease.status();
  }
  return (*lease)->info;
}

absl::StatusOr<LeaseInfo> PoolManager::AdminGet(absl::string_view id) {
  absl::MutexLock l(&mu_);
  const std::string key(id);
  if (const Lessor::Lease* lease = lessor_.Find(key);
      lease != nullptr && lease->state != Lessor::State::kCommitting) {
    return lease->info;
  }
  const LeaseViews::View* v = views_.FindLease(key);
  if (v != nullptr && v->ended) return QuarantinedInfo(*v);
  return absl::NotFoundError(
      absl::StrCat("lease ", id, " is neither live nor quarantined"));
}

LeaseInfo PoolManager::QuarantinedInfo(const LeaseViews::View& v) const {
  LeaseInfo info = v.info;
  info.quarantine = LeaseInfo::Quarantine{v.ended_at, v.holders};
  return info;
}

std::vector<LeaseInfo> PoolManager::Leases(std::optional<std::string> tenant,
                                           const std::string& after,
                                           size_t max) {
  absl::MutexLock l(&mu_);
  std::vector<LeaseInfo> out;
  lessor_.ForEachFrom(after, [&](const Lessor::Lease& lease) {
    if (!tenant || lease.info.tenant == *tenant) out.push_back(lease.info);
    return out.size() < max;
  });
  return out;
}

absl::StatusOr<uint64_t> PoolManager::Subscribe(const std::string& tenant,
                                                EventSink sink,
                                                CloseSink close) {
  absl::MutexLock l(&mu_);
  if (stopping_)
    return absl::FailedPreconditionError("physpoold is shutting down");
  uint32_t streams = 0;
  for (const auto& [id, s] : sinks_) streams += s.tenant == tenant;
  if (streams >= opts_.max_watch_streams_per_tenant) {
    return absl::ResourceExhaustedError(
        absl::StrCat("watch.max_streams_per_tenant: tenant \"", tenant,
                     "\" already has ", streams, " Watch streams"));
  }
  const uint64_t id = next_handle_++;
  sinks_[id] = {tenant, std::move(sink), std::move(close)};
  return id;
}

void PoolManager::Unsubscribe(uint64_t id) {
  absl::MutexLock l(&mu_);
  sinks_.erase(id);
}

void PoolManager::EndStreamsExcept(const std::set<std::string>& tenants,
                                   const absl::Status& why) {
  std::vector<CloseSink> closes;
  {
    absl::MutexLock l(&mu_);
    for (auto it = sinks_.begin(); it != sinks_.end();) {
      if (tenants.count(it->second.tenant)) {
        ++it;
        continue;
      }
      if (it->second.close) closes.push_back(std::move(it->second.close));
      it = sinks_.erase(it);
    }
  }
  for (auto& c : closes) c(why);
}

void PoolManager::Emit(const std::string& tenant, const LeaseEventInfo& e) {
  for (auto& [id, sink] : sinks_) {
    if (sink.tenant == tenant) sink.sink(e);
  }
}

// --- Zeroing and the store --------------------------------------------------

void PoolManager::ScrubAndFree(std::vector<pglist::AllocationId> allocs,
                               std::vector<int64_t> rows) {
  if (views_.AnyView(allocs)) {
    for (pglist::AllocationId a : allocs) scrubbing_.insert(a);
    views_.Gate(allocs, [this, allocs, rows](Outbox*) mutable {
      mu_.AssertHeld();
      ScrubAndFreeNow(std::move(allocs), std::move(rows));
    });
    return;
  }
  ScrubAndFreeNow(std::move(allocs), std::move(rows));
}

void PoolManager::ScrubAndFreeNow(std::vector<pglist::AllocationId> allocs,
                                  std::vector<int64_t> rows) {
  for (pglist::AllocationId a : allocs) {
    if (dma_stuck_.count(a)) {  // a device may still reach it: held back
      for (pglist::AllocationId b : allocs) scrubbing_.insert(b);
      return;
    }
  }
  std::vector<pglist::PageRun> runs;
  for (pglist::AllocationId a : allocs) {
    scrubbing_.insert(a);
    const pglist::Allocation* alloc = pool_->Find(a);
    runs.insert(runs.end(), alloc->runs.begin(), alloc->runs.end());
  }
  ScrubJob job;
  job.runs = std::move(runs);
  job.then = [this, allocs = std::move(allocs),
              rows = std::move(rows)](Outbox*) mutable {
    mu_.AssertHeld();
    FreeWhenRecorded(std::move(allocs), std::move(rows));
  };
  scrubber_.Push(std::move(job));
  wake_scrubber_.Signal();
}

void PoolManager::FreeWhenRecorded(std::vector<pglist::AllocationId> allocs,
                                   std::vector<int64_t> rows) {
  SubmitDurable(
      [rows](LeaseStore& s) -> absl::Status {
        for (int64_t row : rows) RETURN_IF_ERROR(s.ScrubDone(row));
        return absl::OkStatus();
      },
      [this, allocs = std::move(allocs)](Outbox* out) {
        mu_.AssertHeld();
        for (pglist::AllocationId a : allocs) {
          scrubbing_.erase(a);
          (void)pool_->Free(a);
        }
        RetryWaiters(out);
      });
}

void PoolManager::SubmitDurable(Committer::Change change,
                                std::function<void(Outbox*)> ok) {
  auto shared_change = std::make_shared<Committer::Change>(std::move(change));
  committer_.Submit(
      [shared_change](LeaseStore& s) { return (*shared_change)(s); },
      [this, shared_change, ok = std::move(ok)](absl::Status s) {
        Outbox out;
        {
          absl::MutexLock l(&mu_);
          if (s.ok()) {
            ok(&out);
          } else if (!threads_stop_) {
            // Cannot be undone: hold its pages, retry until the store
            // takes it, and say the daemon is not serving meanwhile.
            StoreFailed(s);
            ++unrecorded_;
            deferred_.push_back({*shared_change, ok});
            Log(LogLevel::kError, "store write failed; retrying",
                {F("error", s.ToString()), F("pending", deferred_.size())});
          }
        }
        Flush(&out);
      });
}

void PoolManager::StoreFailed(const absl::Status& s) {
  ++store_errors_;
  if (store_writable_) {
    Log(LogLevel::kError, "lease store not writable: NOT_SERVING",
        {F("error", s.ToString())});
  }
  store_writable_ = false;
  next_store_retry_ = absl::Now() + opts_.store_retry;
  wake_maintenance_.Signal();
}

// --- Threads
// --------------------------------------------------------------------

void PoolManager::ScrubLoop() {
  absl::MutexLock l(&mu_);
  for (;;) {
    const absl::Time now = absl::Now();
    while (!threads_stop_ && !scrubber_.HasWork(now)) {
      const std::optional<absl::Time> retry = scrubber_.NextRetry();
      if (retry) {
        wake_scrubber_.WaitWithDeadline(&mu_, *retry);
        break;
      }
      wake_scrubber_.Wait(&mu_);
    }
    if (threads_stop_) return;
    std::optional<ScrubJob> job = scrubber_.Next(absl::Now());
    if (!job) continue;
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (const auto& r : job->runs)
      ranges.push_back({pool_->ToIova(r.start), r.pages.value * page_size_});
    mu_.Unlock();
    {
      // The end of the zeroing is committed on this thread, not handed on.
      Committer::Scope drive(&committer_);
      absl::Status zeroed;
      for (const auto& [iova, bytes] : ranges) {
        zeroed = source_->Zero(iova, bytes);
        if (!zeroed.ok()) {
          Log(LogLevel::kError,
              "zeroing failed; the memory stays out of the pool",
              {F("iova", iova), F("bytes", bytes),
               F("error", zeroed.ToString())});
          break;
        }
      }
      mu_.Lock();
      Outbox out;
      if (zeroed.ok()) {
        ScrubJob done = scrubber_.Done(*std::move(job));
        done.then(&out);
      } else {
        scrubber_.Failed(*std::move(job), absl::Now());
      }
      mu_.Unlock();
      if (!out.empty()) Flush(&out);
    }
    mu_.Lock();
  }
}

void PoolManager::MaintenanceLoop() {
  absl::MutexLock l(&mu_);
  while (!threads_stop_) {
    Outbox out;
    const absl::Time now = clock_->Now();
    if (!stopping_) {
      for (const std::string& id : lessor_.Due(now)) {
        Lessor::Lease gone = EndNow(id, LeaseEventInfo::Kind::kExpired,
                                    "ttl elapsed", absl::InfinitePast());
        const pglist::AllocationId alloc = gone.alloc;
        RecordEnd(gone, [this, alloc](int64_t row, Outbox*) {
          mu_.AssertHeld();
          ScrubAndFree({alloc}, {row});
        });
      }
      for (const std::string& id : lessor_.TakeWarnings(now)) {
        const LeaseInfo& info = lessor_.Find(id)->info;
        Emit(info.tenant,
             {LeaseEventInfo::Kind::kExpiring, id,
              absl::StrCat("expires in ",
                           absl::FormatDuration(absl::Trunc(
                               info.expires - now, absl::Milliseconds(1)))),
              now, info.expires});
      }
      waiters_.TakeExpired(now, [&](Waiter w) {
        wait_seconds_.Observe(absl::ToDoubleSeconds(now - w.since));
        const absl::Duration waited = now - w.since;
        Answer(std::move(w.done),
               absl::DeadlineExceededError(absl::StrCat(
                   "waited ",
                   absl::FormatDuration(
                       absl::Trunc(waited, absl::Milliseconds(1))),
                   " for ", w.params.req.bytes, " bytes; none came free")),
               w.tenant, w.params, w.fingerprint, &out);
      });
    }
    for (PendingReclaim* r : reclaims_.TakeReady(now)) {
      // Grace is over and the victims' ends are durable: once no view of
      // theirs is left (quarantine), zero their memory, then hand the
      // window over.
      auto zero = [this, handle = r->handle](Outbox* o) {
        mu_.AssertHeld();
        PendingReclaim* pr = reclaims_.ByHandle(handle);
        if (pr == nullptr) return;
        // A victim whose unmap failed is still reachable by its tenant's
        // devices: it is neither zeroed nor handed over (held back as
        // stuck); the reclaim fails.
        for (pglist::AllocationId v : pr->victims) {
          if (!dma_stuck_.count(v)) continue;
          AbandonReclaim(handle,
                         absl::UnavailableError(
                             "a preempted lease could not be unmapped from "
                             "its tenant's devices: its memory stays out of "
                             "the pool until a restart reconciles the domains"),
                         o);
          return;
        }
        std::vector<pglist::PageRun> runs;
        for (pglist::AllocationId v : pr->victims) {
          if (const pglist::Allocation* a = pool_->Find(v))
            runs.insert(runs.end(), a->runs.begin(), a->runs.end());
        }
        ScrubJob job;
        job.runs = std::move(runs);
        job.then = [this, handle](Outbox* done) {
          mu_.AssertHeld();
          FinishReclaim(handle, done);
        };
        scrubber_.Push(std::move(job));
        wake_scrubber_.Signal();
      };
      if (views_.AnyView(r->victims)) {
        views_.Gate(r->victims, zero, r->deadline,
                    [this, handle = r->handle](Outbox* o) {
                      mu_.AssertHeld();
                      AbandonReclaim(
                          handle,
                          absl::DeadlineExceededError(
                              "the deadline passed while the preempted "
                              "leases' memory was quarantined: their tenant "
                              "still maps it (physpoolctl lease get shows "
                              "who)"),
                          o);
                    });
        wake_quarantine_.Signal();
      } else {
        zero(&out);
      }
    }
    // The store: once a probe write succeeds, retry what failed.
    if (!store_writable_ && !probing_ && absl::Now() >= next_store_retry_) {
      probing_ = true;
      committer_.Submit(
          [](LeaseStore& s) { return s.Probe(); },
          [this](absl::Status s) {
            Outbox none;
            {
              absl::MutexLock l(&mu_);
              probing_ = false;
              if (!s.ok()) {
                ++store_errors_;
                next_store_retry_ = absl::Now() + opts_.store_retry;
              } else {
                std::vector<Deferred> again = std::move(deferred_);
                deferred_.clear();
                unrecorded_ -= static_cast<uint32_t>(again.size());
                for (Deferred& d : again) SubmitDurable(d.change, d.ok);
                if (unrecorded_ == 0 && deferred_.empty()) {
                  store_writable_ = true;
                  Log(LogLevel::kInfo, "lease store writable again: SERVING");
                }
              }
              wake_maintenance_.Signal();
            }
            Flush(&none);
          });
    }
    absl::Time next = now + absl::Seconds(1);
    if (auto t = lessor_.NextDeadline()) next = std::min(next, *t);
    if (auto t = waiters_.NextDeadline()) next = std::min(next, *t);
    if (auto t = reclaims_.NextReady()) next = std::min(next, *t);
    if (!out.empty()) {
      mu_.Unlock();
      Flush(&out);
      mu_.Lock();
      continue;
    }
    absl::Duration wait = std::max(absl::ZeroDuration(), next - now);
    if (!store_writable_) wait = std::min(wait, opts_.store_retry);
    // Waiting on the system clock: an injected clock must not be far ahead.
    maintenance_wake_ = now + wait;
    wake_maintenance_.WaitWithTimeout(&mu_, wait);
    maintenance_wake_ = absl::InfinitePast();  // awake: looks at everything
  }
}

// --- Segments, stats ---------------------------------------------------------

SegmentView PoolManager::View(const pglist::SegmentInfo& s) {
  SegmentView v;
  v.info = s;
  for (const auto& [base, rec] : backing_) {
    if (rec.id == s.id) v.backing_path = rec.path;
  }
  for (pglist::AllocationId a : scrubbing_) {
    if (const pglist::Allocation* alloc = pool_->Find(a)) {
      for (const auto& r : alloc->runs) {
        if (s.avail.start <= r.start && r.start < s.avail.end())
          v.scrubbing_pages += r.pages.value;
      }
    }
  }
  return v;
}

std::vector<SegmentView> PoolManager::Segments() {
  absl::MutexLock l(&mu_);
  std::vector<SegmentView> out;
  for (const auto& s : pool_->Segments()) out.push_back(View(s));
  return out;
}

absl::StatusOr<SegmentView> PoolManager::SetDraining(uint32_t segment_id,
                                                     bool drain) {
  Outbox out;
  absl::StatusOr<SegmentView> result;
  {
    absl::MutexLock l(&mu_);
    absl::Status s = drain ? pool_->DrainSegment(segment_id)
                           : pool_->UndrainSegment(segment_id);
    if (!s.ok()) return s;
    RetryWaiters(&out);  // more memory, or never-fits now
    for (const auto& seg : pool_->Segments()) {
      if (seg.id == segment_id) result = View(seg);
    }
  }
  Flush(&out);
  return result;
}

absl::StatusOr<SegmentView> PoolManager::AddSegment(uint64_t bytes,
                                                    uint32_t freelist,
                                                    int32_t numa) {
  absl::MutexLock serial(&segment_mu_);
  {
    absl::MutexLock l(&mu_);
    if (stopping_)
      return absl::FailedPreconditionError("physpoold is shutting down");
  }
  // Backing, mapping, pinning: outside the lock.
  ASSIGN_OR_RETURN(vfio::BackedSegment seg,
                   source_->AddSegment(bytes, freelist, numa));
  absl::StatusOr<pglist::SegmentId> id;
  {
    absl::MutexLock l(&mu_);
    id = pool_->AddSegment(seg.spec);
    if (id.ok()) {
      // No allocation in it before the store knows it: a restart re-creates
      // it from there, and leases in it would not fit the pool otherwise.
      (void)pool_->DrainSegment(*id);
      backing_[pglist::Pfn(seg.spec.iova / page_size_)] = {
          *id, seg.path, seg.file_offset, /*added=*/true};
    }
  }
  if (!id.ok()) {
    (void)source_->RemoveSegment(seg.spec.iova);
    return id.status();
  }
  absl::Notification recorded;
  absl::Status rs;
  committer_.Submit(
      [stored = StoredSegment{seg.spec.iova, bytes, freelist, numa, seg.path}](
          LeaseStore& s) { return s.PutSegment(stored); },
      [&](absl::Status s) {
        rs = s;
        recorded.Notify();
      });
  recorded.WaitForNotification();
  Outbox out;
  absl::StatusOr<SegmentView> result;
  {
    absl::MutexLock l(&mu_);
    if (rs.ok()) {
      (void)pool_->UndrainSegment(*id);
      RetryWaiters(&out);
      for (const auto& s : pool_->Segments()) {
        if (s.id == *id) result = View(s);
      }
      Log(LogLevel::kInfo, "segment added",
          {F("segment", *id), F("iova", seg.spec.iova), F("bytes", bytes),
           F("path", seg.path)});
    } else {
      StoreFailed(rs);
      (void)pool_->RemoveSegment(*id);
      backing_.erase(pglist::Pfn(seg.spec.iova / page_size_));
      result = StoreUnavailable(rs, "the segment was not added");
    }
  }
  if (!rs.ok()) (void)source_->RemoveSegment(seg.spec.iova);
  Flush(&out);
  return result;
}

absl::Status PoolManager::RemoveSegment(uint32_t segment_id) {
  absl::MutexLock serial(&segment_mu_);
  uint64_t iova = 0;
  bool was_draining = false;
  {
    absl::MutexLock l(&mu_);
    auto it =
        std::find_if(backing_.begin(), backing_.end(),
                     [&](const auto& b) { return b.second.id == segment_id; });
    if (it == backing_.end())
      return absl::NotFoundError(absl::StrCat("no segment ", segment_id));
    if (!it->second.added) {
      // The config file makes it again at every start, where leases of a
      // store would expect it as it was (docs/operations.md, "Segments").
      return absl::FailedPreconditionError(absl::StrCat(
          "segment ", segment_id,
          " comes from the configuration file, which makes it again at the "
          "next start: drain it (no new leases land there) and, once it is "
          "empty, take it out of the file and restart; RemoveSegment removes "
          "segments added with AddSegment"));
    }
    for (const auto& s : pool_->Segments()) {
      if (s.id != segment_id) continue;
      if (s.used_pages.value != 0) {
        return absl::FailedPreconditionError(
            absl::StrCat("segment ", segment_id, " still has ",
                         s.used_pages.value, " pages allocated"));
      }
      was_draining = s.draining;
    }
    (void)pool_->DrainSegment(segment_id);  // nothing new while recording
    iova = pool_->ToIova(it->first);
  }
  absl::Notification recorded;
  absl::Status rs;
  committer_.Submit([iova](LeaseStore& s) { return s.DeleteSegment(iova); },
                    [&](absl::Status s) {
                      rs = s;
                      recorded.Notify();
                    });
  recorded.WaitForNotification();
  {
    absl::MutexLock l(&mu_);
    if (!rs.ok()) {
      StoreFailed(rs);
      if (!was_draining) (void)pool_->UndrainSegment(segment_id);
      return StoreUnavailable(rs, "the segment was not removed");
    }
    RETURN_IF_ERROR(pool_->RemoveSegment(segment_id));
    backing_.erase(pglist::Pfn(iova / page_size_));
    Log(LogLevel::kInfo, "segment removed",
        {F("segment", segment_id), F("iova", iova)});
  }
  // Unmapping, unpinning, closing: outside the lock.
  return source_->RemoveSegment(iova);
}

absl::StatusOr<OccupancyPage> PoolManager::Occupancy(
    std::optional<uint32_t> segment_id,
    std::optional<std::pair<uint32_t, uint64_t>> from, size_t max_runs) {
  absl::MutexLock l(&mu_);
  OccupancyPage page;
  // Every allocated run with its state, by address.
  std::map<pglist::Pfn, std::pair<uint64_t, OccupancyState>> used;
  for (const auto& [id, a] : pool_->allocations()) {
    const OccupancyState st = scrubbing_.contains(id)
                                  ? OccupancyState::kScrubbing
                              : a.preemptible ? OccupancyState::kPreemptible
                                              : OccupancyState::kUsed;
    for (const auto& r : a.runs) used[r.start] = {r.pages.value, st};
  }
  bool found = false, started = !from.has_value();
  size_t total = 0;
  for (const auto& s : pool_->Segments()) {
    if (segment_id && s.id != *segment_id) continue;
    found = true;
    if (!started && s.id != from->first) continue;
    const uint64_t skip_below = started ? 0 : from->second;
    started = true;
    std::vector<OccupancyRun> runs;
    pglist::Pfn pos = s.avail.start;
    bool full = false;
    auto add = [&](OccupancyState st, pglist::Pfn at, uint64_t pages) {
      if (pages == 0 || full) return;
      const uint64_t iova = at.value * page_size_;
      if (!runs.empty() && runs.back().state == st &&
          runs.back().iova + runs.back().bytes == iova) {
        runs.back().bytes += pages * page_size_;
        return;
      }
      if (iova + pages * page_size_ <= skip_below) return;
      if (total == max_runs) {
        page.next = {s.id, iova};
        full = true;
        return;
      }
      runs.push_back({st, iova, pages * page_size_});
      ++total;
    };
    for (auto it = used.lower_bound(s.avail.start);
         it != used.end() && it->first < s.avail.end() && !full; ++it) {
      add(OccupancyState::kFree, pos, (it->first - pos).value);
      add(it->second.second, it->first, it->second.first);
      pos = it->first + pglist::PageCount(it->second.first);
    }
    add(OccupancyState::kFree, pos, (s.avail.end() - pos).value);
    if (!runs.empty() || !full)
      page.segments.push_back({View(s), std::move(runs)});
    if (full) break;
  }
  if (segment_id && !found)
    return absl::NotFoundError(absl::StrCat("no segment ", *segment_id));
  if (from && !started)
    return absl::InvalidArgumentError("page_token names no segment");
  return page;
}

void PoolManager::WakeMaintenanceBy(absl::Time t) {
  if (t < maintenance_wake_) wake_maintenance_.Signal();
}

void PoolManager::Wake() {
  absl::MutexLock l(&mu_);
  wake_maintenance_.Signal();
  wake_quarantine_.Signal();
}

TenantUsage PoolManager::Usage(const std::string& tenant) {
  absl::MutexLock l(&mu_);
  return lessor_.Usage(tenant);
}

std::pair<uint64_t, uint32_t> PoolManager::QuarantineTotals() {
  absl::MutexLock l(&mu_);
  return {views_.quarantined_bytes(), views_.quarantined()};
}

ManagerStats PoolManager::Stats() {
  absl::MutexLock l(&mu_);
  ManagerStats s;
  s.pool = pool_->stats();
  s.page_size = page_size_;
  for (const auto& seg : pool_->Segments()) s.segments.push_back(View(seg));
  s.tenants = lessor_.usage();
  s.waits_started = waits_started_;
  s.lease_expirations = lease_expirations_;
  s.revocations = revocations_;
  s.reclaimed_bytes = reclaimed_bytes_;
  s.scrub_backlog_pages = scrubber_.backlog_pages();
  s.scrub_failed_pages = scrubber_.failed_pages();
  s.scrub_errors = scrubber_.errors() + inline_zero_errors_;
  s.store_errors = store_errors_;
  {
    const Committer::Stats c = committer_.stats();
    s.store_transactions = c.transactions;
    s.store_changes = c.changes;
    s.store_led_transactions = c.led;
  }
  s.store_writable = store_writable_;
  s.waiting = static_cast<uint32_t>(waiters_.size() + reclaims_.size());
  s.watch_streams = static_cast<uint32_t>(sinks_.size());
  s.wait_seconds = wait_seconds_;
  s.alloc_seconds = alloc_seconds_;
  s.per_lease_views = opts_.per_lease_views;
  s.views = static_cast<uint32_t>(views_.size());
  s.quarantined_leases = views_.quarantined();
  s.quarantined_bytes = views_.quarantined_bytes();
  s.quarantine_scans = quarantine_scans_;
  s.last_scan_seconds = absl::ToDoubleSeconds(last_scan_);
  s.last_scan_processes = static_cast<uint32_t>(last_scan_processes_);
  s.last_scan_uninspected = static_cast<uint32_t>(last_scan_uninspected_);
  s.quarantined_unverified_bytes = views_.unverified_bytes();
  s.quarantine_blind = !blind_.empty();
  s.devices = source_->DeviceDomains();
  s.dma_map_errors = dma_map_errors_;
  s.dma_unmap_errors = dma_unmap_errors_;
  for (pglist::AllocationId a : dma_stuck_) {
    if (const pglist::Allocation* alloc = pool_->Find(a); alloc != nullptr) {
      for (const pglist::PageRun& r : alloc->runs)
        s.dma_stuck_bytes += r.pages.value * page_size_;
    }
  }
  return s;
}

// --- Per-lease views and the quarantine
// ---------------------------------------

absl::StatusOr<PoolManager::ViewHandout> PoolManager::HandOutView(
    const Tenant& t, const std::string& lease_id) {
  absl::MutexLock l(&mu_);
  if (!opts_.per_lease_views) {
    return absl::FailedPreconditionError(
        "per-lease views are off (isolation: off)");
  }
  if (stopping_)
    return absl::FailedPreconditionError("physpoold is shutting down");
  ASSIGN_OR_RETURN(Lessor::Lease * lease,
                   lessor_.Owned(t.name, lease_id, t.lease_scope));
  if (lease->state != Lessor::State::kLive) {
    return absl::FailedPreconditionError(
        absl::StrCat("lease ", lease_id, " is being released"));
  }
  LeaseViews::View* v = views_.Find(lease->alloc);
  if (v == nullptr) {
    std::vector<vfio::MemorySource::ViewRange> ranges;
    for (const LeaseRun& r : lease->info.runs)
      ranges.push_back({r.iova, r.bytes});
    ASSIGN_OR_RETURN(const int fd, source_->CreateView(lease_id, ranges));
    absl::StatusOr<FileId> file = FileIdOf(fd);
    if (!file.ok()) {
      close(fd);
      source_->DestroyView(lease_id);
      return file.status();
    }
    LeaseViews::View nv;
    nv.alloc = lease->alloc;
    nv.info = lease->info;
    nv.fd = fd;
    nv.file = *file;
    CountReferences(nv, /*fresh=*/true);
    v = &views_.Add(std::move(nv));
  }
  const int copy = fcntl(v->fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) return ErrnoStatus("dup a lease's view", errno);
  ++v->pins;
  ++v->handouts;
  ViewHandout out;
  out.fd = copy;
  uint64_t offset = 0;
  for (const LeaseRun& r : v->info.runs) {
    out.offsets.push_back(offset);
    offset += r.bytes;
  }
  out.pin = std::make_shared<Pin>();
  out.pin->release = [this, alloc = v->alloc] { Unpin(alloc); };
  return out;
}

void PoolManager::Unpin(pglist::AllocationId alloc) {
  absl::MutexLock l(&mu_);
  LeaseViews::View* v = views_.Find(alloc);
  if (v == nullptr) return;
  if (--v->pins == 0 && v->ended) {
    next_scan_ = absl::Now();
    wake_quarantine_.Signal();
  }
}

void PoolManager::CountReferences(LeaseViews::View& v, bool fresh) {
  if (!counts_trusted_) return;
  const std::optional<int64_t> refs = DmaBufReferences(v.fd);
  if (!refs) return;  // not a dma-buf: the scan decides
  const int64_t own = source_->ViewOwnReferences(v.info.id);
  if (fresh && *refs != 1 + own) {
    // Nothing was handed out yet: the count must be the daemon's and the
    // source's references. If it is not, counts are not understood here.
    counts_trusted_ = false;
    Log(LogLevel::kError,
        "a new view's dma-buf reference count is not what the daemon holds: "
        "the quarantine ignores counts from now on (the /proc scan decides)",
        {F("view", v.info.id), F("count", *refs), F("expected", 1 + own)});
    return;
  }
  v.counted = true;
  v.own_refs = own;
}

void PoolManager::RestoreViews(const std::map<std::string, EndedLease>& ended) {
  for (const std::string& name : source_->ViewNames()) {
    const Lessor::Lease* live = lessor_.Find(name);
    auto e = ended.find(name);
    absl::StatusOr<int> fd = absl::NotFoundError("no lease");
    if (live != nullptr || e != ended.end()) fd = source_->OpenView(name);
    absl::StatusOr<FileId> file =
        fd.ok() ? FileIdOf(*fd) : absl::StatusOr<FileId>(fd.status());
    if (!file.ok()) {
      if (fd.ok()) close(*fd);
      // A view of no lease this daemon knows (its memory was freed before
      // the file went): nothing of another tenant is in it.
      Log(LogLevel::kInfo, "removing a view of no lease",
          {F("view", name), F("why", file.status().ToString())});
      source_->DestroyView(name);
      continue;
    }
    LeaseViews::View v;
    v.file = *file;
    v.fd = *fd;
    v.info.id = name;
    CountReferences(v, /*fresh=*/false);
    if (live != nullptr) {
      v.alloc = live->alloc;
      v.info = live->info;
    } else {
      if (!v.counted) {
        close(*fd);  // the scan finds holders by file
        v.fd = -1;
      }
      v.alloc = e->second.alloc;
      v.info.id = name;
      v.info.tenant = e->second.tenant;
      v.info.bytes = 0;
      if (const pglist::Allocation* a = pool_->Find(e->second.alloc)) {
        for (const pglist::PageRun& r : a->runs) {
          v.info.runs.push_back(ToLeaseRun(r));
          v.info.bytes += v.info.runs.back().bytes;
        }
      }
      v.ended = true;
      v.ended_at = clock_->Now();
      next_scan_ = absl::Now();
    }
    views_.Add(std::move(v));
  }
}

void PoolManager::AbandonReclaim(uint64_t handle, absl::Status why,
                                 Outbox* out) {
  std::optional<PendingReclaim> taken = reclaims_.Take(handle);
  if (!taken) return;
  if (taken->done) {
    Answer(std::move(taken->done), std::move(why), taken->tenant, taken->params,
           taken->fingerprint, out);
  }
  if (taken->hold) (void)pool_->Free(*taken->hold);
  ScrubAndFree(taken->victims, taken->victim_rows);  // once released
  RetryWaiters(out);
}

void PoolManager::QuarantineLoop() {
  absl::MutexLock l(&mu_);
  while (!threads_stop_) {
    Outbox out;
    for (auto& then : views_.TakeReady(clock_->Now())) then(&out);
    if (!out.empty()) {
      mu_.Unlock();
      Flush(&out);
      mu_.Lock();
      continue;
    }
    const absl::Time now = absl::Now();
    const bool scan = views_.has_quarantined() && now >= next_scan_;
    if (!scan) {
      absl::Time until =
          views_.has_quarantined() ? next_scan_ : absl::InfiniteFuture();
      if (std::optional<absl::Time> d = views_.NextDeadline()) {
        // Gate deadlines are on the injected clock: look again soon.
        until = std::min(
            until, now + std::max(*d - clock_->Now(), absl::Milliseconds(1)));
      }
      wake_quarantine_.WaitWithDeadline(&mu_, until);
      continue;
    }
    const LeaseViews::ScanSet set = views_.ToScan();
    std::set<FileId> files;
    for (const auto& [file, what] : set.files) files.insert(file);
    mu_.Unlock();
    // Outside the lock. Only this thread closes an ended view's descriptor
    // (Apply), so those of `set` stay open meanwhile.
    const absl::Time t0 = absl::Now();
    LeaseViews::Evidence found;
    found.scan = FindHolders(files, opts_.trusted_holders);
    for (const auto& [file, what] : set.files) {
      if (what.fd < 0) continue;
      if (std::optional<int64_t> refs = DmaBufReferences(what.fd))
        found.others[file] = *refs - 1 - what.own_refs;
    }
    found.blind = blind_;
    const absl::Duration took = absl::Now() - t0;
    mu_.Lock();
    ++quarantine_scans_;
    last_scan_ = took;
    last_scan_processes_ = found.scan.processes;
    last_scan_uninspected_ = found.scan.uninspected.size();
    std::vector<const LeaseViews::View*> newly_held;
    std::vector<LeaseViews::View> gone = views_.Apply(set, found, &newly_held);
    for (const LeaseViews::View* v : newly_held) {
      Log(LogLevel::kWarn,
          "an ended lease is still mapped: its memory is quarantined",
          {F("lease", v->info.id), F("tenant", v->info.tenant),
           F("bytes", v->info.bytes), F("holders", Describe(v->holders))});
    }
    if (views_.unverified_bytes() > 0 &&
        absl::Now() - last_unverified_log_ > absl::Minutes(1)) {
      last_unverified_log_ = absl::Now();
      Log(LogLevel::kWarn,
          "ended leases stay quarantined: the daemon cannot tell that nothing "
          "holds their views (grant it CAP_SYS_PTRACE or run it as root; "
          "docs/security.md, \"The quarantine\")",
          {F("bytes", views_.unverified_bytes()),
           F("uninspected_processes", found.scan.uninspected.size()),
           F("blind", blind_)});
    }
    for (const LeaseViews::View& v : gone) {
      source_->DestroyView(v.info.id);
      if (!v.holders.empty()) {
        Log(LogLevel::kInfo, "quarantine over: the view is no longer held",
            {F("lease", v.info.id), F("tenant", v.info.tenant),
             F("bytes", v.info.bytes)});
      }
    }
    next_scan_ = absl::Now() + opts_.quarantine_scan;
  }
}

}  // namespace physpool::server
