// SPDX-License-Identifier: Apache-2.0
#include "server/memory/quarantine.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/core/log.h"
#include "util/errno_status.h"
#include "util/status_macros.h"

namespace physpool::server {

void Quarantine::Start(Turn&) {
  if (!opts_.per_lease_views) return;
  blind_ = ScanBlindness();
  if (!blind_.empty()) {
    Log(LogLevel::kWarn,
        "the quarantine's /proc scan cannot see every process: ended "
        "leases whose views the kernel does not count stay quarantined",
        {F("why", blind_)});
  }
}

absl::StatusOr<Quarantine::Handout> Quarantine::HandOut(
    Turn&, pglist::AllocationId alloc, const LeaseInfo& info) {
  if (!opts_.per_lease_views) {
    return absl::FailedPreconditionError(
        "per-lease views are off (isolation: off)");
  }
  LeaseViews::View* v = views_->Find(alloc);
  if (v == nullptr) {
    std::vector<vfio::MemorySource::ViewRange> ranges;
    for (const LeaseRun& r : info.runs) ranges.push_back({r.iova, r.bytes});
    ASSIGN_OR_RETURN(const int fd, source_->CreateView(info.id, ranges));
    absl::StatusOr<FileId> file = FileIdOf(fd);
    if (!file.ok()) {
      close(fd);
      source_->DestroyView(info.id);
      return file.status();
    }
    LeaseViews::View nv;
    nv.alloc = alloc;
    nv.info = info;
    nv.fd = fd;
    nv.file = *file;
    CountReferences(nv, /*fresh=*/true);
    v = &views_->Add(std::move(nv));
  }
  const int copy = fcntl(v->fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) return ErrnoStatus("dup a lease's view", errno);
  ++v->pins;
  ++v->handouts;
  Handout out;
  out.fd = copy;
  uint64_t offset = 0;
  for (const LeaseRun& r : v->info.runs) {
    out.offsets.push_back(offset);
    offset += r.bytes;
  }
  out.pin = std::make_shared<Pin>();
  out.pin->release = [this, alloc = v->alloc] { Unpin(alloc); };
  return out;
}

void Quarantine::Unpin(pglist::AllocationId alloc) {
  coordinator_->Locked([&](Turn& t) {
    LeaseViews::View* v = views_->Find(alloc);
    if (v == nullptr) return;
    if (--v->pins == 0 && v->ended) ScanNow(t);
  });
}

void Quarantine::End(Turn& t, pglist::AllocationId alloc) {
  if (views_->Find(alloc) == nullptr) return;
  views_->End(alloc, t.now());
  ScanNow(t);  // most views are unmapped by now: look at once
}

void Quarantine::ScanNow(Turn& t) {
  next_scan_ = absl::Now();
  t.ScanSoon();
}

void Quarantine::CountReferences(LeaseViews::View& v, bool fresh) {
  if (!counts_trusted_) return;
  const std::optional<int64_t> refs = DmaBufReferences(v.fd);
  if (!refs) return;  // not a dma-buf: the scan decides
  const int64_t own = source_->ViewOwnReferences(v.info.id);
  if (fresh && *refs != 1 + own) {
    // Nothing was handed out yet: the count must be the daemon's and the
    // source's references. If it is not, counts are not understood here.
    counts_trusted_ = false;
    Log(LogLevel::kError,
        "a new view's dma-buf reference count is not what the daemon holds: "
        "the quarantine ignores counts from now on (the /proc scan decides)",
        {F("view", v.info.id), F("count", *refs), F("expected", 1 + own)});
    return;
  }
  v.counted = true;
  v.own_refs = own;
}

void Quarantine::Restore(Turn& t, const LiveLookup& live,
                         const std::map<std::string, EndedLease>& ended) {
  for (const std::string& name : source_->ViewNames()) {
    const auto lease = live(name);
    auto e = ended.find(name);
    absl::StatusOr<int> fd = absl::NotFoundError("no lease");
    if (lease || e != ended.end()) fd = source_->OpenView(name);
    absl::StatusOr<FileId> file =
        fd.ok() ? FileIdOf(*fd) : absl::StatusOr<FileId>(fd.status());
    if (!file.ok()) {
      if (fd.ok()) close(*fd);
      // A view of no lease this daemon knows (its memory was freed before
      // the file went): nothing of another tenant is in it.
      Log(LogLevel::kInfo, "removing a view of no lease",
          {F("view", name), F("why", file.status().ToString())});
      source_->DestroyView(name);
      continue;
    }
    LeaseViews::View v;
    v.file = *file;
    v.fd = *fd;
    v.info.id = name;
    CountReferences(v, /*fresh=*/false);
    if (lease) {
      v.alloc = lease->first;
      v.info = lease->second;
    } else {
      if (!v.counted) {
        close(*fd);  // the scan finds holders by file
        v.fd = -1;
      }
      v.alloc = e->second.alloc;
      v.info.id = name;
      v.info.tenant = e->second.tenant;
      v.info.bytes = 0;
      if (const pglist::Allocation* a = pool_->Find(e->second.alloc)) {
        for (const pglist::PageRun& r : a->runs) {
          v.info.runs.push_back(segments_->ToLeaseRun(t, r));
          v.info.bytes += v.info.runs.back().bytes;
        }
      }
      v.ended = true;
      v.ended_at = t.now();
      next_scan_ = absl::Now();
    }
    views_->Add(std::move(v));
  }
}

void Quarantine::RunReadyGates(Turn& t) {
  for (auto& then : views_->TakeReady(t.now())) then(t);
}

bool Quarantine::ScanDue(Turn&) const {
  return views_->has_quarantined() && absl::Now() >= next_scan_;
}

absl::Time Quarantine::NextWake(Turn& t) const {
  const absl::Time now = absl::Now();
  absl::Time until =
      views_->has_quarantined() ? next_scan_ : absl::InfiniteFuture();
  if (std::optional<absl::Time> d = views_->NextDeadline()) {
    // Gate deadlines are on the injected clock: look again soon.
    until =
        std::min(until, now + std::max(*d - t.now(), absl::Milliseconds(1)));
  }
  return until;
}

LeaseViews::ScanSet Quarantine::TakeScan(Turn&) { return views_->ToScan(); }

LeaseViews::Evidence Quarantine::Gather(const LeaseViews::ScanSet& set) const {
  // Only the quarantine thread closes an ended view's descriptor (Apply),
  // so those of `set` stay open meanwhile.
  std::set<FileId> files;
  for (const auto& [file, what] : set.files) files.insert(file);
  LeaseViews::Evidence found;
  found.scan = FindHolders(files, opts_.trusted_holders);
  for (const auto& [file, what] : set.files) {
    if (what.fd < 0) continue;
    if (std::optional<int64_t> refs = DmaBufReferences(what.fd))
      found.others[file] = *refs - 1 - what.own_refs;
  }
  found.blind = blind_;
  return found;
}

void Quarantine::Apply(Turn& t, const LeaseViews::ScanSet& set,
                       const LeaseViews::Evidence& found, absl::Duration took) {
  ++scans_;
  last_scan_ = took;
  last_processes_ = found.scan.processes;
  last_uninspected_ = found.scan.uninspected.size();
  std::vector<const LeaseViews::View*> newly_held;
  std::vector<LeaseViews::View> gone = views_->Apply(set, found, &newly_held);
  for (const LeaseViews::View* v : newly_held) {
    Log(LogLevel::kWarn,
        "an ended lease is still mapped: its memory is quarantined",
        {F("lease", v->info.id), F("tenant", v->info.tenant),
         F("bytes", v->info.bytes), F("holders", Describe(v->holders))});
  }
  if (views_->unverified_bytes() > 0 &&
      absl::Now() - last_unverified_log_ > absl::Minutes(1)) {
    last_unverified_log_ = absl::Now();
    Log(LogLevel::kWarn,
        "ended leases stay quarantined: the daemon cannot tell that nothing "
        "holds their views (grant it CAP_SYS_PTRACE or run it as root; "
        "docs/security.md, \"The quarantine\")",
        {F("bytes", views_->unverified_bytes()),
         F("uninspected_processes", found.scan.uninspected.size()),
         F("blind", blind_)});
  }
  for (const LeaseViews::View& v : gone) {
    source_->DestroyView(v.info.id);
    if (!v.holders.empty()) {
      Log(LogLevel::kInfo, "quarantine over: the view is no longer held",
          {F("lease", v.info.id), F("tenant", v.info.tenant),
           F("bytes", v.info.bytes)});
    }
  }
  next_scan_ = absl::Now() + opts_.scan_interval;
  (void)t;
}

LeaseInfo Quarantine::Quarantined(const LeaseViews::View& v) const {
  LeaseInfo info = v.info;
  info.quarantine = LeaseInfo::Quarantine{v.ended_at, v.holders};
  return info;
}

Quarantine::Figures Quarantine::figures(Turn&) const {
  return {scans_, last_scan_, last_processes_, last_uninspected_,
          !blind_.empty()};
}

}  // namespace physpool::server
