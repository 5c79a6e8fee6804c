// SPDX-License-Identifier: Apache-2.0
#include "server/lease/access_tokens.h"

namespace physpool::server {

void AccessTokens::Add(const std::string& sha, const std::string& tenant) {
  absl::MutexLock l(&mu_);
  auto& a = by_sha_[sha];
  a.first = tenant;
  ++a.second;
}

void AccessTokens::Remove(const std::string& sha) {
  absl::MutexLock l(&mu_);
  auto a = by_sha_.find(sha);
  if (a != by_sha_.end() && --a->second.second == 0) by_sha_.erase(a);
}

std::optional<std::string> AccessTokens::TenantOf(
    const std::string& sha) const {
  absl::MutexLock l(&mu_);
  auto it = by_sha_.find(sha);
  if (it == by_sha_.end()) return std::nullopt;
  return it->second.first;
}

}  // namespace physpool::server
