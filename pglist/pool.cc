// SPDX-License-Identifier: Apache-2.0
// The pool: segments and their order, records of allocations, frees,
// inspection and Verify. The paths are in pool_allocate.cc and
// pool_reclaim.cc.
#include "pglist/pool.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace physpool::pglist {

absl::StatusOr<Pool> Pool::Create(const PoolOptions& options) {
  if (!IsPowerOfTwo(options.page_size) || options.page_size < 4096 ||
      options.page_size > (uint64_t{1} << 30)) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size ", options.page_size,
                     " must be a power of two from 4096 to 1073741824"));
  }
  return Pool(options);
}

// --- Segments ---------------------------------------------------------------

absl::StatusOr<SegmentId> Pool::AddSegment(const SegmentSpec& spec) {
  const uint64_t ps = opts_.page_size;
  if (spec.iova % ps != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("segment iova ", spec.iova,
                     " is not a multiple of the page size ", ps));
  }
  if (spec.pages.value == 0 || spec.pages.value > kMaxSegmentPages) {
    return absl::InvalidArgumentError(
        absl::StrCat("segment pages ", spec.pages.value, " must be in [1, ",
                     kMaxSegmentPages, "]"));
  }
  const auto bytes = CheckedMul(spec.pages.value, ps);
  if (!bytes || !CheckedAdd(spec.iova, *bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("segment at iova ", spec.iova, " with ", spec.pages.value,
                     " pages ends past 2^64"));
  }
  const uint64_t avail_end =
      spec.avail_end != 0 ? spec.avail_end : spec.pages.value;
  if (spec.avail_begin >= avail_end || avail_end > spec.pages.value) {
    return absl::InvalidArgumentError(absl::StrCat(
        "segment available range [", spec.avail_begin, ", ", avail_end,
        ") is not a non-empty part of its ", spec.pages.value, " pages"));
  }
  const Pfn base(spec.iova / ps);
  const PageRun range{base, spec.pages};
  auto next = by_base_.lower_bound(base);
  if (next != by_base_.end() &&
      range.Overlaps({next->second->base(), next->second->spec().pages})) {
    return absl::AlreadyExistsError(absl::StrCat("segment at iova ", spec.iova,
                                                 " overlaps segment ",
                                                 next->second->id()));
  }
  if (next != by_base_.begin()) {
    const PhysSeg* prev = std::prev(next)->second;
    if (range.Overlaps({prev->base(), prev->spec().pages})) {
      return absl::AlreadyExistsError(absl::StrCat(
          "segment at iova ", spec.iova, " overlaps segment ", prev->id()));
    }
  }
  const SegmentId id = next_segment_id_++;
  segs_.push_back(std::make_unique<PhysSeg>(id, spec, ps));
  by_base_[base] = segs_.back().get();
  Reorder();
  return id;
}

void Pool::Reorder() {
  order_.clear();
  for (const auto& s : segs_) order_.push_back(s.get());
  const bool big_first = opts_.strategy == Strategy::kBigFirst;
  std::sort(order_.begin(), order_.end(), [big_first](PhysSeg* a, PhysSeg* b) {
    if (a->spec().freelist != b->spec().freelist) {
      return a->spec().freelist < b->spec().freelist;
    }
    if (big_first && a->avail().pages != b->avail().pages) {
      return a->avail().pages > b->avail().pages;
    }
    return a->base() < b->base();
  });
}

PhysSeg* Pool::FindSegment(Pfn p) const {
  auto it = by_base_.upper_bound(p);
  if (it == by_base_.begin()) return nullptr;
  --it;
  return p < it->second->end() ? it->second : nullptr;
}

PhysSeg* Pool::SegmentById(SegmentId id) const {
  for (const auto& s : segs_) {
    if (s->id() == id) return s.get();
  }
  return nullptr;
}

absl::Status Pool::DrainSegment(SegmentId id) {
  PhysSeg* s = SegmentById(id);
  if (s == nullptr) return absl::NotFoundError(absl::StrCat("no segment ", id));
  s->set_draining(true);
  return absl::OkStatus();
}

absl::Status Pool::UndrainSegment(SegmentId id) {
  PhysSeg* s = SegmentById(id);
  if (s == nullptr) return absl::NotFoundError(absl::StrCat("no segment ", id));
  s->set_draining(false);
  return absl::OkStatus();
}

