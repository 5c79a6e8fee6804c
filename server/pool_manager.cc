#include "server/pool_manager.h"

#include <algorithm>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/log.h"
#include "util/status_macros.h"

namespace physpool::server {
namespace {

using pglist::FailReason;
using pglist::FailReasonOf;

constexpr size_t kEndedMemory =
    16384;  // ended lease ids remembered (idempotent Release)

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
  }
  return "ended";
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
      wait_seconds_(SecondsBuckets()) {}

PoolManager::~PoolManager() { Shutdown(); }

absl::Status PoolManager::Start() {
  page_size_ = source_->page_size();
  pglist::PoolOptions po;
  po.page_size = page_size_;
  po.strategy = opts_.strategy;
  po.reserve_pages =
      pglist::PageCount((opts_.reserve_bytes + page_size_ - 1) / page_size_);
  ASSIGN_OR_RETURN(pglist::Pool pool, pglist::Pool::Create(po));
  std::map<pglist::Pfn, SegmentRecord> backing;
  for (const vfio::BackedSegment& seg : source_->segments()) {
    ASSIGN_OR_RETURN(pglist::SegmentId id, pool.AddSegment(seg.spec));
    backing[pglist::Pfn(seg.spec.iova / page_size_)] = {id, seg.path,
                                                        seg.file_offset};
  }
  {
    absl::MutexLock l(&mu_);
    pool_ = std::move(pool);
    backing_ = std::move(backing);
    if (store_ != nullptr) {
      for (const StoredScrub& sc : store_->scrubs()) {
        auto a = pool_->Claim(sc.runs, false);
        if (!a.ok()) {
          return absl::FailedPreconditionError(
              absl::StrCat("the store's memory to zero does not fit the pool: ",
                           a.status().message()));
        }
        ScrubAndFree(a->id, sc.row);
      }
      for (const StoredLease& sl : store_->leases()) {
        auto a = pool_->Claim(sl.runs, sl.preemptible);
        if (!a.ok()) {
          return absl::FailedPreconditionError(
              absl::StrCat("stored lease ", sl.id,
                           " does not fit the pool: ", a.status().message()));
        }
        Lease l;
        l.alloc = a->id;
        l.info.id = sl.id;
        l.info.tenant = sl.tenant;
        l.info.preemptible = sl.preemptible;
        l.info.ttl = absl::Seconds(sl.ttl_seconds);
        l.info.expires = absl::FromUnixMillis(sl.expires_unix_ms);
        l.info.path = sl.path;
        l.info.label = sl.label;
        for (const pglist::PageRun& r : a->runs) {
          l.info.runs.push_back(ToLeaseRun(r));
          l.info.bytes += l.info.runs.back().bytes;
        }
        Install(std::move(l));
      }
      Log(LogLevel::kInfo, "leases restored",
          {F("leases", store_->leases().size()),
           F("zeroing", store_->scrubs().size()),
           F("voided_by_reboot", store_->voided_leases())});
    }
    started_ = true;
  }
  maintenance_ = std::thread([this] { MaintenanceLoop(); });
  scrubber_ = std::thread([this] { ScrubLoop(); });
  return absl::OkStatus();
}

void PoolManager::Shutdown() {
  std::vector<Completion> out;
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;
    stopping_ = true;
    const absl::Status gone =
        absl::FailedPreconditionError("physpoold is shutting down");
    for (Waiter& w : waiters_)
      out.push_back([d = std::move(w.done), gone] { d(gone); });
    waiters_.clear();
    for (PendingReclaim& r : reclaims_) {
      out.push_back([d = std::move(r.done), gone] { d(gone); });
    }
    reclaims_.clear();
    wake_maintenance_.SignalAll();
    wake_scrubber_.SignalAll();
  }
  for (auto& c : out) c();
  if (maintenance_.joinable()) maintenance_.join();
  if (scrubber_.joinable()) scrubber_.join();
}

