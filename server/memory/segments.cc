// SPDX-License-Identifier: Apache-2.0
#include "server/memory/segments.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "server/core/log.h"
#include "server/store/unavailable.h"
#include "util/status_macros.h"

namespace physpool::server {

absl::Status Segments::Restore(Turn&, const std::set<uint64_t>& added) {
  const uint64_t page_size = pool_->page_size();
  for (const vfio::BackedSegment& seg : source_->segments()) {
    ASSIGN_OR_RETURN(pglist::SegmentId id, pool_->AddSegment(seg.spec));
    backing_[pglist::Pfn(seg.spec.iova / page_size)] = {
        id, seg.path, seg.file_offset, added.count(seg.spec.iova) > 0};
  }
  return absl::OkStatus();
}

LeaseRun Segments::ToLeaseRun(Turn&, const pglist::PageRun& r) const {
  const uint64_t page_size = pool_->page_size();
  auto it = std::prev(backing_.upper_bound(r.start));
  LeaseRun out;
  out.iova = pool_->ToIova(r.start);
  out.bytes = r.pages.value * page_size;
  out.backing_path = it->second.path;
  out.backing_offset =
      it->second.file_offset + (r.start - it->first).value * page_size;
  out.segment_id = it->second.id;
  return out;
}

std::vector<vfio::MemorySource::ViewRange> Segments::RangesOf(
    Turn&, pglist::AllocationId alloc) const {
  std::vector<vfio::MemorySource::ViewRange> out;
  for (const pglist::PageRun& r : pool_->Find(alloc)->runs) {
    out.push_back({pool_->ToIova(r.start), r.pages.value * pool_->page_size()});
  }
  return out;
}

SegmentView Segments::View(
    Turn&, const pglist::SegmentInfo& s,
    const absl::flat_hash_set<pglist::AllocationId>& scrubbing) const {
  SegmentView v;
  v.info = s;
  for (const auto& [base, rec] : backing_) {
    if (rec.id == s.id) v.backing_path = rec.path;
  }
  for (pglist::AllocationId a : scrubbing) {
    if (const pglist::Allocation* alloc = pool_->Find(a)) {
      for (const auto& r : alloc->runs) {
        if (s.avail.start <= r.start && r.start < s.avail.end())
          v.scrubbing_pages += r.pages.value;
      }
    }
  }
  return v;
}

absl::Status Segments::SetDraining(Turn& t, uint32_t segment_id, bool drain) {
  RETURN_IF_ERROR(drain ? pool_->DrainSegment(segment_id)
                        : pool_->UndrainSegment(segment_id));
  t.MemoryFreed();  // more memory, or never-fits now
  return absl::OkStatus();
}

absl::Status Segments::Record(Committer::Change change) {
  absl::Notification recorded;
  absl::Status rs;
  committer_->Submit(std::move(change), [&](absl::Status s) {
    rs = s;
    recorded.Notify();
  });
  recorded.WaitForNotification();
  return rs;
}

absl::StatusOr<pglist::SegmentId> Segments::Add(uint64_t bytes,
                                                uint32_t freelist,
                                                int32_t numa) {
  bool accepting = true;
  coordinator_->Locked([&](Turn& t) { accepting = t.accepting(); });
  if (!accepting)
    return absl::FailedPreconditionError("physpoold is shutting down");
  // Backing, mapping, pinning: outside the lock.
  ASSIGN_OR_RETURN(vfio::BackedSegment seg,
                   source_->AddSegment(bytes, freelist, numa));
  const uint64_t page_size = source_->page_size();
  absl::StatusOr<pglist::SegmentId> id;
  coordinator_->Locked([&](Turn&) {
    id = pool_->AddSegment(seg.spec);
    if (id.ok()) {
      // No allocation in it before the store knows it: a restart re-creates
      // it from there, and leases in it would not fit the pool otherwise.
      (void)pool_->DrainSegment(*id);
      backing_[pglist::Pfn(seg.spec.iova / page_size)] = {
          *id, seg.path, seg.file_offset, /*added=*/true};
    }
  });
  if (!id.ok()) {
    (void)source_->RemoveSegment(seg.spec.iova);
    return id.status();
  }
  const absl::Status rs = Record(
      [stored = StoredSegment{seg.spec.iova, bytes, freelist, numa, seg.path}](
          LeaseStore& s) { return s.PutSegment(stored); });
  absl::StatusOr<pglist::SegmentId> result = id;
  coordinator_->Locked([&](Turn& t) {
    if (rs.ok()) {
      (void)pool_->UndrainSegment(*id);
      t.MemoryFreed();
      Log(LogLevel::kInfo, "segment added",
          {F("segment", *id), F("iova", seg.spec.iova), F("bytes", bytes),
           F("path", seg.path)});
    } else {
      durable_->Failed(t, rs);
      (void)pool_->RemoveSegment(*id);
      backing_.erase(pglist::Pfn(seg.spec.iova / page_size));
      result = StoreUnavailable(rs, "the segment was not added");
    }
  });
  if (!rs.ok()) (void)source_->RemoveSegment(seg.spec.iova);
  return result;
}

absl::Status Segments::Remove(uint32_t segment_id) {
  uint64_t iova = 0;
  bool was_draining = false;
  absl::Status refused;
  coordinator_->Locked([&](Turn&) {
    auto it =
        std::find_if(backing_.begin(), backing_.end(),
                     [&](const auto& b) { return b.second.id == segment_id; });
    if (it == backing_.end()) {
      refused = absl::NotFoundError(absl::StrCat("no segment ", segment_id));
      return;
    }
    if (!it->second.added) {
      // The config file makes it again at every start, where leases of a
      // store would expect it as it was (docs/operations.md, "Segments").
      refused = absl::FailedPreconditionError(absl::StrCat(
          "segment ", segment_id,
          " comes from the configuration file, which makes it again at the "
          "next start: drain it (no new leases land there) and, once it is "
          "empty, take it out of the file and restart; RemoveSegment removes "
          "segments added with AddSegment"));
      return;
    }
    for (const auto& s : pool_->Segments()) {
      if (s.id != segment_id) continue;
      if (s.used_pages.value != 0) {
        refused = absl::FailedPreconditionError(
            absl::StrCat("segment ", segment_id, " still has ",
                         s.used_pages.value, " pages allocated"));
        return;
      }
      was_draining = s.draining;
    }
    (void)pool_->DrainSegment(segment_id);  // nothing new while recording
    iova = pool_->ToIova(it->first);
  });
  RETURN_IF_ERROR(refused);
  const absl::Status rs =
      Record([iova](LeaseStore& s) { return s.DeleteSegment(iova); });
  coordinator_->Locked([&](Turn& t) {
    if (!rs.ok()) {
      durable_->Failed(t, rs);
      if (!was_draining) (void)pool_->UndrainSegment(segment_id);
      refused = StoreUnavailable(rs, "the segment was not removed");
      return;
    }
    refused = pool_->RemoveSegment(segment_id);
    if (!refused.ok()) return;
    backing_.erase(pglist::Pfn(iova / pool_->page_size()));
    Log(LogLevel::kInfo, "segment removed",
        {F("segment", segment_id), F("iova", iova)});
  });
  RETURN_IF_ERROR(refused);
  // Unmapping, unpinning, closing: outside the lock.
  return source_->RemoveSegment(iova);
}

}  // namespace physpool::server