absl::Status Pool::RemoveSegment(SegmentId id) {
  PhysSeg* s = SegmentById(id);
  if (s == nullptr) return absl::NotFoundError(absl::StrCat("no segment ", id));
  if (s->used_pages().value != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("segment ", id, " still has ", s->used_pages().value,
                     " pages allocated"));
  }
  by_base_.erase(s->base());
  segs_.erase(std::find_if(segs_.begin(), segs_.end(),
                           [s](const auto& p) { return p.get() == s; }));
  Reorder();
  return absl::OkStatus();
}

std::vector<SegmentInfo> Pool::Segments() const {
  std::vector<SegmentInfo> out;
  for (const PhysSeg* s : order_) {
    out.push_back({s->id(), s->spec(), s->avail(), s->free_pages(),
                   s->used_pages(), s->LargestFreeRun(), s->hint(),
                   s->draining()});
  }
  return out;
}

namespace {
template <typename Key, typename F>
std::map<Key, Usage> UsageBy(const std::vector<PhysSeg*>& segs, F key) {
  std::map<Key, Usage> out;
  for (const PhysSeg* s : segs) {
    Usage& u = out[key(*s)];
    u.free_pages += s->free_pages();
    u.used_pages += s->used_pages();
    u.largest_free_run = std::max(u.largest_free_run, s->LargestFreeRun());
  }
  return out;
}
}  // namespace

std::map<uint32_t, Usage> Pool::UsageByFreelist() const {
  return UsageBy<uint32_t>(order_,
                           [](const PhysSeg& s) { return s.spec().freelist; });
}

std::map<int32_t, Usage> Pool::UsageByNuma() const {
  return UsageBy<int32_t>(order_,
                          [](const PhysSeg& s) { return s.spec().numa; });
}

// --- Records ----------------------------------------------------------------

// Sorts runs by address. With `join`, joins neighbours that lie in the same
// segment: only for the simple path, since runs of the other paths that
// touch were cut at a boundary multiple and must stay apart.
std::vector<PageRun> Pool::Canonical(std::vector<PageRun> runs,
                                     bool join) const {
  std::sort(runs.begin(), runs.end(), [](const PageRun& a, const PageRun& b) {
    return a.start < b.start;
  });
  std::vector<PageRun> out;
  for (const PageRun& r : runs) {
    if (join && !out.empty() && out.back().end() == r.start &&
        FindSegment(out.back().start) == FindSegment(r.start)) {
      out.back().pages += r.pages;
    } else {
      out.push_back(r);
    }
  }
  return out;
}

Allocation& Pool::Record(std::vector<PageRun> runs, Path path, bool preemptible,
                         bool sync) {
  const AllocationId id = next_id_++;
  Allocation& a = allocs_[id];
  a.id = id;
  a.path = path;
  a.preemptible = preemptible;
  a.runs = Canonical(std::move(runs), path == Path::kSimple);
  const PageCount total = a.pages();
  for (const PageRun& r : a.runs) {
    if (preemptible) preempt_[r.start] = {r.pages, id, total};
    if (sync) FindSegment(r.start)->Sync();
  }
  if (path != Path::kClaim) ++stats_.at(path).successes;
  return a;
}

absl::StatusOr<Allocation> Pool::Claim(absl::Span<const PageRun> runs,
                                       bool preemptible, bool sync) {
  std::vector<PageRun> sorted(runs.begin(), runs.end());
  std::sort(
      sorted.begin(), sorted.end(),
      [](const PageRun& a, const PageRun& b) { return a.start < b.start; });
  if (sorted.empty()) return absl::InvalidArgumentError("claim of no runs");
  for (size_t i = 0; i < sorted.size(); ++i) {
    const PageRun& r = sorted[i];
    const PhysSeg* s = FindSegment(r.start);
    if (r.pages.value == 0 || s == nullptr || !s->Holds(r)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "run [pfn ", r.start.value, " +", r.pages.value,
          ") is empty or not inside one segment's available range"));
    }
    if (i > 0 && sorted[i - 1].Overlaps(r)) {
      return absl::InvalidArgumentError(
          absl::StrCat("runs overlap at pfn ", r.start.value));
    }
    if (!s->IsFree(r)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "run [pfn ", r.start.value, " +", r.pages.value, ") is in use"));
    }
  }
  for (const PageRun& r : sorted) FindSegment(r.start)->Take(r);
  return Record(std::move(sorted), Path::kClaim, preemptible, sync);
}

