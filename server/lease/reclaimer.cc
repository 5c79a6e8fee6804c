// SPDX-License-Identifier: Apache-2.0
#include "server/lease/reclaimer.h"

#include <utility>

namespace physpool::server {

PendingReclaim& Reclaimer::Add(PendingReclaim r) {
  pending_.push_back(std::move(r));
  return pending_.back();
}

PendingReclaim* Reclaimer::ByHandle(uint64_t handle) {
  for (PendingReclaim& r : pending_) {
    if (r.handle == handle) return &r;
  }
  return nullptr;
}

PendingReclaim* Reclaimer::ByCaller(uint64_t caller) {
  for (PendingReclaim& r : pending_) {
    if (r.caller == caller) return &r;
  }
  return nullptr;
}

PendingReclaim* Reclaimer::ByRequest(const std::string& tenant,
                                     const std::string& request_id) {
  for (PendingReclaim& r : pending_) {
    if (r.tenant.name == tenant && r.params.request_id == request_id) return &r;
  }
  return nullptr;
}

std::optional<PendingReclaim> Reclaimer::Take(uint64_t handle) {
  for (auto it = pending_.begin(); it != pending_.end(); ++it) {
    if (it->handle != handle) continue;
    PendingReclaim r = std::move(*it);
    pending_.erase(it);
    return r;
  }
  return std::nullopt;
}

std::vector<PendingReclaim*> Reclaimer::TakeReady(absl::Time now) {
  std::vector<PendingReclaim*> out;
  for (PendingReclaim& r : pending_) {
    if (!r.zeroing && r.ready <= now && r.unrecorded_ends == 0) {
      r.zeroing = true;
      out.push_back(&r);
    }
  }
  return out;
}

std::optional<absl::Time> Reclaimer::NextReady() const {
  std::optional<absl::Time> next;
  for (const PendingReclaim& r : pending_) {
    // One whose victims' ends are not stored yet is not ready at any time:
    // recording the last end wakes the maintenance thread instead (else a
    // store that fails would have it spin until it takes writes).
    if (r.zeroing || r.unrecorded_ends > 0) continue;
    if (!next || r.ready < *next) next = r.ready;
  }
  return next;
}

TenantUsage Reclaimer::Pending(const std::string& tenant) const {
  TenantUsage u;
  for (const PendingReclaim& r : pending_) {
    if (r.tenant.name != tenant || !r.done) continue;
    u.bytes += r.bytes;
    ++u.leases;
  }
  return u;
}

}  // namespace physpool::server