// --- Allocation
// ---------------------------------------------------------------

absl::Status PoolManager::CheckQuota(const Tenant& t, uint64_t bytes) {
  const TenantUsage& u = usage_[t.name];
  const TenantLimits limits = tenants_->ByName(t.name).value_or(t).limits;
  if (limits.max_leases != 0 && u.leases + 1 > limits.max_leases) {
    return pglist::FailWith(
        absl::StatusCode::kResourceExhausted, FailReason::kNeverFits,
        absl::StrCat("quota: tenant \"", t.name, "\" holds ", u.leases,
                     " of its ", limits.max_leases, " leases"));
  }
  if (limits.max_bytes != 0 && u.bytes + bytes > limits.max_bytes) {
    return pglist::FailWith(
        absl::StatusCode::kResourceExhausted, FailReason::kNeverFits,
        absl::StrCat("quota: tenant \"", t.name, "\" holds ", u.bytes,
                     " of its ", limits.max_bytes, " bytes; ", bytes,
                     " more would exceed it"));
  }
  return absl::OkStatus();
}

absl::StatusOr<LeaseInfo> PoolManager::TryAllocate(
    const Tenant& t, const AllocateParams& p, uint64_t handle,
    absl::Time deadline, absl::Time since, AllocDone* done, bool* reclaiming) {
  *reclaiming = false;
  const uint64_t rounded =
      p.req.bytes > ~uint64_t{0} - page_size_
          ? p.req.bytes
          : (p.req.bytes + page_size_ - 1) / page_size_ * page_size_;
  RETURN_IF_ERROR(CheckQuota(t, rounded));
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
  if (a.ok()) return MakeLease(t, p, *a, pglist::PathName(a->path));
  if (FailReasonOf(a.status()) != FailReason::kNoSpace || !p.may_reclaim)
    return a.status();

  // The aggressive path: preempt the cheapest preemptible leases; after the
  // grace period their memory is zeroed and the window handed over.
  const pglist::Request& plan_req = p.numa_strict ? p.req : any_node;
  ASSIGN_OR_RETURN(pglist::ReclaimPlan plan, pool_->PlanReclaim(plan_req));
  const absl::Time now = clock_->Now();
  PendingReclaim r{handle,
                   t,
                   p,
                   plan,
                   plan.victims,
                   {},
                   std::nullopt,
                   now + opts_.reclaim_grace,
                   deadline,
                   since,
                   std::move(*done)};
  r.params.req = plan_req;
  for (pglist::AllocationId v : plan.victims) {
    (void)pool_->SetPreemptible(v, false);  // no second reclaim may take it
    auto lease = lease_of_.find(v);
    if (lease != lease_of_.end()) {
      EndLease(lease->second, LeaseEventInfo::Kind::kPreempted,
               absl::StrCat("reclaimed for tenant \"", t.name, "\""), r.ready,
               false);
    }
  }
  std::vector<pglist::PageRun> free_runs = pool_->FreeRunsIn(plan.window);
  if (!free_runs.empty()) {
    auto hold = pool_->Claim(free_runs, false);
    if (hold.ok()) r.hold = hold->id;
  }
  Log(LogLevel::kInfo, "reclaim started",
      {F("tenant", t.name), F("victims", plan.victims.size()),
       F("window_iova", pool_->ToIova(plan.window.start)),
       F("bytes", plan.window.pages.value * page_size_)});
  reclaims_.push_back(std::move(r));
  wake_maintenance_.Signal();
  *reclaiming = true;
  // Not a result: `done` now belongs to the pending reclaim.
  return absl::AbortedError("reclaim in progress");
}

