// SPDX-License-Identifier: Apache-2.0
#include "server/lease/end.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/core/log.h"
#include "server/store/unavailable.h"
#include "util/status_macros.h"

namespace physpool::server {
namespace {

const char* KindName(LeaseEventInfo::Kind k) {
  switch (k) {
    case LeaseEventInfo::Kind::kExpiring:
      return "expiring";
    case LeaseEventInfo::Kind::kExpired:
      return "expired";
    case LeaseEventInfo::Kind::kRevoked:
      return "revoked";
    case LeaseEventInfo::Kind::kPreempted:
      return "preempted";
    case LeaseEventInfo::Kind::kOverflow:
      return "overflow";
  }
  return "ended";
}

// Shutting down: the store takes no more changes (and a change submitted
// after it stopped would be answered inside this turn), so a Renew, Release
// or Revoke is answered UNAVAILABLE. Returns whether `done` was taken.
template <typename Done>
bool RefusedWhileStopping(Turn& t, Done& done) {
  if (t.accepting()) return false;
  t.Later([d = std::move(done)] {
    d(absl::UnavailableError("physpoold is shutting down"));
  });
  return true;
}

}  // namespace

// What a durable end's change did before its transaction, with no lock.
struct Ender::Outcome {
  std::shared_ptr<bool> zeroed = std::make_shared<bool>(false);
  std::shared_ptr<bool> unmapped;
  bool devices = false;
  bool tried = false;  // inline zeroing was attempted
};

Lessor::Lease Ender::EndNow(Turn& t, const std::string& id,
                            std::optional<LeaseEventInfo::Kind> kind,
                            const std::string& reason, absl::Time deadline,
                            bool unmapped) {
  const std::string how = kind ? KindName(*kind) : "released";
  Lessor::Lease l = d_.lessor->End(id, how);
  (void)d_.pool->SetPreemptible(l.alloc, false);
  d_.recycler->Mark(t, l.alloc);
  // Before anything else: the tenant's devices lose the pages first.
  if (!unmapped) d_.devices->Unmap(t, l.info.tenant, l.alloc);
  d_.quarantine->End(t, l.alloc);
  if (kind) {
    d_.events->Emit(t, l.info.tenant, {*kind, id, reason, t.now(), deadline});
    if (*kind == LeaseEventInfo::Kind::kExpired) ++counters_.lease_expirations;
    if (*kind == LeaseEventInfo::Kind::kRevoked)
      ++counters_.revocations["admin"];
    if (*kind == LeaseEventInfo::Kind::kPreempted) {
      ++counters_.revocations["preempted"];
      counters_.reclaimed_bytes += l.info.bytes;
    }
  }
  if (LogEnabled(LogLevel::kDebug)) {
    Log(LogLevel::kDebug, "lease ended",
        {F("lease", id), F("tenant", l.info.tenant), F("how", how),
         F("bytes", l.info.bytes)});
  }
  return l;
}

void Ender::RecordEnd(Turn& t, const Lessor::Lease& l,
                      std::function<void(Turn&, int64_t)> recorded) {
  const int64_t row = next_scrub_row_++;
  std::vector<pglist::PageRun> runs = d_.pool->Find(l.alloc)->runs;
  d_.durable->Submit(
      t,
      [id = l.info.id, tenant = l.info.tenant, row,
       runs](LeaseStore& s) -> absl::Status {
        RETURN_IF_ERROR(s.DeleteLease(id));
        return s.AddScrub(row, runs, id, tenant);
      },
      [row, recorded = std::move(recorded)](Turn& t) { recorded(t, row); });
}

void Ender::Expire(Turn& t) {
  const absl::Time now = t.now();
  for (const std::string& id : d_.lessor->Due(now)) {
    Lessor::Lease gone = EndNow(t, id, LeaseEventInfo::Kind::kExpired,
                                "ttl elapsed", absl::InfinitePast());
    const pglist::AllocationId alloc = gone.alloc;
    RecordEnd(t, gone, [this, alloc](Turn& t, int64_t row) {
      d_.recycler->ScrubAndFree(t, {alloc}, {row});
    });
  }
  for (const std::string& id : d_.lessor->TakeWarnings(now)) {
    const LeaseInfo& info = d_.lessor->Find(id)->info;
    d_.events->Emit(
        t, info.tenant,
        {LeaseEventInfo::Kind::kExpiring, id,
         absl::StrCat("expires in ",
                      absl::FormatDuration(absl::Trunc(info.expires - now,
                                                       absl::Milliseconds(1)))),
         now, info.expires});
  }
}

void Ender::EndDurably(
    Turn& t, const std::string& id, std::optional<LeaseEventInfo::Kind> kind,
    const std::string& reason,
    std::function<void(absl::Status, const LeaseInfo&)> done) {
  Lessor::Lease* lease = d_.lessor->Find(id);
  d_.lessor->SetEnding(id, true);
  (void)d_.pool->SetPreemptible(lease->alloc, false);
  const int64_t row = next_scrub_row_++;
  std::vector<pglist::PageRun> runs = d_.pool->Find(lease->alloc)->runs;
  // A small lease that no view reaches (no quarantine to wait for) is
  // zeroed as part of its end's change, by the committing thread without
  // the lock, before the transaction: once the end commits its memory is
  // free, with no scrub row, no scrub-thread hand-off and no second commit.
  // If the zeroing fails, the change records a scrub row instead and the
  // scrubber takes over. If the daemon dies before the commit (or the
  // commit fails), the lease is still live with zeroed memory: its owner
  // (or an admin) had asked to end it, and a retry does.
  std::vector<std::pair<uint64_t, uint64_t>> zero_now;
  if (lease->info.bytes <= kInlineZeroBytes &&
      d_.views->Find(lease->alloc) == nullptr) {
    for (const pglist::PageRun& r : runs) {
      zero_now.push_back(
          {d_.pool->ToIova(r.start), r.pages.value * d_.pool->page_size()});
    }
  }
  // Before the end answers (and before any zeroing) the tenant's devices
  // lose the pages: unmapped in the same step, without the lock. If the
  // commit then fails, the lease stays live and is mapped again.
  Outcome o;
  o.devices = d_.devices->HasDevices(lease->info.tenant);
  o.unmapped = std::make_shared<bool>(!o.devices);  // nothing to unmap
  o.tried = !zero_now.empty();
  Committer::Prepare zero;
  if (!zero_now.empty() || o.devices) {
    zero = [this, id, zero_now, o, tenant = lease->info.tenant,
            ranges = d_.segments->RangesOf(t, lease->alloc)] {
      if (o.devices) {
        absl::Status s = d_.devices->UnmapNow(tenant, ranges);
        *o.unmapped = s.ok();
        if (!s.ok()) return;  // EndNow retries, and holds the memory back
      }
      *o.zeroed = !zero_now.empty();
      for (const auto& [iova, bytes] : zero_now) {
        if (absl::Status z = d_.recycler->ZeroNow(iova, bytes); !z.ok()) {
          Log(LogLevel::kWarn,
              "zeroing at the end of a lease failed; the scrubber retries",
              {F("lease", id), F("error", z.ToString())});
          *o.zeroed = false;
          break;
        }
      }
    };
  }
  d_.committer->Submit(
      [id, tenant = lease->info.tenant, row, runs,
       zeroed = o.zeroed](LeaseStore& s) -> absl::Status {
        RETURN_IF_ERROR(s.DeleteLease(id));
        if (*zeroed) return absl::OkStatus();
        return s.AddScrub(row, runs, id, tenant);
      },
      [this, id, row, kind, reason, o, done = std::move(done)](absl::Status s) {
        LeaseInfo info;
        std::vector<std::function<void(absl::Status)>> others;
        d_.coordinator->Locked([&](Turn& t) {
          others = std::move(ending_[id]);
          ending_.erase(id);
          info = d_.lessor->Find(id)->info;
          Ended(t, id, row, kind, reason, o, s);
        });
        const absl::Status result =
            s.ok() ? s : StoreUnavailable(s, "the lease was not ended");
        done(result, info);
        for (auto& other : others) other(result);
      },
      std::move(zero));
}

void Ender::Ended(Turn& t, const std::string& id, int64_t row,
                  std::optional<LeaseEventInfo::Kind> kind,
                  const std::string& reason, const Outcome& o,
                  const absl::Status& s) {
  Lessor::Lease* lease = d_.lessor->Find(id);
  if (s.ok()) {
    Lessor::Lease gone =
        EndNow(t, id, kind, reason, absl::InfinitePast(), *o.unmapped);
    if (o.tried && !*o.zeroed && *o.unmapped)
      d_.recycler->CountInlineZeroError(t);
    if (*o.zeroed) {
      d_.recycler->Unmark(t, gone.alloc);
      (void)d_.pool->Free(gone.alloc);
      t.MemoryFreed();
    } else {
      d_.recycler->ScrubAndFree(t, {gone.alloc}, {row});
    }
    return;
  }
  d_.durable->Failed(t, s);
  d_.lessor->SetEnding(id, false);
  if (lease->info.preemptible)
    (void)d_.pool->SetPreemptible(lease->alloc, true);
  if (o.devices && *o.unmapped) {  // still live: its devices get it back
    d_.devices->MapAgain(t, lease->info.tenant, lease->alloc, id);
  }
}

void Ender::Renew(Turn& t, const Tenant& tenant, const std::string& id,
                  absl::Duration ttl, LeaseDone done) {
  if (RefusedWhileStopping(t, done)) return;
  auto lease = d_.lessor->Owned(tenant.name, id, tenant.lease_scope);
  if (!lease.ok()) {
    t.Later([d = std::move(done), s = lease.status()] { d(s); });
    return;
  }
  if ((*lease)->state == Lessor::State::kEnding) {
    t.Later([d = std::move(done), id] {
      d(absl::FailedPreconditionError(
          absl::StrCat("lease ", id, " is being released")));
    });
    return;
  }
  const LeaseInfo& info = (*lease)->info;
  const absl::Duration new_ttl = ttl > absl::ZeroDuration()
                                     ? std::min(ttl, d_.options->max_ttl)
                                     : info.ttl;
  const absl::Time expires =
      absl::FromUnixMillis(absl::ToUnixMillis(t.now() + new_ttl));
  d_.committer->Submit(
      [id, expires, new_ttl](LeaseStore& s) {
        return s.SetExpiry(id, absl::ToUnixMillis(expires),
                           absl::ToInt64Seconds(new_ttl));
      },
      [this, tenant, id, expires, new_ttl, done](absl::Status s) {
        absl::StatusOr<LeaseInfo> result;
        d_.coordinator->Locked([&](Turn& t) {
          auto lease = d_.lessor->Owned(tenant.name, id, tenant.lease_scope);
          if (!s.ok()) {
            d_.durable->Failed(t, s);
            result = StoreUnavailable(s, "the lease was not renewed");
          } else if (!lease.ok()) {
            result = lease.status();  // ended meanwhile (expired)
          } else {
            d_.lessor->SetExpiry(id, expires, new_ttl);
            t.WakeMaintenanceBy(d_.lessor->FirstDeadline((*lease)->info));
            result = (*lease)->info;
          }
        });
        done(std::move(result));
      });
}

void Ender::Release(Turn& t, const Tenant& tenant, const std::string& id,
                    ReleaseDone done) {
  if (RefusedWhileStopping(t, done)) return;
  auto lease = d_.lessor->Owned(tenant.name, id, tenant.lease_scope);
  if (!lease.ok()) {
    const Lessor::Ended* e = d_.lessor->FindEnded(id);
    const bool again = e != nullptr && e->tenant == tenant.name;
    t.Later([d = std::move(done), again, s = lease.status()] {
      if (again) {
        d(false);
      } else {
        d(s);
      }
    });
  } else if ((*lease)->state == Lessor::State::kEnding) {
    // Being ended by another call: answer once that is recorded.
    ending_[id].push_back([done](absl::Status s) {
      if (s.ok()) {
        done(false);
      } else {
        done(s);
      }
    });
  } else {
    EndDurably(t, id, std::nullopt, "released",
               [done](absl::Status s, const LeaseInfo&) {
                 if (s.ok()) {
                   done(true);
                 } else {
                   done(s);
                 }
               });
  }
}

void Ender::Revoke(Turn& t, const std::string& id, const std::string& reason,
                   LeaseDone done) {
  if (RefusedWhileStopping(t, done)) return;
  Lessor::Lease* lease = d_.lessor->Find(id);
  if (lease == nullptr || lease->state == Lessor::State::kCommitting) {
    t.Later([d = std::move(done), id] {
      d(absl::NotFoundError(absl::StrCat("no live lease ", id)));
    });
  } else if (lease->state == Lessor::State::kEnding) {
    t.Later([d = std::move(done), id] {
      d(absl::FailedPreconditionError(
          absl::StrCat("lease ", id, " is being released")));
    });
  } else {
    EndDurably(t, id, LeaseEventInfo::Kind::kRevoked,
               reason.empty() ? "revoked by an admin" : reason,
               [done](absl::Status s, const LeaseInfo& info) {
                 if (s.ok()) {
                   done(info);
                 } else {
                   done(s);
                 }
               });
  }
}

}  // namespace physpool::server
