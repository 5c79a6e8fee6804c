// SPDX-License-Identifier: Apache-2.0
// pool status, pool map.
#include <memory>

#include "cli/commands.h"

namespace physpool::cli {
namespace {

int PoolStatus(const Ctx& c) {
  v1::GetPoolInfoResponse info;
  auto ctx = c.Call();
  if (auto s = c.Pool()->GetPoolInfo(ctx.get(), {}, &info); !s.ok())
    return Fail(s);
  c.out->PoolStatus(info);
  return 0;
}

// Appends an occupancy page to `all`. Pages count runs, so a segment may
// continue on the next page: its runs join the same segment (and a run cut
// at the page boundary becomes one again).
void MergeOccupancy(v1::OccupancyResponse page, v1::OccupancyResponse* all) {
  for (v1::SegmentOccupancy& so : *page.mutable_segments()) {
    const int n = all->segments_size();
    if (n == 0 || all->segments(n - 1).segment().id() != so.segment().id()) {
      *all->add_segments() = std::move(so);
      continue;
    }
    v1::SegmentOccupancy* last = all->mutable_segments(n - 1);
    for (const v1::OccupancyRun& r : so.runs()) {
      const int k = last->runs_size();
      v1::OccupancyRun* prev = k > 0 ? last->mutable_runs(k - 1) : nullptr;
      if (prev != nullptr && prev->state() == r.state() &&
          prev->iova() + prev->length() == r.iova()) {
        prev->set_length(prev->length() + r.length());
      } else {
        *last->add_runs() = r;
      }
    }
  }
}

struct MapFlags {
  int64_t segment = -1;  // -1: every segment
  int width = 64;
  bool ascii = false;
  int32_t page_size = 0;
};

int PoolMap(const Ctx& c, const MapFlags& f) {
  v1::OccupancyRequest req;
  if (f.segment >= 0) req.set_segment_id(static_cast<uint32_t>(f.segment));
  v1::OccupancyResponse occ;
  auto admin = c.Admin();
  if (auto s = FollowPages<v1::OccupancyResponse>(
          c, f.page_size, req,
          [&](grpc::ClientContext* ctx, const v1::OccupancyRequest& r,
              v1::OccupancyResponse* page) {
            return admin->GetOccupancy(ctx, r, page);
          },
          [&](v1::OccupancyResponse page) {
            MergeOccupancy(std::move(page), &occ);
          });
      !s.ok()) {
    return Fail(s);
  }
  v1::GetPoolInfoResponse info;  // for the page size
  auto ctx = c.Call();
  if (auto s = c.Pool()->GetPoolInfo(ctx.get(), {}, &info); !s.ok())
    return Fail(s);
  c.out->PoolMap({&occ, info.page_size(), f.width, f.ascii});
  return 0;
}

}  // namespace

void AddPoolCommands(CLI::App* root, Commands* out) {
  CLI::App* pool = Noun(root, "pool", "the pool as a whole");
  CLI::App* status = Leaf(
      pool, "status", "physpoolctl pool status",
      "Each segment's usage as a bar, with used, scrubbing and free sizes, "
      "and the caller's tenant usage and limits.",
      "physpoolctl pool status -o json | jq .free_bytes");
  out->push_back({status, PoolStatus});

  auto f = std::make_shared<MapFlags>();
  CLI::App* map = Leaf(
      pool, "map",
      "physpoolctl pool map [--segment ID] [--width CELLS] [--ascii] "
      "[--page-size RUNS]   (admin)",
      "Draws each segment's occupancy: one cell per N pages (at most 4 rows "
      "a segment), shaded by the state holding most of its pages, with a "
      "legend. Reads every page of the occupancy; -o json prints the "
      "segments merged across pages.",
      "physpoolctl pool map --width 100 --ascii");
  map->add_option("--segment", f->segment, "only this segment")
      ->check(CLI::Range(int64_t{0}, int64_t{UINT32_MAX}));
  map->add_option("--width", f->width, "cells per line (8 to 1000)")
      ->check(CLI::Range(8, 1000));
  map->add_flag("--ascii", f->ascii, "ASCII cells instead of block characters");
  AddPageSize(map, &f->page_size, "runs");
  out->push_back({map, [f](const Ctx& c) { return PoolMap(c, *f); }});
}

}  // namespace physpool::cli
