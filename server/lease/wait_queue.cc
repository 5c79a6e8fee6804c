// SPDX-License-Identifier: Apache-2.0
#include "server/lease/wait_queue.h"

#include <algorithm>
#include <utility>

namespace physpool::server {

bool Competes(const AllocateParams& a, const AllocateParams& b) {
  if (std::max(a.req.low, b.req.low) >= std::min(a.req.high, b.req.high))
    return false;
  const int32_t na = a.req.numa, nb = b.req.numa;
  if (na < 0 || nb < 0 || na == nb) return true;
  // Different preferred nodes: only apart if both stay on theirs.
  return !(a.numa_strict && b.numa_strict);
}

void WaitQueue::Push(Waiter w) {
  ++per_tenant_[w.tenant.name];
  waiters_.push_back(std::move(w));
}

WaitQueue::Iterator WaitQueue::Erase(Iterator it) {
  auto n = per_tenant_.find(it->tenant.name);
  if (--n->second == 0) per_tenant_.erase(n);
  return waiters_.erase(it);
}

Waiter WaitQueue::Unlink(Iterator* it) {
  auto n = per_tenant_.find((*it)->tenant.name);
  if (--n->second == 0) per_tenant_.erase(n);
  Waiter w = std::move(**it);
  *it = waiters_.erase(*it);
  return w;
}

std::optional<Waiter> WaitQueue::Remove(uint64_t handle) {
  for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
    if (it->handle != handle) continue;
    return Unlink(&it);
  }
  return std::nullopt;
}

Waiter* WaitQueue::ByRequest(const std::string& tenant,
                             const std::string& request_id) {
  for (Waiter& w : waiters_) {
    if (w.tenant.name == tenant && w.params.request_id == request_id) return &w;
  }
  return nullptr;
}

const Waiter* WaitQueue::StarvingRival(const AllocateParams& p, absl::Time now,
                                       Iterator before) {
  for (auto it = waiters_.begin(); it != before; ++it) {
    if (now - it->since >= starvation_ && Competes(it->params, p)) return &*it;
  }
  return nullptr;
}

void WaitQueue::TakeExpired(absl::Time now,
                            const std::function<void(Waiter)>& f) {
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (it->deadline > now) {
      ++it;
      continue;
    }
    f(Unlink(&it));
  }
}

std::optional<absl::Time> WaitQueue::NextDeadline() const {
  std::optional<absl::Time> next;
  for (const Waiter& w : waiters_) {
    if (!next || w.deadline < *next) next = w.deadline;
  }
  return next;
}

uint32_t WaitQueue::CountOf(const std::string& tenant) const {
  auto it = per_tenant_.find(tenant);
  return it == per_tenant_.end() ? 0 : it->second;
}

void WaitQueue::Drain(const std::function<void(Waiter)>& f) {
  while (!waiters_.empty()) {
    auto it = waiters_.begin();
    f(Unlink(&it));
  }
}

}  // namespace physpool::server
