// SPDX-License-Identifier: Apache-2.0
#include "server/memory/occupancy.h"

#include <map>

#include "absl/strings/str_cat.h"

namespace physpool::server {

absl::StatusOr<OccupancyPage> Occupancy(
    Turn& t, const pglist::Pool& pool, const Segments& segments,
    const absl::flat_hash_set<pglist::AllocationId>& scrubbing,
    std::optional<uint32_t> segment_id,
    std::optional<std::pair<uint32_t, uint64_t>> from, size_t max_runs) {
  const uint64_t page_size = pool.page_size();
  OccupancyPage page;
  // Every allocated run with its state, by address.
  std::map<pglist::Pfn, std::pair<uint64_t, OccupancyState>> used;
  for (const auto& [id, a] : pool.allocations()) {
    const OccupancyState st = scrubbing.contains(id)
                                  ? OccupancyState::kScrubbing
                              : a.preemptible ? OccupancyState::kPreemptible
                                              : OccupancyState::kUsed;
    for (const auto& r : a.runs) used[r.start] = {r.pages.value, st};
  }
  bool found = false, started = !from.has_value();
  size_t total = 0;
  for (const auto& s : pool.Segments()) {
    if (segment_id && s.id != *segment_id) continue;
    found = true;
    if (!started && s.id != from->first) continue;
    const uint64_t skip_below = started ? 0 : from->second;
    started = true;
    std::vector<OccupancyRun> runs;
    pglist::Pfn pos = s.avail.start;
    bool full = false;
    auto add = [&](OccupancyState st, pglist::Pfn at, uint64_t pages) {
      if (pages == 0 || full) return;
      const uint64_t iova = at.value * page_size;
      if (!runs.empty() && runs.back().state == st &&
          runs.back().iova + runs.back().bytes == iova) {
        runs.back().bytes += pages * page_size;
        return;
      }
      if (iova + pages * page_size <= skip_below) return;
      if (total == max_runs) {
        page.next = {s.id, iova};
        full = true;
        return;
      }
      runs.push_back({st, iova, pages * page_size});
      ++total;
    };
    for (auto it = used.lower_bound(s.avail.start);
         it != used.end() && it->first < s.avail.end() && !full; ++it) {
      add(OccupancyState::kFree, pos, (it->first - pos).value);
      add(it->second.second, it->first, it->second.first);
      pos = it->first + pglist::PageCount(it->second.first);
    }
    add(OccupancyState::kFree, pos, (s.avail.end() - pos).value);
    if (!runs.empty() || !full)
      page.segments.push_back(
          {segments.View(t, s, scrubbing), std::move(runs)});
    if (full) break;
  }
  if (segment_id && !found)
    return absl::NotFoundError(absl::StrCat("no segment ", *segment_id));
  if (from && !started)
    return absl::InvalidArgumentError("page_token names no segment");
  return page;
}

}  // namespace physpool::server