uint64_t PoolManager::Allocate(const Tenant& tenant, AllocateParams params,
                               absl::Time deadline, AllocDone done) {
  absl::StatusOr<LeaseInfo> result;
  {
    absl::MutexLock l(&mu_);
    if (stopping_ || !started_) {
      result = absl::FailedPreconditionError("physpoold is shutting down");
    } else {
      params.req.privileged = tenant.Has(kRolePrivileged);
      const uint64_t handle = next_handle_++;
      const absl::Time now = clock_->Now();
      bool reclaiming = false;
      if (HeadStarving()) {
        result = pglist::FailWith(absl::StatusCode::kResourceExhausted,
                                  FailReason::kNoSpace,
                                  "no space now: an older waiting request is "
                                  "served first (see docs/api.md)");
      } else {
        result = TryAllocate(tenant, params, handle, deadline, now, &done,
                             &reclaiming);
      }
      if (reclaiming) return handle;
      const FailReason why = FailReasonOf(result.status());
      if (!result.ok() && params.may_wait && deadline > now &&
          (why == FailReason::kNoSpace || why == FailReason::kReserve ||
           why == FailReason::kNoReclaim)) {
        waiters_.push_back({handle, tenant, std::move(params), deadline, now,
                            std::move(done)});
        ++waits_started_;
        wake_maintenance_.Signal();
        return handle;
      }
    }
  }
  done(std::move(result));
  return 0;
}

void PoolManager::CancelWait(uint64_t handle) {
  AllocDone done;
  {
    absl::MutexLock l(&mu_);
    auto it =
        std::find_if(waiters_.begin(), waiters_.end(),
                     [handle](const Waiter& w) { return w.handle == handle; });
    if (it == waiters_.end()) return;
    done = std::move(it->done);
    waiters_.erase(it);
  }
  done(absl::CancelledError("the caller cancelled the wait"));
}

bool PoolManager::HeadStarving() const {
  return !waiters_.empty() &&
         clock_->Now() - waiters_.front().since >= opts_.starvation;
}

void PoolManager::RetryWaiters(std::vector<Completion>* out) {
  const absl::Time now = clock_->Now();
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (it->deadline <= now) {  // the maintenance thread fails it
      ++it;
      continue;
    }
    bool reclaiming = false;
    auto r = TryAllocate(it->tenant, it->params, it->handle, it->deadline,
                         it->since, &it->done, &reclaiming);
    if (reclaiming || r.ok()) {
      wait_seconds_.Observe(absl::ToDoubleSeconds(now - it->since));
      if (r.ok() && !reclaiming) {
        out->push_back(
            [d = std::move(it->done), lease = *std::move(r)] { d(lease); });
      }
      it = waiters_.erase(it);
      continue;
    }
    // A starving head holds the memory that frees up for itself.
    if (it == waiters_.begin() && now - it->since >= opts_.starvation) break;
    ++it;
  }
}

absl::StatusOr<LeaseInfo> PoolManager::MakeLease(const Tenant& t,
                                                 const AllocateParams& p,
                                                 const pglist::Allocation& a,
                                                 absl::string_view path) {
  absl::BitGen gen;
  std::string id;
  do {
    id = absl::StrFormat("l-%016x", absl::Uniform<uint64_t>(gen));
  } while (leases_.count(id) || ended_.count(id));
  absl::Duration ttl = p.ttl > absl::ZeroDuration() ? p.ttl : opts_.default_ttl;
  ttl = std::min(ttl, opts_.max_ttl);
  Lease l;
  l.alloc = a.id;
  LeaseInfo& info = l.info;
  info.id = id;
  info.tenant = t.name;
  info.preemptible = a.preemptible;
  info.ttl = ttl;
  // Whole milliseconds: what the store keeps is what the tenant is told.
  info.expires = absl::FromUnixMillis(absl::ToUnixMillis(clock_->Now() + ttl));
  info.path = std::string(path);
  info.label = p.label;
  for (const pglist::PageRun& r : a.runs) {
    info.runs.push_back(ToLeaseRun(r));
    info.bytes += info.runs.back().bytes;
  }
  if (store_ != nullptr) {
    absl::Status s = store_->PutLease(
        {id, t.name, a.runs, a.preemptible, absl::ToUnixMillis(info.expires),
         absl::ToInt64Seconds(ttl), info.path, info.label});
    if (!s.ok()) {
      Log(LogLevel::kError, "lease not recorded; not granted",
          {F("error", s.ToString())});
      (void)pool_->Free(a.id);  // never handed out: still zero
      return absl::UnavailableError(
          absl::StrCat("the lease store failed: ", s.message()));
    }
  }
  LeaseInfo out = info;
  Install(std::move(l));
  return out;
}

