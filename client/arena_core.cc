// SPDX-License-Identifier: Apache-2.0
#include "client/arena_core.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace physpool::client_internal {

absl::StatusOr<ArenaCore> ArenaCore::Create(uint64_t page_size, bool best_fit) {
  pglist::PoolOptions po;
  po.page_size = page_size;
  po.placement =
      best_fit ? pglist::Placement::kBestFit : pglist::Placement::kNextFit;
  absl::StatusOr<pglist::Pool> pool = pglist::Pool::Create(po);
  if (!pool.ok()) return pool.status();
  return ArenaCore(*std::move(pool));
}

absl::StatusOr<size_t> ArenaCore::AddRegion(
    const std::vector<MappedRun>& runs) {
  const uint64_t page = page_size();
  Region r;
  r.runs = runs;
  for (const MappedRun& m : runs) {
    if (m.bytes == 0 || m.iova % page != 0 || m.bytes % page != 0 ||
        m.cpu == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("arena: run at IOVA 0x", absl::Hex(m.iova), " of ",
                       m.bytes, " bytes is not whole mapped pages of ", page));
    }
  }
  const size_t index = regions_.size();
  for (const MappedRun& m : runs) {
    pglist::SegmentSpec spec;
    spec.iova = m.iova;
    spec.pages = pglist::PageCount(m.bytes / page);
    absl::StatusOr<pglist::SegmentId> seg = pool_.AddSegment(spec);
    if (!seg.ok()) {
      for (pglist::SegmentId s : r.segments) (void)pool_.RemoveSegment(s);
      return seg.status();
    }
    r.segments.push_back(*seg);
    r.bytes += m.bytes;
  }
  for (const MappedRun& m : runs) {
    spans_.push_back({m.iova, m.iova + m.bytes, m.cpu, index});
  }
  std::sort(spans_.begin(), spans_.end(),
            [](const Span& a, const Span& b) { return a.iova < b.iova; });
  regions_.push_back(std::move(r));
  return index;
}

const ArenaCore::Span* ArenaCore::Find(uint64_t iova) const {
  auto it =
      std::upper_bound(spans_.begin(), spans_.end(), iova,
                       [](uint64_t v, const Span& s) { return v < s.iova; });
  if (it == spans_.begin()) return nullptr;
  --it;
  return iova < it->end ? &*it : nullptr;
}

int64_t ArenaCore::RegionOf(uint64_t iova) const {
  const Span* s = Find(iova);
  return s == nullptr ? -1 : static_cast<int64_t>(s->region);
}

absl::StatusOr<Placed> ArenaCore::Allocate(const BufferOptions& o) {
  pglist::Request req;
  req.bytes = o.bytes;
  req.alignment = o.alignment;
  req.boundary = o.boundary;
  req.max_segments = o.max_segments;
  absl::StatusOr<pglist::Allocation> a = pool_.Allocate(req);
  if (!a.ok()) return a.status();
  const uint64_t page = page_size();
  Placed out;
  out.id = a->id;
  for (const pglist::PageRun& r : a->runs) {
    const uint64_t iova = r.start.value * page;
    const uint64_t bytes = r.pages.value * page;
    // Every run lies in one segment, which is one span (AddRegion).
    const Span* s = Find(iova);
    out.runs.push_back({iova, bytes, s->cpu + (iova - s->iova)});
    out.bytes += bytes;
    regions_[s->region].used_pages += r.pages.value;
  }
  return out;
}

bool ArenaCore::Free(uint64_t id) {
  if (lost_.erase(id) > 0) return false;
  const pglist::Allocation* a = pool_.Find(id);
  if (a == nullptr) return false;
  for (const pglist::PageRun& r : a->runs) {
    regions_[Find(r.start.value * page_size())->region].used_pages -=
        r.pages.value;
  }
  return pool_.Free(id).ok();
}

std::vector<uint64_t> ArenaCore::RemoveRegion(size_t index) {
  std::vector<uint64_t> hit;
  if (index >= regions_.size() || !regions_[index].live) return hit;
  Region& region = regions_[index];
  const uint64_t page = page_size();
  for (const auto& [id, a] : pool_.allocations()) {
    for (const pglist::PageRun& r : a.runs) {
      const Span* s = Find(r.start.value * page);
      if (s != nullptr && s->region == index) {
        hit.push_back(id);
        break;
      }
    }
  }
  std::sort(hit.begin(), hit.end());
  for (uint64_t id : hit) {
    Free(id);  // its runs in other regions go back to them
    lost_.insert(id);
  }
  for (pglist::SegmentId s : region.segments) (void)pool_.RemoveSegment(s);
  region.segments.clear();
  region.live = false;
  region.used_pages = 0;
  spans_.erase(std::remove_if(spans_.begin(), spans_.end(),
                              [&](const Span& s) { return s.region == index; }),
               spans_.end());
  return hit;
}

bool ArenaCore::RegionLive(size_t index) const {
  return index < regions_.size() && regions_[index].live;
}
uint64_t ArenaCore::RegionUsedPages(size_t index) const {
  return index < regions_.size() ? regions_[index].used_pages : 0;
}
uint64_t ArenaCore::RegionBytes(size_t index) const {
  return index < regions_.size() ? regions_[index].bytes : 0;
}

uint64_t ArenaCore::live_bytes() const {
  uint64_t n = 0;
  for (const Region& r : regions_) n += r.live ? r.bytes : 0;
  return n;
}

uint64_t ArenaCore::used_bytes() const {
  uint64_t n = 0;
  for (const Region& r : regions_) n += r.used_pages;
  return n * page_size();
}

absl::Status ArenaCore::Verify() const {
  if (absl::Status s = pool_.Verify(); !s.ok()) return s;
  std::vector<uint64_t> used(regions_.size());
  for (const auto& [id, a] : pool_.allocations()) {
    for (const pglist::PageRun& r : a.runs) {
      const uint64_t iova = r.start.value * page_size();
      const Span* s = Find(iova);
      if (s == nullptr || iova + r.pages.value * page_size() > s->end) {
        return absl::InternalError(absl::StrCat("arena: buffer ", id,
                                                " run at 0x", absl::Hex(iova),
                                                " is not inside one live run"));
      }
      used[s->region] += r.pages.value;
    }
  }
  for (size_t i = 0; i < regions_.size(); ++i) {
    if (used[i] != regions_[i].used_pages) {
      return absl::InternalError(absl::StrCat("arena: region ", i, " counts ",
                                              regions_[i].used_pages,
                                              " used pages, holds ", used[i]));
    }
  }
  return absl::OkStatus();
}

}  // namespace physpool::client_internal