absl::Status Pool::Free(AllocationId id) {
  auto it = allocs_.find(id);
  if (it == allocs_.end()) {
    return absl::NotFoundError(absl::StrCat(
        "allocation ", id, " is not live (never allocated, or already freed)"));
  }
  for (const PageRun& r : it->second.runs) {
    PhysSeg* s = FindSegment(r.start);
    absl::Status st =
        s == nullptr ? absl::InternalError("no segment") : s->Release(r);
    if (!st.ok()) {
      return absl::InternalError(
          absl::StrCat("allocation ", id, " is inconsistent: ", st.message()));
    }
    if (it->second.preemptible) preempt_.erase(r.start);
  }
  for (const PageRun& r : it->second.runs) FindSegment(r.start)->Sync();
  allocs_.erase(it);
  return absl::OkStatus();
}

absl::Status Pool::SetPreemptible(AllocationId id, bool preemptible) {
  auto it = allocs_.find(id);
  if (it == allocs_.end()) {
    return absl::NotFoundError(absl::StrCat("allocation ", id, " is not live"));
  }
  Allocation& a = it->second;
  if (a.preemptible == preemptible) return absl::OkStatus();
  a.preemptible = preemptible;
  const PageCount total = a.pages();
  for (const PageRun& r : a.runs) {
    if (preemptible) {
      preempt_[r.start] = {r.pages, id, total};
    } else {
      preempt_.erase(r.start);
    }
  }
  return absl::OkStatus();
}

// --- Inspection -------------------------------------------------------------

std::vector<PageRun> Pool::FreeRunsIn(const PageRun& r) const {
  std::vector<PageRun> out;
  const PhysSeg* s = FindSegment(r.start);
  if (s == nullptr || !s->Holds(r)) return out;
  const FreeMap& m = s->map();
  const uint64_t end = s->Off(r.end());
  for (uint64_t pos = s->Off(r.start); pos < end;) {
    const uint64_t a = m.NextFree(pos, end);
    if (a >= end) break;
    const uint64_t b = m.NextUsed(a, end);
    out.push_back({s->base() + PageCount(a), PageCount(b - a)});
    pos = b;
  }
  return out;
}

const Allocation* Pool::Find(AllocationId id) const {
  auto it = allocs_.find(id);
  return it == allocs_.end() ? nullptr : &it->second;
}

PageCount Pool::total_pages() const {
  PageCount n;
  for (const auto& s : segs_) n += s->avail().pages;
  return n;
}

PageCount Pool::free_pages() const {
  PageCount n;
  for (const auto& s : segs_) n += s->free_pages();
  return n;
}

PageCount Pool::allocatable_free_pages() const {
  PageCount n;
  for (const auto& s : segs_) {
    if (!s->draining()) n += s->free_pages();
  }
  return n;
}

size_t Pool::MetadataBytes() const {
  size_t n = 0;
  for (const auto& s : segs_) n += s->map().MetadataBytes();
  return n;
}

absl::Status Pool::Verify() const {
  std::vector<std::pair<PageRun, AllocationId>> all;
  absl::flat_hash_map<const PhysSeg*, uint64_t> used;
  size_t preemptible_runs = 0;
  for (const auto& [id, a] : allocs_) {
    for (const PageRun& r : a.runs) {
      const PhysSeg* s = FindSegment(r.start);
      if (s == nullptr || !s->Holds(r) || !s->IsUsed(r)) {
        return absl::InternalError(
            absl::StrCat("allocation ", id, " run at pfn ", r.start.value,
                         " is outside a segment or not marked used"));
      }
      used[s] += r.pages.value;
      all.emplace_back(r, id);
      if (a.preemptible) {
        ++preemptible_runs;
        auto it = preempt_.find(r.start);
        if (it == preempt_.end() || it->second.id != id ||
            it->second.pages != r.pages) {
          return absl::InternalError(
              absl::StrCat("preemptible index misses allocation ", id));
        }
      }
    }
  }
  if (preemptible_runs != preempt_.size()) {
    return absl::InternalError("preemptible index has stale runs");
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
    return a.first.start < b.first.start;
  });
  for (size_t i = 1; i < all.size(); ++i) {
    if (all[i - 1].first.Overlaps(all[i].first)) {
      return absl::InternalError(absl::StrCat("allocations ", all[i - 1].second,
                                              " and ", all[i].second,
                                              " overlap"));
    }
  }
  for (const auto& s : segs_) {
    const uint64_t want = used.contains(s.get()) ? used[s.get()] : 0;
    if (s->used_pages().value != want ||
        s->free_pages() + s->used_pages() != s->avail().pages) {
      return absl::InternalError(
          absl::StrCat("segment ", s->id(), " marks ", s->used_pages().value,
                       " pages used but allocations hold ", want));
    }
  }
  return absl::OkStatus();
}

}  // namespace physpool::pglist