void PoolManager::Install(Lease l) {
  const LeaseInfo& info = l.info;
  expiry_.insert({info.expires, info.id});
  warn_.insert({info.expires - opts_.expiring_warning, info.id});
  lease_of_[l.alloc] = info.id;
  TenantUsage& u = usage_[info.tenant];
  u.bytes += info.bytes;
  ++u.leases;
  leases_[info.id] = std::move(l);
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

// --- Leases
// -------------------------------------------------------------------

int64_t PoolManager::EndLease(std::string id,
                              std::optional<LeaseEventInfo::Kind> kind,
                              absl::string_view reason, absl::Time deadline,
                              bool scrub) {
  auto it = leases_.find(id);
  if (it == leases_.end()) return 0;
  Lease l = std::move(it->second);
  leases_.erase(it);
  expiry_.erase({l.info.expires, id});
  warn_.erase({l.info.expires - opts_.expiring_warning, id});
  lease_of_.erase(l.alloc);
  TenantUsage& u = usage_[l.info.tenant];
  u.bytes -= l.info.bytes;
  --u.leases;
  const std::string how = kind ? KindName(*kind) : "released";
  ended_[id] = {l.info.tenant, how};
  ended_order_.push_back(id);
  if (ended_order_.size() > kEndedMemory) {
    ended_.erase(ended_order_.front());
    ended_order_.pop_front();
  }
  if (kind) {
    Emit(l.info.tenant,
         {*kind, id, std::string(reason), clock_->Now(), deadline});
    if (*kind == LeaseEventInfo::Kind::kExpired) ++lease_expirations_;
    if (*kind == LeaseEventInfo::Kind::kRevoked) ++revocations_["admin"];
    if (*kind == LeaseEventInfo::Kind::kPreempted) {
      ++revocations_["preempted"];
      reclaimed_bytes_ += l.info.bytes;
    }
  }
  Log(LogLevel::kInfo, "lease ended",
      {F("lease", id), F("tenant", l.info.tenant), F("how", how),
       F("bytes", l.info.bytes)});
  int64_t row = 0;
  if (store_ != nullptr) {
    auto r = store_->EndLease(id, pool_->Find(l.alloc)->runs);
    if (r.ok()) {
      row = *r;
    } else {
      Log(LogLevel::kError, "lease store: ending a lease",
          {F("lease", id), F("error", r.status().ToString())});
    }
  }
  (void)pool_->SetPreemptible(l.alloc, false);
  if (scrub) ScrubAndFree(l.alloc, row);
  return row;
}

void PoolManager::ScrubAndFree(pglist::AllocationId alloc, int64_t row) {
  scrubbing_.insert(alloc);
  Scrub(pool_->Find(alloc)->runs, [this, alloc, row](std::vector<Completion>*) {
    mu_.AssertHeld();
    scrubbing_.erase(alloc);
    (void)pool_->Free(alloc);
    if (store_ != nullptr && row != 0) (void)store_->ScrubDone(row);
  });
}

void PoolManager::Emit(const std::string& tenant, const LeaseEventInfo& e) {
  for (auto& [id, sink] : sinks_) {
    if (sink.first == tenant) sink.second(e);
  }
}

absl::StatusOr<PoolManager::Lease*> PoolManager::Owned(const Tenant& t,
                                                       absl::string_view id) {
  auto it = leases_.find(std::string(id));
  if (it != leases_.end()) {
    if (it->second.info.tenant != t.name) {
      return absl::PermissionDeniedError(
          absl::StrCat("lease ", id, " belongs to another tenant"));
    }
    return &it->second;
  }
  auto ended = ended_.find(std::string(id));
  if (ended != ended_.end()) {
    if (ended->second.first != t.name) {
      return absl::PermissionDeniedError(
          absl::StrCat("lease ", id, " belongs to another tenant"));
    }
    return absl::NotFoundError(
        absl::StrCat("lease ", id, " has ended (", ended->second.second, ")"));
  }
  return absl::NotFoundError(absl::StrCat("no lease ", id));
}

absl::StatusOr<LeaseInfo> PoolManager::Renew(const Tenant& t,
                                             absl::string_view id,
                                             absl::Duration ttl) {
  absl::MutexLock l(&mu_);
  ASSIGN_OR_RETURN(Lease * lease, Owned(t, id));
  LeaseInfo& info = lease->info;
  const absl::Duration new_ttl =
      ttl > absl::ZeroDuration() ? std::min(ttl, opts_.max_ttl) : info.ttl;
  const absl::Time new_expiry =
      absl::FromUnixMillis(absl::ToUnixMillis(clock_->Now() + new_ttl));
  if (store_ != nullptr) {
    absl::Status s = store_->SetExpiry(info.id, absl::ToUnixMillis(new_expiry),
                                       absl::ToInt64Seconds(new_ttl));
    if (!s.ok())
      return absl::UnavailableError(
          absl::StrCat("the lease store failed: ", s.message()));
  }
  expiry_.erase({info.expires, info.id});
  warn_.erase({info.expires - opts_.expiring_warning, info.id});
  info.ttl = new_ttl;
  info.expires = new_expiry;
  expiry_.insert({info.expires, info.id});
  warn_.insert({info.expires - opts_.expiring_warning, info.id});
  lease->warned = false;
  wake_maintenance_.Signal();
  return info;
}

absl::StatusOr<bool> PoolManager::Release(const Tenant& t,
                                          absl::string_view id) {
  absl::MutexLock l(&mu_);
  auto lease = Owned(t, id);
  if (!lease.ok()) {
    auto ended = ended_.find(std::string(id));
    if (ended != ended_.end() && ended->second.first == t.name) return false;
    return lease.status();
  }
  EndLease(std::string(id), std::nullopt, "released", absl::InfinitePast(),
           true);
  return true;
}

absl::StatusOr<LeaseInfo> PoolManager::Get(const Tenant& t,
                                           absl::string_view id) {
  absl::MutexLock l(&mu_);
  ASSIGN_OR_RETURN(Lease * lease, Owned(t, id));
  return lease->info;
}

std::vector<LeaseInfo> PoolManager::Leases(std::optional<std::string> tenant) {
  absl::MutexLock l(&mu_);
  std::vector<LeaseInfo> out;
  for (const auto& [id, lease] : leases_) {
    if (!tenant || lease.info.tenant == *tenant) out.push_back(lease.info);
  }
  return out;
}

absl::StatusOr<LeaseInfo> PoolManager::Revoke(absl::string_view id,
                                              absl::string_view reason) {
  absl::MutexLock l(&mu_);
  auto it = leases_.find(std::string(id));
  if (it == leases_.end())
    return absl::NotFoundError(absl::StrCat("no live lease ", id));
  LeaseInfo info = it->second.info;
  EndLease(info.id, LeaseEventInfo::Kind::kRevoked,
           reason.empty() ? "revoked by an admin" : reason,
           absl::InfinitePast(), true);
  return info;
}

uint64_t PoolManager::Subscribe(const std::string& tenant, EventSink sink) {
  absl::MutexLock l(&mu_);
  const uint64_t id = next_handle_++;
  sinks_[id] = {tenant, std::move(sink)};
  return id;
}

void PoolManager::Unsubscribe(uint64_t id) {
  absl::MutexLock l(&mu_);
  sinks_.erase(id);
}

// --- Background work
// ----------------------------------------------------------

void PoolManager::Scrub(std::vector<pglist::PageRun> runs,
                        std::function<void(std::vector<Completion>*)> then) {
  for (const auto& r : runs) scrub_backlog_pages_ += r.pages.value;
  scrub_queue_.push_back({std::move(runs), std::move(then)});
  wake_scrubber_.Signal();
}

void PoolManager::ScrubLoop() {
  absl::MutexLock l(&mu_);
  for (;;) {
    while (scrub_queue_.empty() && !stopping_) wake_scrubber_.Wait(&mu_);
    if (stopping_) return;
    ScrubJob job = std::move(scrub_queue_.front());
    scrub_queue_.pop_front();
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (const auto& r : job.runs)
      ranges.push_back({pool_->ToIova(r.start), r.pages.value});
    mu_.Unlock();
    for (const auto& [iova, pages] : ranges) {
      if (absl::Status s = source_->Zero(iova, pages * page_size_); !s.ok()) {
        Log(LogLevel::kError, "zeroing failed",
            {F("iova", iova), F("error", s.ToString())});
      }
    }
    mu_.Lock();
    std::vector<Completion> out;
    for (const auto& [iova, pages] : ranges) scrub_backlog_pages_ -= pages;
    job.then(&out);
    RetryWaiters(&out);
    mu_.Unlock();
    for (auto& c : out) c();
    mu_.Lock();
  }
}

void PoolManager::FinishReclaim(PendingReclaim r,
                                std::vector<Completion>* out) {
  for (pglist::AllocationId v : r.victims) (void)pool_->Free(v);
  if (r.hold) (void)pool_->Free(*r.hold);
  for (int64_t row : r.victim_rows) {
    if (store_ != nullptr && row != 0) (void)store_->ScrubDone(row);
  }
  const absl::Time now = clock_->Now();
  wait_seconds_.Observe(absl::ToDoubleSeconds(now - r.since));
  if (now > r.deadline) {
    out->push_back([d = std::move(r.done)] {
      d(absl::DeadlineExceededError(
          "the deadline passed during the reclaim grace period"));
    });
    return;
  }
  auto a = pool_->Claim({r.plan.window}, r.params.req.preemptible);
  if (!a.ok()) {
    out->push_back([d = std::move(r.done), s = a.status()] {
      d(absl::InternalError(
          absl::StrCat("reclaimed window lost: ", s.message())));
    });
    return;
  }
  auto lease = MakeLease(r.tenant, r.params, *a, "aggressive");
  out->push_back([d = std::move(r.done), lease] { d(lease); });
}

void PoolManager::MaintenanceLoop() {
  absl::MutexLock l(&mu_);
  while (!stopping_) {
    std::vector<Completion> out;
    const absl::Time now = clock_->Now();
    while (!expiry_.empty() && expiry_.begin()->first <= now) {
      EndLease(expiry_.begin()->second, LeaseEventInfo::Kind::kExpired,
               "ttl elapsed", absl::InfinitePast(), true);
    }
    while (!warn_.empty() && warn_.begin()->first <= now) {
      const std::string id = warn_.begin()->second;
      warn_.erase(warn_.begin());
      Lease& lease = leases_.at(id);
      if (!lease.warned) {
        lease.warned = true;
        Emit(lease.info.tenant,
             {LeaseEventInfo::Kind::kExpiring, id,
              absl::StrCat("expires in ", absl::FormatDuration(absl::Trunc(
                                              lease.info.expires - now,
                                              absl::Milliseconds(1)))),
              now, lease.info.expires});
      }
    }
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (it->deadline > now) {
        ++it;
        continue;
      }
      wait_seconds_.Observe(absl::ToDoubleSeconds(now - it->since));
      out.push_back([d = std::move(it->done), bytes = it->params.req.bytes,
                     waited = now - it->since] {
        d(absl::DeadlineExceededError(absl::StrCat(
            "waited ",
            absl::FormatDuration(absl::Trunc(waited, absl::Milliseconds(1))),
            " for ", bytes, " bytes; none came free")));
      });
      it = waiters_.erase(it);
    }
    for (auto it = reclaims_.begin(); it != reclaims_.end();) {
      if (it->ready > now) {
        ++it;
        continue;
      }
      // Grace is over: zero the victims' memory, then hand the window over.
      std::vector<pglist::PageRun> runs;
      for (pglist::AllocationId v : it->victims) {
        if (const pglist::Allocation* a = pool_->Find(v)) {
          runs.insert(runs.end(), a->runs.begin(), a->runs.end());
        }
      }
      auto r = std::make_shared<PendingReclaim>(std::move(*it));
      Scrub(std::move(runs), [this, r](std::vector<Completion>* done) {
        mu_.AssertHeld();
        FinishReclaim(std::move(*r), done);
      });
      it = reclaims_.erase(it);
    }
    absl::Time next = now + absl::Seconds(1);
    if (!expiry_.empty()) next = std::min(next, expiry_.begin()->first);
    if (!warn_.empty()) next = std::min(next, warn_.begin()->first);
    for (const Waiter& w : waiters_) next = std::min(next, w.deadline);
    for (const PendingReclaim& r : reclaims_) next = std::min(next, r.ready);
    if (!out.empty()) {
      mu_.Unlock();
      for (auto& c : out) c();
      mu_.Lock();
      continue;
    }
    // Waiting on the system clock: an injected clock must not be far ahead.
    wake_maintenance_.WaitWithTimeout(
        &mu_, std::max(absl::ZeroDuration(), next - now));
  }
}

