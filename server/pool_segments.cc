// SPDX-License-Identifier: Apache-2.0
// PoolManager's segment operations (pool_manager.h): the list, draining,
// hot add and remove (prepared by Segments outside the lock, serialised by
// segment_mu_), and the occupancy map.
#include "server/lease/parts.h"
#include "server/pool_manager.h"

namespace physpool::server {

std::vector<SegmentView> PoolManager::Segments() {
  std::vector<SegmentView> out;
  Locked([&](Turn& t) {
    for (const auto& s : parts_->pool.Segments())
      out.push_back(parts_->segments.View(t, s, parts_->recycler.scrubbing(t)));
  });
  return out;
}

absl::StatusOr<SegmentView> PoolManager::SetDraining(uint32_t segment_id,
                                                     bool drain) {
  absl::StatusOr<SegmentView> out;
  Locked([&](Turn& t) {
    if (absl::Status s = parts_->segments.SetDraining(t, segment_id, drain);
        !s.ok()) {
      out = s;
      return;
    }
    for (const auto& seg : parts_->pool.Segments()) {
      if (seg.id == segment_id)
        out = parts_->segments.View(t, seg, parts_->recycler.scrubbing(t));
    }
  });
  return out;
}

absl::StatusOr<SegmentView> PoolManager::AddSegment(uint64_t bytes,
                                                    uint32_t freelist,
                                                    int32_t numa) {
  absl::MutexLock serial(&segment_mu_);
  absl::StatusOr<pglist::SegmentId> id =
      parts_->segments.Add(bytes, freelist, numa);
  if (!id.ok()) return id.status();
  absl::StatusOr<SegmentView> out;
  Locked([&](Turn& t) {
    for (const auto& seg : parts_->pool.Segments()) {
      if (seg.id == *id)
        out = parts_->segments.View(t, seg, parts_->recycler.scrubbing(t));
    }
  });
  return out;
}

absl::Status PoolManager::RemoveSegment(uint32_t segment_id) {
  absl::MutexLock serial(&segment_mu_);
  return parts_->segments.Remove(segment_id);
}

absl::StatusOr<OccupancyPage> PoolManager::Occupancy(
    std::optional<uint32_t> segment_id,
    std::optional<std::pair<uint32_t, uint64_t>> from, size_t max_runs) {
  absl::StatusOr<OccupancyPage> out;
  Locked([&](Turn& t) {
    out = server::Occupancy(t, parts_->pool, parts_->segments,
                            parts_->recycler.scrubbing(t), segment_id, from,
                            max_runs);
  });
  return out;
}

}  // namespace physpool::server
