// SPDX-License-Identifier: Apache-2.0
#include "server/lease/grant.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_format.h"
#include "server/core/log.h"
#include "server/store/unavailable.h"

namespace physpool::server {

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

std::string Granter::NewLeaseId(Turn&) {
  absl::BitGen gen;
  std::string id;
  do {
    id = absl::StrFormat("l-%016x", absl::Uniform<uint64_t>(gen));
  } while (d_.lessor->Find(id) != nullptr ||
           d_.lessor->FindEnded(id) != nullptr);
  return id;
}

LeaseInfo Granter::MakeInfo(Turn& t, const Tenant& tenant,
                            const AllocateParams& p,
                            const std::vector<pglist::PageRun>& runs,
                            bool preemptible, absl::string_view path) {
  const ManagerOptions& o = *d_.options;
  LeaseInfo info;
  info.id = NewLeaseId(t);
  info.tenant = tenant.name;
  info.preemptible = preemptible;
  absl::Duration ttl = p.ttl > absl::ZeroDuration() ? p.ttl : o.default_ttl;
  info.ttl = std::min(ttl, o.max_ttl);
  // Whole milliseconds: what the store keeps is what the tenant is told.
  info.expires = absl::FromUnixMillis(absl::ToUnixMillis(t.now() + info.ttl));
  info.path = std::string(path);
  info.label = p.label;
  info.request_id = p.request_id;
  info.access_sha256 = p.access_sha256;
  for (const pglist::PageRun& r : runs) {
    info.runs.push_back(d_.segments->ToLeaseRun(t, r));
    info.bytes += info.runs.back().bytes;
  }
  return info;
}

void Granter::Grant(Turn& t, const Tenant& tenant, const AllocateParams& p,
                    const std::string& fp, const pglist::Allocation& a,
                    absl::string_view path, AllocDone done) {
  Lessor::Lease l;
  l.alloc = a.id;
  l.state = Lessor::State::kCommitting;
  l.request_fp = fp;
  l.info = MakeInfo(t, tenant, p, a.runs, a.preemptible, path);
  // Nobody may reclaim it before it is granted.
  if (a.preemptible) (void)d_.pool->SetPreemptible(a.id, false);
  const std::string id = l.info.id;
  StoredLease stored = ToStored(l.info, a.runs, fp);
  // The tenant's devices reach the lease before it is granted: mapped by
  // the committing thread before the transaction, without the lock (the
  // lease is not handed out before its commit, so nobody can end it).
  auto mapped = std::make_shared<absl::Status>();
  Committer::Prepare map;
  if (d_.devices->HasDevices(tenant.name)) {
    map = [devices = d_.devices, name = tenant.name,
           runs = d_.segments->RangesOf(t, a.id),
           mapped] { *mapped = devices->Map(name, runs); };
  }
  d_.lessor->Add(std::move(l));
  granting_[id].push_back(std::move(done));
  d_.committer->Submit(
      [stored = std::move(stored), mapped](LeaseStore& s) {
        if (!mapped->ok()) return *mapped;  // nothing to record
        return s.PutLease(stored);
      },
      [this, id, mapped](absl::Status s) {
        d_.coordinator->Locked([&](Turn& t) { Recorded(t, id, s, *mapped); });
      },
      std::move(map));
}

void Granter::Attach(Turn&, const std::string& lease_id, AllocDone done) {
  granting_[lease_id].push_back(std::move(done));
}

void Granter::DropFailed(Turn& t, const std::string& tenant,
                         pglist::AllocationId alloc) {
  if (!d_.devices->HasDevices(tenant)) {
    (void)d_.pool->Free(alloc);  // never handed out: still zero
    t.MemoryFreed();
    return;
  }
  d_.devices->Unmap(t, tenant, alloc);
  d_.recycler->ScrubAndFreeNow(t, {alloc}, {});  // a device may have written
}

void Granter::Recorded(Turn& t, const std::string& id, const absl::Status& s,
                       const absl::Status& mapped) {
  Lessor::Lease* lease = d_.lessor->Find(id);
  std::vector<AllocDone> dones = std::move(granting_[id]);
  granting_.erase(id);
  if (!mapped.ok()) {
    d_.devices->CountMapError(t);
    Lessor::Lease gone = d_.lessor->Discard(id);
    DropFailed(t, gone.info.tenant, gone.alloc);
    for (auto& d : dones) t.Later([d = std::move(d), mapped] { d(mapped); });
    t.MemoryFreed();
  } else if (s.ok()) {
    d_.lessor->Activate(id);
    if (lease->info.preemptible)
      (void)d_.pool->SetPreemptible(lease->alloc, true);
    if (LogEnabled(LogLevel::kDebug)) {
      Log(LogLevel::kDebug, "lease granted",
          {F("lease", id), F("tenant", lease->info.tenant),
           F("bytes", lease->info.bytes), F("path", lease->info.path)});
    }
    t.WakeMaintenanceBy(d_.lessor->FirstDeadline(lease->info));
    for (auto& d : dones)
      t.Later([d = std::move(d), info = lease->info] { d(info); });
  } else {
    d_.durable->Failed(t, s);
    Lessor::Lease gone = d_.lessor->Discard(id);
    DropFailed(t, gone.info.tenant, gone.alloc);
    const absl::Status why = StoreUnavailable(s, "nothing was granted");
    for (auto& d : dones) t.Later([d = std::move(d), why] { d(why); });
    t.MemoryFreed();
  }
}

}  // namespace physpool::server