// --- Segments, stats
// ----------------------------------------------------------

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
  std::vector<Completion> out;
  absl::StatusOr<SegmentView> result;
  {
    absl::MutexLock l(&mu_);
    absl::Status s = drain ? pool_->DrainSegment(segment_id)
                           : pool_->UndrainSegment(segment_id);
    if (!s.ok()) return s;
    if (!drain) RetryWaiters(&out);
    for (const auto& seg : pool_->Segments()) {
      if (seg.id == segment_id) result = View(seg);
    }
  }
  for (auto& c : out) c();
  return result;
}

absl::StatusOr<SegmentView> PoolManager::AddSegment(uint64_t bytes,
                                                    uint32_t freelist,
                                                    int32_t numa) {
  std::vector<Completion> out;
  absl::StatusOr<SegmentView> result;
  {
    absl::MutexLock l(&mu_);
    ASSIGN_OR_RETURN(vfio::BackedSegment seg,
                     source_->AddSegment(bytes, freelist, numa));
    auto id = pool_->AddSegment(seg.spec);
    if (!id.ok()) {
      (void)source_->RemoveSegment(seg.spec.iova);
      return id.status();
    }
    // Recorded before the answer: a restart re-creates it (leases in it
    // would not fit the pool otherwise).
    if (store_ != nullptr) {
      if (absl::Status s = store_->PutSegment(
              {seg.spec.iova, bytes, freelist, numa, seg.path});
          !s.ok()) {
        (void)pool_->RemoveSegment(*id);
        (void)source_->RemoveSegment(seg.spec.iova);
        return absl::UnavailableError(
            absl::StrCat("the segment could not be recorded: ", s.message()));
      }
    }
    backing_[pglist::Pfn(seg.spec.iova / page_size_)] = {*id, seg.path,
                                                         seg.file_offset};
    RetryWaiters(&out);
    for (const auto& s : pool_->Segments()) {
      if (s.id == *id) result = View(s);
    }
    Log(LogLevel::kInfo, "segment added",
        {F("segment", *id), F("iova", seg.spec.iova), F("bytes", bytes),
         F("path", seg.path)});
  }
  for (auto& c : out) c();
  return result;
}

