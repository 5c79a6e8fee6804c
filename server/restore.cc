// SPDX-License-Identifier: Apache-2.0
// PoolManager::Restore: the order in which a restarted daemon takes its
// state back from the store (pool_manager.h). Each component restores its
// own part; this file only orders them: the segments, the memory that was
// being zeroed, the leases, the device domains (before any memory of an
// ended lease is reused), the views, then the zeroing again.
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/core/log.h"
#include "server/lease/parts.h"
#include "server/pool_manager.h"
#include "util/status_macros.h"

namespace physpool::server {
namespace {

// A stored lease as the lessor keeps it, live, on allocation `alloc` (its
// runs are added by the caller). Takes the stored strings.
Lessor::Lease FromStored(StoredLease&& sl, pglist::AllocationId alloc) {
  Lessor::Lease l;
  l.alloc = alloc;
  l.state = Lessor::State::kLive;
  l.request_fp = std::move(sl.request_fp);
  LeaseInfo& info = l.info;
  info.id = std::move(sl.id);
  info.tenant = std::move(sl.tenant);
  info.preemptible = sl.preemptible;
  info.ttl = absl::Seconds(sl.ttl_seconds);
  info.expires = absl::FromUnixMillis(sl.expires_unix_ms);
  info.path = std::move(sl.path);
  info.label = std::move(sl.label);
  info.request_id = std::move(sl.request_id);
  info.access_sha256 = std::move(sl.access_sha256);
  return l;
}

}  // namespace

absl::Status PoolManager::Restore(Turn& t) {
  Parts& p = *parts_;
  std::set<uint64_t> added;  // at run time, before a restart
  for (const StoredSegment& a :
       store_ != nullptr ? store_->segments() : std::vector<StoredSegment>{}) {
    added.insert(a.iova);
  }
  RETURN_IF_ERROR(p.segments.Restore(t, added));
  if (store_ == nullptr) return absl::OkStatus();
  p.ender.SetNextScrubRow(t, store_->next_scrub_row());
  // Zeroed (below) once the views of the leases they were are registered:
  // those still held stay quarantined.
  std::vector<std::pair<pglist::AllocationId, int64_t>> to_zero;
  std::map<std::string, Quarantine::EndedLease> ended;
  for (const StoredScrub& sc : store_->scrubs()) {
    auto a = p.pool.Claim(sc.runs, false);
    if (!a.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("the store's memory to zero does not fit the pool: ",
                       a.status().message()));
    }
    p.recycler.Mark(t, a->id);
    to_zero.push_back({a->id, sc.row});
    if (!sc.lease.empty()) ended[sc.lease] = {a->id, sc.tenant};
  }
  std::vector<vfio::MemorySource::LiveLease> live;
  std::vector<Lessor::Lease> leases;
  std::vector<StoredLease> stored = store_->TakeLeases();
  const size_t restored = stored.size();
  leases.reserve(stored.size());
  for (StoredLease& sl : stored) {
    auto a = p.pool.Claim(sl.runs, sl.preemptible, /*sync=*/false);
    if (!a.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("stored lease ", sl.id,
                       " does not fit the pool: ", a.status().message()));
    }
    const bool devices = p.devices.HasDevices(sl.tenant);
    Lessor::Lease l = FromStored(std::move(sl), a->id);
    for (const pglist::PageRun& r : a->runs) {
      l.info.runs.push_back(p.segments.ToLeaseRun(t, r));
      l.info.bytes += l.info.runs.back().bytes;
    }
    if (devices) {
      vfio::MemorySource::LiveLease ll{l.info.tenant, {}};
      for (const LeaseRun& r : l.info.runs)
        ll.runs.push_back({r.iova, r.bytes});
      live.push_back(std::move(ll));
    }
    leases.push_back(std::move(l));
  }
  p.lessor.Restore(std::move(leases));
  // The device domains map exactly the live leases, before any memory of
  // an ended one is zeroed and reused.
  RETURN_IF_ERROR(p.devices.Reconcile(t, live));
  p.quarantine.Restore(
      t,
      [&p](const std::string& name)
          -> std::optional<std::pair<pglist::AllocationId, LeaseInfo>> {
        const Lessor::Lease* lease = p.lessor.Find(name);
        if (lease == nullptr) return std::nullopt;
        return std::make_pair(lease->alloc, lease->info);
      },
      ended);
  for (const auto& [alloc, row] : to_zero)
    p.recycler.ScrubAndFree(t, {alloc}, {row});
  Log(LogLevel::kInfo, "leases restored",
      {F("leases", restored), F("zeroing", store_->scrubs().size()),
       F("voided_by_reboot", store_->voided_leases())});
  return absl::OkStatus();
}

}  // namespace physpool::server
