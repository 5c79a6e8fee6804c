// SPDX-License-Identifier: Apache-2.0
#include "server/lease/lessor.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace physpool::server {

Lessor::Lessor(absl::Duration expiring_warning, size_t ended_memory,
               AccessTokens* access)
    : warning_(expiring_warning),
      ended_memory_(ended_memory),
      access_(access != nullptr ? access : &own_access_) {}

void Lessor::Index(Lease& l) {
  TenantUsage& u = usage_[l.info.tenant];
  u.bytes += l.info.bytes;
  ++u.leases;
  by_alloc_[l.alloc] = &l;
  if (!l.info.request_id.empty())
    by_request_[Key(l.info.tenant, l.info.request_id)] = l.info.id;
  if (!l.info.access_sha256.empty())
    access_->Add(l.info.access_sha256, l.info.tenant);
}

void Lessor::Queue(const Lease& l) {
  expiry_.insert({l.info.expires, l.alloc});
  warn_.insert({l.info.expires - warning_, l.alloc});
}

void Lessor::Unqueue(const Lease& l) {
  expiry_.erase({l.info.expires, l.alloc});
  warn_.erase({l.info.expires - warning_, l.alloc});
}

Lessor::Lease& Lessor::Add(Lease lease) {
  std::string id = lease.info.id;
  auto it = leases_.emplace(std::move(id), std::move(lease)).first;
  Lease& l = it->second;
  Index(l);
  ids_.insert(it->first);
  if (l.state != State::kCommitting) Queue(l);
  return l;
}

namespace {

// Ids sort by their first 8 bytes as a number, then the rest: lease ids
// ("l-" and 16 random hex digits) rarely tie on the prefix.
struct IdKey {
  uint64_t prefix;
  absl::string_view id;
  bool operator<(const IdKey& o) const {
    return prefix != o.prefix ? prefix < o.prefix : id < o.id;
  }
};

IdKey KeyOf(absl::string_view id) {
  uint64_t prefix = 0;
  for (size_t i = 0; i < 8; ++i) {
    prefix =
        prefix << 8 | (i < id.size() ? static_cast<unsigned char>(id[i]) : 0);
  }
  return {prefix, id};
}

}  // namespace

void Lessor::Restore(std::vector<Lease> leases) {
  leases_.reserve(leases.size());
  by_alloc_.reserve(leases.size());
  std::vector<IdKey> ids;
  std::vector<Deadline> expiry, warn;
  ids.reserve(leases.size());
  expiry.reserve(leases.size());
  warn.reserve(leases.size());
  for (Lease& lease : leases) {
    lease.state = State::kLive;
    std::string id = lease.info.id;
    auto it = leases_.emplace(std::move(id), std::move(lease)).first;
    Lease& l = it->second;
    Index(l);
    ids.push_back(KeyOf(it->first));
    expiry.push_back({l.info.expires, l.alloc});
    warn.push_back({l.info.expires - warning_, l.alloc});
  }
  // Sorted, then appended at the end: each insert is O(1) amortised.
  std::sort(ids.begin(), ids.end());
  std::sort(expiry.begin(), expiry.end());
  std::sort(warn.begin(), warn.end());
  for (const IdKey& k : ids) ids_.insert(ids_.end(), k.id);
  for (const Deadline& e : expiry) expiry_.insert(expiry_.end(), e);
  for (const Deadline& w : warn) warn_.insert(warn_.end(), w);
}

void Lessor::Activate(const std::string& id) {
  Lease& l = leases_.find(id)->second;
  l.state = State::kLive;
  Queue(l);
}

void Lessor::SetEnding(const std::string& id, bool ending) {
  Lease& l = leases_.find(id)->second;
  l.state = ending ? State::kEnding : State::kLive;
  // Back to live (its end was not stored): a warning that fell due while
  // it was ending was dropped unsent, so it is armed again.
  if (!ending && !l.warned) warn_.insert({l.info.expires - warning_, l.alloc});
}

void Lessor::SetExpiry(const std::string& id, absl::Time expires,
                       absl::Duration ttl) {
  Lease& l = leases_.find(id)->second;
  Unqueue(l);
  l.info.expires = expires;
  l.info.ttl = ttl;
  l.warned = false;
  Queue(l);
}

Lessor::Lease Lessor::Discard(const std::string& id) {
  auto it = leases_.find(id);
  // ids_ points into the entry: out of it before the entry goes.
  Unqueue(it->second);
  ids_.erase(it->first);
  Lease l = std::move(it->second);
  leases_.erase(it);
  by_alloc_.erase(l.alloc);
  if (!l.info.request_id.empty())
    by_request_.erase(Key(l.info.tenant, l.info.request_id));
  if (!l.info.access_sha256.empty()) access_->Remove(l.info.access_sha256);
  TenantUsage& u = usage_[l.info.tenant];
  u.bytes -= l.info.bytes;
  --u.leases;
  return l;
}

Lessor::Lease Lessor::End(const std::string& id, const std::string& how) {
  Lease l = Discard(id);
  Remember(id, {l.info.tenant, how, l.info.request_id});
  return l;
}