absl::Status PoolManager::RemoveSegment(uint32_t segment_id) {
  absl::MutexLock l(&mu_);
  for (auto it = backing_.begin(); it != backing_.end(); ++it) {
    if (it->second.id != segment_id) continue;
    RETURN_IF_ERROR(pool_->RemoveSegment(segment_id));
    const uint64_t iova = pool_->ToIova(it->first);
    backing_.erase(it);
    Log(LogLevel::kInfo, "segment removed",
        {F("segment", segment_id), F("iova", iova)});
    if (store_ != nullptr) {
      if (absl::Status s = store_->DeleteSegment(iova); !s.ok()) {
        Log(LogLevel::kWarn, "segment removal not recorded",
            {F("iova", iova), F("error", s.ToString())});
      }
    }
    return source_->RemoveSegment(iova);
  }
  return absl::NotFoundError(absl::StrCat("no segment ", segment_id));
}

absl::StatusOr<std::vector<std::pair<SegmentView, std::vector<OccupancyRun>>>>
PoolManager::Occupancy(std::optional<uint32_t> segment_id) {
  absl::MutexLock l(&mu_);
  std::vector<std::pair<SegmentView, std::vector<OccupancyRun>>> out;
  // Every allocated run with its state, by address.
  std::map<pglist::Pfn, std::pair<uint64_t, OccupancyState>> used;
  for (const auto& [id, a] : pool_->allocations()) {
    const OccupancyState st = scrubbing_.contains(id)
                                  ? OccupancyState::kScrubbing
                              : a.preemptible ? OccupancyState::kPreemptible
                                              : OccupancyState::kUsed;
    for (const auto& r : a.runs) used[r.start] = {r.pages.value, st};
  }
  for (const auto& s : pool_->Segments()) {
    if (segment_id && s.id != *segment_id) continue;
    std::vector<OccupancyRun> runs;
    pglist::Pfn pos = s.avail.start;
    auto add = [&](OccupancyState st, pglist::Pfn from, uint64_t pages) {
      if (pages == 0) return;
      if (!runs.empty() && runs.back().state == st &&
          runs.back().iova + runs.back().bytes == from.value * page_size_) {
        runs.back().bytes += pages * page_size_;
      } else {
        runs.push_back({st, from.value * page_size_, pages * page_size_});
      }
    };
    for (auto it = used.lower_bound(s.avail.start);
         it != used.end() && it->first < s.avail.end(); ++it) {
      add(OccupancyState::kFree, pos, (it->first - pos).value);
      add(it->second.second, it->first, it->second.first);
      pos = it->first + pglist::PageCount(it->second.first);
    }
    add(OccupancyState::kFree, pos, (s.avail.end() - pos).value);
    out.push_back({View(s), std::move(runs)});
  }
  if (segment_id && out.empty())
    return absl::NotFoundError(absl::StrCat("no segment ", *segment_id));
  return out;
}

void PoolManager::Wake() {
  absl::MutexLock l(&mu_);
  wake_maintenance_.Signal();
}

TenantUsage PoolManager::Usage(const std::string& tenant) {
  absl::MutexLock l(&mu_);
  auto it = usage_.find(tenant);
  return it == usage_.end() ? TenantUsage{} : it->second;
}

ManagerStats PoolManager::Stats() {
  absl::MutexLock l(&mu_);
  ManagerStats s;
  s.pool = pool_->stats();
  s.page_size = page_size_;
  for (const auto& seg : pool_->Segments()) s.segments.push_back(View(seg));
  s.tenants = usage_;
  s.waits_started = waits_started_;
  s.lease_expirations = lease_expirations_;
  s.revocations = revocations_;
  s.reclaimed_bytes = reclaimed_bytes_;
  s.scrub_backlog_pages = scrub_backlog_pages_;
  s.waiting = static_cast<uint32_t>(waiters_.size() + reclaims_.size());
  s.wait_seconds = wait_seconds_;
  s.alloc_seconds = alloc_seconds_;
  return s;
}

}  // namespace physpool::server
