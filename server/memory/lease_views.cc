// SPDX-License-Identifier: Apache-2.0
#include "server/memory/lease_views.h"

#include <unistd.h>

#include <utility>

namespace physpool::server {

LeaseViews::View& LeaseViews::Add(View v) {
  by_lease_[v.info.id] = v.alloc;
  if (v.ended) {
    ++quarantined_;
    quarantined_bytes_ += v.info.bytes;
    tenant_bytes_[v.info.tenant] += v.info.bytes;
  }
  const pglist::AllocationId a = v.alloc;
  return views_.insert_or_assign(a, std::move(v)).first->second;
}

LeaseViews::View* LeaseViews::Find(pglist::AllocationId alloc) {
  auto it = views_.find(alloc);
  return it == views_.end() ? nullptr : &it->second;
}

LeaseViews::View* LeaseViews::FindLease(const std::string& lease_id) {
  auto it = by_lease_.find(lease_id);
  return it == by_lease_.end() ? nullptr : Find(it->second);
}

void LeaseViews::End(pglist::AllocationId alloc, absl::Time now) {
  View* v = Find(alloc);
  if (v == nullptr || v->ended) return;
  if (v->fd >= 0 && !v->counted) {
    close(v->fd);
    v->fd = -1;
  }
  v->ended = true;
  v->ended_at = now;
  ++quarantined_;
  quarantined_bytes_ += v->info.bytes;
  tenant_bytes_[v->info.tenant] += v->info.bytes;
}

bool LeaseViews::AnyView(
    const std::vector<pglist::AllocationId>& allocs) const {
  for (pglist::AllocationId a : allocs) {
    if (views_.contains(a)) return true;
  }
  return false;
}

void LeaseViews::Gate(std::vector<pglist::AllocationId> allocs, Then then,
                      absl::Time deadline, Then expired) {
  gates_.push_back(
      {std::move(allocs), std::move(then), deadline, std::move(expired)});
}

LeaseViews::ScanSet LeaseViews::ToScan() const {
  ScanSet s;
  for (const auto& [alloc, v] : views_) {
    if (v.ended && v.pins == 0) {
      s.files[v.file] = {alloc, v.handouts, v.counted ? v.fd : -1, v.own_refs};
    }
  }
  return s;
}

std::vector<LeaseViews::View> LeaseViews::Apply(
    const ScanSet& scanned, const Evidence& found,
    std::vector<const View*>* newly_held) {
  std::vector<View> gone;
  unverified_bytes_ = 0;
  for (const auto& [file, what] : scanned.files) {
    auto it = views_.find(what.alloc);
    if (it == views_.end()) continue;
    View& v = it->second;
    // Handed out or pinned since the snapshot: not known to be free.
    if (v.handouts != what.handouts || v.pins != 0 || !v.ended) continue;
    std::vector<Holder> holders;
    if (auto h = found.scan.held.find(file); h != found.scan.held.end())
      holders = h->second;
    bool verified = !holders.empty();
    auto counted = found.others.find(file);
    if (what.fd >= 0 && counted != found.others.end()) {
      // The kernel's count decides: the holders the scan named or, if it
      // named none (a process it cannot see, a socket's queue, an
      // importer), the references it counts.
      if (counted->second == 0) {
        holders.clear();
      } else if (holders.empty()) {
        Holder h;
        h.references = counted->second;
        holders.push_back(h);
      }
    } else {
      // No count: every process the scan could not inspect may hold it,
      // and a scan that cannot see every process proves nothing.
      holders.insert(holders.end(), found.scan.uninspected.begin(),
                     found.scan.uninspected.end());
      if (!found.blind.empty()) {
        Holder h;
        h.command = found.blind;
        h.uninspected = true;
        holders.push_back(h);
      }
    }
    if (!holders.empty()) {
      if (v.holders.empty() && newly_held != nullptr) newly_held->push_back(&v);
      v.holders = std::move(holders);
      if (!verified) unverified_bytes_ += v.info.bytes;
      continue;
    }
    --quarantined_;
    quarantined_bytes_ -= v.info.bytes;
    auto t = tenant_bytes_.find(v.info.tenant);
    if ((t->second -= v.info.bytes) == 0) tenant_bytes_.erase(t);
    by_lease_.erase(v.info.id);
    if (v.fd >= 0) close(v.fd);
    v.fd = -1;
    gone.push_back(std::move(v));
    views_.erase(it);
  }
  return gone;
}

std::vector<LeaseViews::Then> LeaseViews::TakeReady(absl::Time now) {
  std::vector<Then> out;
  for (auto it = gates_.begin(); it != gates_.end();) {
    if (!AnyView(it->allocs)) {
      out.push_back(std::move(it->then));
    } else if (now >= it->deadline && it->expired) {
      out.push_back(std::move(it->expired));
    } else {
      ++it;
      continue;
    }
    it = gates_.erase(it);
  }
  return out;
}

std::optional<absl::Time> LeaseViews::NextDeadline() const {
  std::optional<absl::Time> next;
  for (const GateEntry& g : gates_) {
    if (g.expired && (!next || g.deadline < *next)) next = g.deadline;
  }
  return next;
}

uint64_t LeaseViews::QuarantinedBytesOf(const std::string& tenant) const {
  auto it = tenant_bytes_.find(tenant);
  return it == tenant_bytes_.end() ? 0 : it->second;
}

std::vector<const LeaseViews::View*> LeaseViews::Quarantined() const {
  std::vector<const View*> out;
  for (const auto& [alloc, v] : views_) {
    if (v.ended) out.push_back(&v);
  }
  return out;
}

}  // namespace physpool::server