void Lessor::Remember(const std::string& id, Ended e) {
  if (!e.request_id.empty())
    ended_by_request_[Key(e.tenant, e.request_id)] = id;
  ended_[id] = std::move(e);
  ended_order_.push_back(id);
  if (ended_order_.size() > ended_memory_) {
    auto old = ended_.find(ended_order_.front());
    if (old != ended_.end()) {
      if (!old->second.request_id.empty()) {
        auto r = ended_by_request_.find(
            Key(old->second.tenant, old->second.request_id));
        if (r != ended_by_request_.end() && r->second == old->first)
          ended_by_request_.erase(r);
      }
      ended_.erase(old);
    }
    ended_order_.pop_front();
  }
}

Lessor::Lease* Lessor::Find(const std::string& id) {
  auto it = leases_.find(id);
  return it == leases_.end() ? nullptr : &it->second;
}

absl::StatusOr<Lessor::Lease*> Lessor::Owned(const std::string& tenant,
                                             const std::string& id,
                                             const std::string& scope) {
  auto it = leases_.find(id);
  if (it != leases_.end() && it->second.state != State::kCommitting) {
    if (it->second.info.tenant != tenant) {
      return absl::PermissionDeniedError(
          absl::StrCat("lease ", id, " belongs to another tenant"));
    }
    if (!scope.empty() && it->second.info.access_sha256 != scope) {
      return absl::PermissionDeniedError(
          absl::StrCat("this access token does not reach lease ", id,
                       ": it reaches only the leases granted with it"));
    }
    return &it->second;
  }
  if (const Ended* e = FindEnded(id)) {
    if (e->tenant != tenant) {
      return absl::PermissionDeniedError(
          absl::StrCat("lease ", id, " belongs to another tenant"));
    }
    // An access token is told nothing of how its tenant's leases ended
    // (it may never have reached them).
    if (!scope.empty())
      return absl::NotFoundError(absl::StrCat("no lease ", id));
    return absl::NotFoundError(
        absl::StrCat("lease ", id, " has ended (", e->how, ")"));
  }
  return absl::NotFoundError(absl::StrCat("no lease ", id));
}

std::optional<std::string> Lessor::TenantOfAccess(
    const std::string& sha) const {
  return access_->TenantOf(sha);
}

const Lessor::Ended* Lessor::FindEnded(const std::string& id) const {
  auto it = ended_.find(id);
  return it == ended_.end() ? nullptr : &it->second;
}

Lessor::Lease* Lessor::ByRequest(const std::string& tenant,
                                 const std::string& request_id) {
  auto it = by_request_.find(Key(tenant, request_id));
  return it == by_request_.end() ? nullptr : Find(it->second);
}

std::optional<std::pair<std::string, Lessor::Ended>> Lessor::EndedByRequest(
    const std::string& tenant, const std::string& request_id) const {
  auto it = ended_by_request_.find(Key(tenant, request_id));
  if (it == ended_by_request_.end()) return std::nullopt;
  const Ended* e = FindEnded(it->second);
  if (e == nullptr) return std::nullopt;
  return std::make_pair(it->second, *e);
}

void Lessor::RememberFailure(const std::string& tenant,
                             const std::string& request_id,
                             const std::string& fp, absl::Status status) {
  const std::string key = Key(tenant, request_id);
  if (!failures_.contains(key)) failure_order_.push_back(key);
  failures_[key] = {std::move(status), fp};
  if (failure_order_.size() > ended_memory_) {
    failures_.erase(failure_order_.front());
    failure_order_.pop_front();
  }
}

std::optional<std::pair<absl::Status, std::string>> Lessor::FailureOf(
    const std::string& tenant, const std::string& request_id) const {
  auto it = failures_.find(Key(tenant, request_id));
  if (it == failures_.end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> Lessor::Due(absl::Time now) const {
  std::vector<std::string> out;
  for (auto it = expiry_.begin(); it != expiry_.end() && it->first <= now;
       ++it) {
    const Lease& l = *by_alloc_.at(it->second);
    if (l.state == State::kLive) out.push_back(l.info.id);
  }
  return out;
}

std::vector<std::string> Lessor::TakeWarnings(absl::Time now) {
  std::vector<std::string> out;
  while (!warn_.empty() && warn_.begin()->first <= now) {
    Lease& l = *by_alloc_.at(warn_.begin()->second);
    warn_.erase(warn_.begin());
    if (!l.warned && l.state == State::kLive) {
      l.warned = true;
      out.push_back(l.info.id);
    }
  }
  return out;
}

std::optional<absl::Time> Lessor::NextDeadline() const {
  std::optional<absl::Time> next;
  // Ending leases stay queued but are not due: look past them.
  for (const auto& [t, alloc] : expiry_) {
    if (by_alloc_.at(alloc)->state == State::kLive) {
      next = t;
      break;
    }
  }
  if (!warn_.empty() && (!next || warn_.begin()->first < *next))
    next = warn_.begin()->first;
  return next;
}

const std::string* Lessor::LeaseOf(pglist::AllocationId alloc) const {
  auto it = by_alloc_.find(alloc);
  return it == by_alloc_.end() ? nullptr : &it->second->info.id;
}

TenantUsage Lessor::Usage(const std::string& tenant) const {
  auto it = usage_.find(tenant);
  return it == usage_.end() ? TenantUsage{} : it->second;
}

}  // namespace physpool::server
