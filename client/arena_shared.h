// SPDX-License-Identifier: Apache-2.0
// The state behind a physpool::Arena and its Buffers: the placement core,
// the leases (Regions) it runs over, growth, the idle release of regions
// leased for growth, and what a lease's loss does. Not installed.
//
// State: ArenaCore and the Regions by core index (mu_); growth is one at a
// time (grow_mu_, taken before mu_, never while mu_ is held).
// Thread safety: every public method may be called from any thread. The
// loss callback runs on the Client's event thread; the idle thread
// releases idle growth regions.
// I/O: Allocate may lease a region (an RPC, without mu_); the idle thread
// and the destructor release leases (RPCs, without mu_); a loss unmaps.
// Lifetime: owned by the Arena's shared_ptr; each Region's callback holds a
// weak_ptr. An Arena destroyed with live buffers leaves its ArenaShared
// alive (self_) until the last buffer is freed (Buffer holds a raw
// pointer).
#ifndef PHYSPOOL_CLIENT_ARENA_SHARED_H_
#define PHYSPOOL_CLIENT_ARENA_SHARED_H_

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/arena_core.h"
#include "physpool/client.h"

namespace physpool::client_internal {

class ArenaShared : public std::enable_shared_from_this<ArenaShared> {
 public:
  // Leases the AllocateOptions of `options` through `client` and starts the
  // idle thread.
  static absl::StatusOr<std::shared_ptr<ArenaShared>> Create(
      std::shared_ptr<Client::Impl> client, uint64_t page_size,
      ArenaOptions options);
  ~ArenaShared();

  absl::StatusOr<Buffer> Allocate(const BufferOptions& o);
  // Buffer::Free. `runs`: the buffer's (to find the regions it used).
  void Free(uint64_t id, absl::Span<const Buffer::Run> runs);
  bool Lost(uint64_t id) const;
  // The Arena is being destroyed: releases everything, or (live buffers)
  // reports the error and keeps itself until the last is freed.
  void Close();

  uint64_t page_size() const { return page_size_; }
  uint64_t leased_bytes() const;
  uint64_t used_bytes() const;
  size_t live_buffers() const;
  std::vector<std::string> lease_ids() const;

 private:
  ArenaShared(std::shared_ptr<Client::Impl> client, uint64_t page_size,
              ArenaOptions options, ArenaCore core);
  bool GrowthAllowed() const { return opts_.max_bytes > opts_.bytes; }
  // Leases a region for `o` (see ArenaOptions::max_bytes) and adds it,
  // unless another thread grew the arena since `epoch`: like the first
  // region, or (`exact`, or `o` is larger) shaped like `o`.
  absl::Status Grow(const BufferOptions& o, uint64_t epoch, bool exact);
  // Leases `ro` and adds it as a region (the first, or growth).
  absl::Status AddLease(const AllocateOptions& ro);
  // The Client's callback for one of the arena's leases.
  void OnLost(const std::string& lease_id, const std::string& kind,
              const std::string& reason, int64_t deadline_unix_ms);
  void IdleLoop();
  // Why an allocation that does not fit fails (mu_ held).
  absl::Status NoRoom(const BufferOptions& o, const absl::Status& core) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const std::shared_ptr<Client::Impl> client_;
  const uint64_t page_size_;
  const ArenaOptions opts_;

  absl::Mutex grow_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  absl::CondVar idle_cv_;
  ArenaCore core_ ABSL_GUARDED_BY(mu_);
  // By core region index; null once released or lost.
  std::vector<std::unique_ptr<Region>> regions_ ABSL_GUARDED_BY(mu_);
  // Since when each region has held no buffer (InfiniteFuture: in use).
  std::vector<absl::Time> empty_since_ ABSL_GUARDED_BY(mu_);
  // Leases lost before they were added (a loss can beat the Allocate).
  std::vector<std::string> lost_early_ ABSL_GUARDED_BY(mu_);
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;      // regions added
  size_t outstanding_ ABSL_GUARDED_BY(mu_) = 0;  // valid Buffer objects
  std::string last_loss_ ABSL_GUARDED_BY(mu_);   // "" = none
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<ArenaShared> self_ ABSL_GUARDED_BY(mu_);  // orphaned
  std::thread idle_;
};

}  // namespace physpool::client_internal

#endif  // PHYSPOOL_CLIENT_ARENA_SHARED_H_
