// SPDX-License-Identifier: Apache-2.0
#include "server/pool_manager.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "server/core/log.h"
#include "server/lease/parts.h"

namespace physpool::server {
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

PoolManager::PoolManager(ManagerOptions options, vfio::MemorySource* source,
                         const Clock* clock, TenantRegistry* tenants,
                         LeaseStore* store)
    : opts_(std::move(options)),
      source_(source),
      clock_(clock),
      tenants_(tenants),
      store_(store),
      page_size_(source->page_size()) {
  absl::StatusOr<pglist::Pool> core =
      pglist::Pool::Create(PoolOptionsFor(opts_, page_size_));
  pool_status_ = core.status();
  if (!core.ok()) core = pglist::Pool::Create({});  // Start says why
  Coordinator* const coordinator = this;
  parts_ = std::make_unique<Parts>(opts_, *std::move(core), source, tenants,
                                   store, &access_tokens_, coordinator);
}

PoolManager::~PoolManager() { Shutdown(); }

absl::Status PoolManager::Start() {
  if (!pool_status_.ok()) return pool_status_;
  absl::Status restored;
  {
    absl::MutexLock l(&mu_);
    Turn t = NewTurn();
    parts_->quarantine.Start(t);
    restored = Restore(t);
    if (restored.ok()) started_ = true;
    EndTurn(t);
  }
  if (!restored.ok()) return restored;
  maintenance_ = std::thread([this] { MaintenanceLoop(); });
  scrubber_thread_ = std::thread([this] { ScrubLoop(); });
  quarantine_thread_ = std::thread([this] { QuarantineLoop(); });
  Flush({});
  return absl::OkStatus();
}

void PoolManager::Shutdown() {
  Locked([&](Turn& t) {
    if (stopping_) return;
    stopping_ = true;
    Parts& p = *parts_;
    const size_t answers = p.waiting.Drain(
        t, absl::UnavailableError(
               "physpoold is shutting down; retry with the same request_id"));
    const size_t streams = p.events.EndWhere(
        t, [](const std::string&) { return true; },
        absl::UnavailableError("physpoold is shutting down"));
    Log(LogLevel::kDebug, "shutdown: answering in-flight requests",
        {F("answers", answers), F("watch_streams", streams)});
  });
  {
    absl::MutexLock l(&mu_);
    if (threads_stop_) return;
    threads_stop_ = true;
    Turn t = NewTurn();
    parts_->durable.Stop(t);
    wake_maintenance_.SignalAll();
    wake_scrubber_.SignalAll();
    wake_quarantine_.SignalAll();
  }
  if (maintenance_.joinable()) maintenance_.join();
  if (scrubber_thread_.joinable()) scrubber_thread_.join();
  if (quarantine_thread_.joinable()) quarantine_thread_.join();
  // What is in flight is applied and answered; zeroing not finished is
  // redone at the next start (the store lists it).
  parts_->committer.Stop();
}

// --- Turns -------------------------------------------------------------------

Turn PoolManager::NewTurn() { return Turn(clock_, this); }

void PoolManager::EndTurn(Turn& t) {
  // The one place that acts on memory coming back.
  while (t.TakeFreed()) parts_->waiting.Retry(t);
  std::vector<std::function<void()>> later = t.TakeLater();
  mu_.Unlock();
  Flush(std::move(later));
  mu_.Lock();
}

void PoolManager::Locked(absl::FunctionRef<void(Turn&)> fn) {
  absl::MutexLock l(&mu_);
  Turn t = NewTurn();
  fn(t);
  EndTurn(t);
}

void PoolManager::Flush(std::vector<std::function<void()>> later) {
  for (auto& c : later) c();
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

bool PoolManager::ServingLocked() const {
  return started_ && !stopping_ && parts_->durable.writable();
}

void PoolManager::SetHealthCallback(std::function<void(bool)> f) {
  {
    absl::MutexLock l(&health_mu_);
    health_fn_ = std::move(f);
    health_told_.reset();
  }
  Flush({});
}

void PoolManager::WakeMaintenanceBy(absl::Time t) {
  mu_.AssertHeld();
  if (t < maintenance_wake_) wake_maintenance_.Signal();
}
void PoolManager::WakeMaintenance() { wake_maintenance_.Signal(); }
void PoolManager::WakeScrubber() { wake_scrubber_.Signal(); }
void PoolManager::ScanSoon() { wake_quarantine_.Signal(); }
bool PoolManager::Accepting() const {
  mu_.AssertHeld();
  return started_ && !stopping_;
}

// --- Requests ----------------------------------------------------------------

uint64_t PoolManager::Allocate(const Tenant& tenant, AllocateParams params,
                               absl::Time deadline, AllocDone done) {
  Committer::Scope drive(&parts_->committer);  // commits on this thread
  uint64_t handle = 0;
  params.req.privileged = tenant.Has(kRolePrivileged);
  params.req.run_cap = opts_.max_runs_per_lease;
  Locked([&](Turn& t) {
    handle = parts_->admission.Admit(t, tenant, std::move(params), deadline,
                                     std::move(done));
  });
  return handle;
}

void PoolManager::CancelWait(uint64_t handle) {
  Locked([&](Turn& t) { parts_->waiting.Cancel(t, handle); });
}

void PoolManager::LimitsChanged() {
  Locked([&](Turn& t) { t.MemoryFreed(); });  // the waiters, again
}

void PoolManager::Renew(const Tenant& tenant, const std::string& id,
                        absl::Duration ttl, LeaseDone done) {
  Committer::Scope drive(&parts_->committer);
  Locked([&](Turn& t) {
    parts_->ender.Renew(t, tenant, id, ttl, std::move(done));
  });
}

void PoolManager::Release(const Tenant& tenant, const std::string& id,
                          ReleaseDone done) {
  Committer::Scope drive(&parts_->committer);
  Locked(
      [&](Turn& t) { parts_->ender.Release(t, tenant, id, std::move(done)); });
}

void PoolManager::Revoke(const std::string& id, const std::string& reason,
                         LeaseDone done) {
  Committer::Scope drive(&parts_->committer);
  Locked(
      [&](Turn& t) { parts_->ender.Revoke(t, id, reason, std::move(done)); });
}

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

// --- Reading -----------------------------------------------------------------

std::optional<std::string> PoolManager::TenantOfAccessToken(
    const std::string& sha) {
  return access_tokens_.TenantOf(sha);
}

absl::StatusOr<LeaseInfo> PoolManager::Get(const Tenant& tenant,
                                           absl::string_view id) {
  absl::StatusOr<LeaseInfo> out;
  Locked([&](Turn& t) { out = parts_->lookups.Get(t, tenant, id); });
  return out;
}

absl::StatusOr<LeaseInfo> PoolManager::AdminGet(absl::string_view id) {
  absl::StatusOr<LeaseInfo> out;
  Locked([&](Turn& t) { out = parts_->lookups.AdminGet(t, id); });
  return out;
}

std::vector<LeaseInfo> PoolManager::Leases(std::optional<std::string> tenant,
                                           const std::string& after,
                                           size_t max) {
  std::vector<LeaseInfo> out;
  Locked([&](Turn& t) { out = parts_->lookups.Leases(t, tenant, after, max); });
  return out;
}

absl::StatusOr<PoolManager::ViewHandout> PoolManager::HandOutView(
    const Tenant& tenant, const std::string& lease_id) {
  absl::StatusOr<ViewHandout> out;
  Locked([&](Turn& t) {
    if (!opts_.per_lease_views) {
      out = absl::FailedPreconditionError(
          "per-lease views are off (isolation: off)");
      return;
    }
    if (!t.accepting()) {
      out = absl::FailedPreconditionError("physpoold is shutting down");
      return;
    }
    auto lease =
        parts_->lessor.Owned(tenant.name, lease_id, tenant.lease_scope);
    if (!lease.ok()) {
      out = lease.status();
    } else if ((*lease)->state != Lessor::State::kLive) {
      out = absl::FailedPreconditionError(
          absl::StrCat("lease ", lease_id, " is being released"));
    } else {
      out = parts_->quarantine.HandOut(t, (*lease)->alloc, (*lease)->info);
    }
  });
  return out;
}

// --- Events ------------------------------------------------------------------

absl::StatusOr<uint64_t> PoolManager::Subscribe(const std::string& tenant,
                                                EventSink sink,
                                                CloseSink close) {
  absl::StatusOr<uint64_t> out;
  Locked([&](Turn& t) {
    if (stopping_) {
      out = absl::FailedPreconditionError("physpoold is shutting down");
      return;
    }
    const uint64_t id = parts_->admission.NewHandle(t);
    absl::Status s = parts_->events.Subscribe(t, id, tenant, std::move(sink),
                                              std::move(close));
    out = s.ok() ? absl::StatusOr<uint64_t>(id) : s;
  });
  return out;
}

void PoolManager::Unsubscribe(uint64_t id) {
  Locked([&](Turn& t) { parts_->events.Unsubscribe(t, id); });
}

void PoolManager::EndStreamsExcept(const std::set<std::string>& tenants,
                                   const absl::Status& why) {
  Locked([&](Turn& t) {
    parts_->events.EndWhere(
        t, [&](const std::string& name) { return !tenants.count(name); }, why);
  });
}

void PoolManager::Wake() {
  absl::MutexLock l(&mu_);
  wake_maintenance_.Signal();
  wake_quarantine_.Signal();
}

TenantUsage PoolManager::Usage(const std::string& tenant) {
  absl::MutexLock l(&mu_);
  return parts_->lessor.Usage(tenant);
}

std::pair<uint64_t, uint32_t> PoolManager::QuarantineTotals() {
  absl::MutexLock l(&mu_);
  return {parts_->views.quarantined_bytes(), parts_->views.quarantined()};
}

}  // namespace physpool::server
