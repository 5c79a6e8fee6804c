// SPDX-License-Identifier: Apache-2.0
#include "client/arena_shared.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "pglist/outcome.h"

namespace physpool::client_internal {
namespace {

uint64_t RoundUp(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

std::string Describe(const BufferOptions& o) {
  return absl::StrCat(o.bytes, " bytes (alignment ", o.alignment, ", boundary ",
                      o.boundary, ", max_segments ", o.max_segments, ")");
}

}  // namespace

ArenaShared::ArenaShared(std::shared_ptr<Client::Impl> client,
                         uint64_t page_size, ArenaOptions options,
                         ArenaCore core)
    : client_(std::move(client)),
      page_size_(page_size),
      opts_(std::move(options)),
      core_(std::move(core)) {}

absl::StatusOr<std::shared_ptr<ArenaShared>> ArenaShared::Create(
    std::shared_ptr<Client::Impl> client, uint64_t page_size,
    ArenaOptions options) {
  if (options.bytes == 0) {
    return absl::InvalidArgumentError("arena: bytes must be > 0");
  }
  if (options.max_bytes != 0 && options.max_bytes < options.bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("arena: max_bytes ", options.max_bytes, " is below bytes ",
                     options.bytes));
  }
  if (options.max_bytes == 0) options.max_bytes = options.bytes;
  absl::StatusOr<ArenaCore> core =
      ArenaCore::Create(page_size, options.best_fit);
  if (!core.ok()) return core.status();
  std::shared_ptr<ArenaShared> a(new ArenaShared(
      std::move(client), page_size, std::move(options), *std::move(core)));
  if (absl::Status s = a->AddLease(a->opts_); !s.ok()) return s;
  a->idle_ = std::thread([p = a.get()] { p->IdleLoop(); });
  return a;
}

ArenaShared::~ArenaShared() {
  {
    absl::MutexLock l(&mu_);
    closing_ = true;
    idle_cv_.SignalAll();
  }
  if (idle_.joinable()) idle_.join();
  // ~Region releases each lease and unmaps it.
}

absl::Status ArenaShared::AddLease(const AllocateOptions& ro) {
  std::weak_ptr<ArenaShared> weak = weak_from_this();
  absl::StatusOr<std::unique_ptr<Region>> region = Client::AllocateWith(
      client_, ro,
      [weak](const std::string& id, const std::string& kind,
             const std::string& reason, int64_t deadline) {
        if (auto a = weak.lock()) a->OnLost(id, kind, reason, deadline);
      });
  if (!region.ok()) return region.status();
  std::vector<MappedRun> runs;
  for (const Region::Run& r : (*region)->runs()) {
    runs.push_back({r.iova, r.bytes, static_cast<char*>(r.cpu)});
  }
  absl::MutexLock l(&mu_);
  auto early =
      std::find(lost_early_.begin(), lost_early_.end(), (*region)->lease_id());
  if (early != lost_early_.end()) {
    lost_early_.erase(early);
    return absl::UnavailableError(
        absl::StrCat("arena: lease ", (*region)->lease_id(),
                     " was taken back as soon as it was granted"));
  }
  absl::StatusOr<size_t> index = core_.AddRegion(runs);
  if (!index.ok()) return index.status();  // ~Region releases it
  regions_.resize(*index + 1);
  empty_since_.resize(*index + 1, absl::InfiniteFuture());
  regions_[*index] = *std::move(region);
  empty_since_[*index] = absl::Now();
  ++epoch_;
  last_loss_.clear();  // a loss is made good by a new lease
  idle_cv_.SignalAll();
  return absl::OkStatus();
}

absl::StatusOr<Buffer> ArenaShared::Allocate(const BufferOptions& o) {
  for (int round = 0;; ++round) {
    uint64_t epoch;
    {
      absl::MutexLock l(&mu_);
      if (closing_) {
        return absl::FailedPreconditionError("arena: it is being destroyed");
      }
      absl::StatusOr<Placed> p = core_.Allocate(o);
      if (p.ok()) {
        ++outstanding_;
        Buffer b;
        b.arena_ = this;
        b.id_ = p->id;
        b.bytes_ = p->bytes;
        b.runs_ = std::move(p->runs);
        return b;
      }
      const pglist::FailReason why = pglist::FailReasonOf(p.status());
      if (why != pglist::FailReason::kNoSpace &&
          why != pglist::FailReason::kNeverFits) {
        return absl::Status(p.status().code(),
                            absl::StrCat("arena: ", p.status().message()));
      }
      if (!GrowthAllowed() || round >= 2) return NoRoom(o, p.status());
      epoch = epoch_;
    }
    // First a region like the others; if the buffer still did not fit, one
    // shaped like it.
    if (absl::Status s = Grow(o, epoch, /*exact=*/round > 0); !s.ok()) {
      return s;
    }
  }
}

absl::Status ArenaShared::NoRoom(const BufferOptions& o,
                                 const absl::Status& core) const {
  const std::string what =
      absl::StrCat("arena: no room for ", Describe(o), " in its leases (",
                   core_.live_bytes(), " bytes, ", core_.used_bytes(),
                   " in use, max_bytes ", opts_.max_bytes, ")");
  if (!last_loss_.empty()) {
    return absl::UnavailableError(absl::StrCat(what, "; ", last_loss_));
  }
  return absl::ResourceExhaustedError(absl::StrCat(what, ": ", core.message()));
}

absl::Status ArenaShared::Grow(const BufferOptions& o, uint64_t epoch,
                               bool exact) {
  absl::MutexLock g(&grow_mu_);
  AllocateOptions ro = opts_;  // the lease part
  const uint64_t want = RoundUp(std::max<uint64_t>(o.bytes, 1), page_size_);
  if (exact || want > ro.bytes) {
    // A lease shaped like the buffer (it fits, whatever the daemon picks).
    ro.bytes = want;
    ro.boundary = o.boundary;
    ro.max_segments = o.max_segments;
  }
  ro.alignment = std::max(ro.alignment, o.alignment);
  {
    absl::MutexLock l(&mu_);
    if (epoch_ != epoch) return absl::OkStatus();  // grown meanwhile: retry
    if (closing_) {
      return absl::FailedPreconditionError("arena: it is being destroyed");
    }
    if (core_.live_bytes() + RoundUp(ro.bytes, page_size_) > opts_.max_bytes) {
      return NoRoom(o, absl::ResourceExhaustedError("max_bytes reached"));
    }
  }
  if (absl::Status s = AddLease(ro); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("arena: growing for ",
                                               Describe(o), ": ", s.message()));
  }
  return absl::OkStatus();
}

void ArenaShared::Free(uint64_t id, absl::Span<const Buffer::Run> runs) {
  // An orphaned arena's last buffer: dropping `last` after unlocking
  // destroys it (its Regions release the leases).
  std::shared_ptr<ArenaShared> last;
  {
    absl::MutexLock l(&mu_);
    --outstanding_;
    // Only regions leased for growth are released when idle.
    if (core_.Free(id) && GrowthAllowed()) {
      const absl::Time now = absl::Now();
      for (const Buffer::Run& r : runs) {
        const int64_t region = core_.RegionOf(r.iova);
        if (region > 0 && core_.RegionUsedPages(region) == 0) {
          empty_since_[region] = now;
          idle_cv_.SignalAll();
        }
      }
    }
    if (self_ != nullptr && outstanding_ == 0) last = std::move(self_);
  }
}

bool ArenaShared::Lost(uint64_t id) const {
  absl::MutexLock l(&mu_);
  return core_.IsLost(id);
}

void ArenaShared::OnLost(const std::string& lease_id, const std::string& kind,
                         const std::string& reason, int64_t deadline) {
  ArenaLoss loss{lease_id, kind, reason, deadline, {}};
  Region* gone = nullptr;
  {
    absl::MutexLock l(&mu_);
    size_t i = 0;
    while (i < regions_.size() &&
           (regions_[i] == nullptr || regions_[i]->lease_id() != lease_id)) {
      ++i;
    }
    if (i == regions_.size()) {
      lost_early_.push_back(lease_id);  // its Allocate has not added it yet
      return;
    }
    loss.buffers = core_.RemoveRegion(i);
    gone = regions_[i].get();
    last_loss_ = absl::StrCat("lease ", lease_id, " was ", kind,
                              reason.empty() ? "" : ": ", reason);
  }
  if (opts_.on_lost) opts_.on_lost(loss);
  // The Region stays in regions_ (its lease is over; ~Region does not
  // release it again); its memory goes now. Only this thread touches it:
  // the core no longer places anything there.
  gone->Unmap();
}

void ArenaShared::IdleLoop() {
  const absl::Duration idle = absl::FromChrono(opts_.idle_release);
  for (;;) {
    std::vector<std::unique_ptr<Region>> release;
    {
      absl::MutexLock l(&mu_);
      if (closing_) return;
      const absl::Time now = absl::Now();
      absl::Time next = absl::InfiniteFuture();
      // Region 0 is the arena's own; the rest were leased for growth.
      for (size_t i = 1; i < regions_.size(); ++i) {
        if (regions_[i] == nullptr || !core_.RegionLive(i)) continue;
        if (core_.RegionUsedPages(i) > 0) {
          empty_since_[i] = absl::InfiniteFuture();  // Free re-arms it
        } else if (empty_since_[i] + idle <= now) {
          core_.RemoveRegion(i);  // empty: no buffer is hit
          release.push_back(std::move(regions_[i]));
        } else {
          next = std::min(next, empty_since_[i] + idle);
        }
      }
      if (release.empty()) {
        idle_cv_.WaitWithDeadline(&mu_, next);
        continue;
      }
    }
    release.clear();  // ~Region: unmaps and releases, without mu_
  }
}

void ArenaShared::Close() {
  {
    absl::MutexLock l(&mu_);
    closing_ = true;
    idle_cv_.SignalAll();
  }
  if (idle_.joinable()) idle_.join();
  absl::MutexLock l(&mu_);
  if (outstanding_ == 0) return;  // the Arena's shared_ptr releases all
  std::fprintf(stderr,
               "physpool: Arena destroyed with %zu live buffers (an error): "
               "its leases (%llu bytes) stay mapped until the last buffer "
               "is freed\n",
               outstanding_,
               static_cast<unsigned long long>(core_.live_bytes()));
  self_ = shared_from_this();
}

uint64_t ArenaShared::leased_bytes() const {
  absl::MutexLock l(&mu_);
  return core_.live_bytes();
}

uint64_t ArenaShared::used_bytes() const {
  absl::MutexLock l(&mu_);
  return core_.used_bytes();
}

size_t ArenaShared::live_buffers() const {
  absl::MutexLock l(&mu_);
  return outstanding_;
}

std::vector<std::string> ArenaShared::lease_ids() const {
  absl::MutexLock l(&mu_);
  std::vector<std::string> ids;
  for (size_t i = 0; i < regions_.size(); ++i) {
    if (regions_[i] != nullptr && core_.RegionLive(i)) {
      ids.push_back(regions_[i]->lease_id());
    }
  }
  return ids;
}

}  // namespace physpool::client_internal
