// SPDX-License-Identifier: Apache-2.0
// physpool's whole dispatch against the seed's uvm_pglistalloc (SeedVm),
// over random programs. See docs/allocator.md, "The whole dispatch,
// differentially".
#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "pglist/pool.h"
#include "pglist/request.h"
#include "pglist/testing/seed_vm.h"

namespace physpool::pglist {
namespace {

constexpr uint64_t kPs = 4096;

// The whole dispatch, differentially. Random programs of allocations and
// frees run on physpool's Pool and on the seed's uvm_pglistalloc (SeedVm)
// (next-fit placement, the default). Wherever the seed places a request,
// physpool takes the same pages and every segment's hint ends where the
// seed's does, except where the seed passed over a contiguous run across the
// hint of an earlier segment and went on to a later segment or freelist:
// physpool takes that run (segment order, DESIGN.md), and except where
// max_segments >= 2 lets physpool serve the request in several runs from
// freelists below the one where the seed took one run (freelist order);
// the test checks either and copies it into the seed's state. Where the
// seed fails,
// physpool fails with the same hints, or finds what the seed misses (a
// contiguous run straddling the hint, or several runs when max_segments >= 2
// accepts them): that placement is checked and copied into the seed's
// state. Requests physpool rejects as invalid are not run.
// PHYSPOOL_SEED_OPS sets the number of operations (default 1,000,000).
TEST(SeedTest, DispatchMatchesTheSeedOverRandomOperations) {
  const char* env = std::getenv("PHYSPOOL_SEED_OPS");
  const uint64_t target =
      env != nullptr ? std::strtoull(env, nullptr, 10) : 1000000;
  std::mt19937_64 rng(0x5eed);
  uint64_t ops = 0, invalid = 0, both_failed = 0, seed_hint_exhausts = 0,
           earlier_segment = 0, lower_freelist_multi = 0;
  std::map<std::string, uint64_t> agreed, physpool_only;
  while (ops < target) {
    PoolOptions opts;
    opts.strategy = rng() % 2 ? Strategy::kBigFirst : Strategy::kAddress;
    Pool pool = *Pool::Create(opts);
    testing::SeedVm seed;
    // Segments, plugged into the seed in the strategy's order.
    std::vector<SegmentSpec> specs;
    uint64_t cursor = rng() % 50;
    const int nsegs = 1 + rng() % 4;
    for (int i = 0; i < nsegs; ++i) {
      SegmentSpec sp;
      sp.pages = PageCount(1 + (rng() % 4 == 0 ? rng() % 600 : rng() % 120));
      sp.iova = (cursor + rng() % 8) * kPs;
      sp.freelist = static_cast<uint32_t>(rng() % 3);
      if (rng() % 6 == 0 && sp.pages.value > 2) {
        sp.avail_begin = rng() % (sp.pages.value / 2);
        sp.avail_end = sp.pages.value - rng() % (sp.pages.value / 2);
      }
      cursor = sp.iova / kPs + sp.pages.value;
      ASSERT_TRUE(pool.AddSegment(sp).ok());
      specs.push_back(sp);
    }
    auto avail = [](const SegmentSpec& sp) {
      return (sp.avail_end ? sp.avail_end : sp.pages.value) - sp.avail_begin;
    };
    std::sort(
        specs.begin(), specs.end(),
        [&](const SegmentSpec& a, const SegmentSpec& b) {
          if (opts.strategy == Strategy::kBigFirst && avail(a) != avail(b))
            return avail(a) > avail(b);
          return a.iova < b.iova;
        });
    for (const SegmentSpec& sp : specs) {
      testing::SeedSeg sg;
      sg.start = sp.iova / kPs;
      sg.end = sg.start + sp.pages.value;
      sg.avail_start = sg.start + sp.avail_begin;
      sg.avail_end = sg.start + (sp.avail_end ? sp.avail_end : sp.pages.value);
      sg.free_list = static_cast<int>(sp.freelist);
      seed.Plug(std::move(sg));
    }
    auto seed_seg = [&](Pfn base) -> testing::SeedSeg& {
      for (testing::SeedSeg& sg : seed.segs()) {
        if (sg.start == base.value) return sg;
      }
      ADD_FAILURE() << "no seed segment at pfn " << base.value;
      return seed.segs()[0];
    };
    auto hints_differ = [&]() -> std::string {
      for (const SegmentInfo& si : pool.Segments()) {
        const testing::SeedSeg& sg = seed_seg(Pfn(si.spec.iova / kPs));
        if (sg.avail_start + sg.start_hint != si.hint.value) {
          return absl::StrCat("segment at pfn ", sg.start, ": physpool hint ",
                              si.hint.value, ", seed ",
                              sg.avail_start + sg.start_hint);
        }
      }
      return "";
    };
    const uint64_t span = cursor + 16;
    std::vector<std::pair<AllocationId, std::vector<uint64_t>>> live;
    const int program_ops = 200 + static_cast<int>(rng() % 3000);
    for (int k = 0; k < program_ops; ++k, ++ops) {
      if (!live.empty() && rng() % 5 < 2) {
        const size_t i = rng() % live.size();
        ASSERT_TRUE(pool.Free(live[i].first).ok());
        seed.Free(live[i].second);
        live.erase(live.begin() + i);
        continue;
      }
      Request req;
      const uint64_t pages = rng() % 8 == 0 ? 1 + rng() % 200 : 1 + rng() % 16;
      req.bytes = pages * kPs - (rng() % 3 == 0 ? rng() % kPs : 0);
      if (rng() % 2) {
        req.alignment =
            rng() % 8 == 0 ? 512 : (uint64_t{1} << (rng() % 6)) * kPs;
      }
      if (rng() % 3 == 0) {
        uint64_t b = kPs;
        while (b < req.bytes) b <<= 1;
        req.boundary = b << (rng() % 3);
      }
      if (rng() % 4 == 0) {
        req.low = (rng() % span) * kPs + (rng() % 2 ? rng() % kPs : 0);
        req.high = req.low + (1 + rng() % 400) * kPs;
      } else if (rng() % 4 == 0) {
        req.high = (1 + rng() % span) * kPs;
      }
      const uint64_t m = rng() % 6;
      req.max_segments =
          m <= 1   ? 0
          : m == 2 ? 1
          : m == 3
              ? 2 + rng() % 3
              : static_cast<uint32_t>(pages > 1 ? pages - 1 + rng() % 3 : 1);
      auto c = Normalize(req, kPs);
      if (!c.ok()) {
        ++invalid;
        continue;
      }
      std::vector<testing::paddr_t> rl;
      const uint64_t free_before = pool.free_pages().value;
      const std::vector<SegmentInfo> segs_before = pool.Segments();
      const int err = seed.Alloc(
          req.bytes, req.low, req.high == kMaxIova ? ~uint64_t{0} : req.high,
          req.alignment, req.boundary,
          req.max_segments == 0 ? INT_MAX : static_cast<int>(req.max_segments),
          &rl);
      auto a = pool.Allocate(req);
      std::vector<uint64_t> ours;
      if (a.ok()) {
        for (const PageRun& r : a->runs) {
          for (uint64_t p = r.start.value; p < r.end().value; ++p)
            ours.push_back(p);
        }
      }
      const std::string what = absl::StrCat(
          "op ", ops, ": bytes ", req.bytes, " align ", req.alignment,
          " boundary ", req.boundary, " window [", req.low, ", ", req.high,
          ") max_segments ", req.max_segments);
      auto position = [&](uint64_t pfn) {
        for (size_t i = 0; i < segs_before.size(); ++i) {
          const PageRun& av = segs_before[i].avail;
          if (av.start.value <= pfn && pfn < av.end().value) return i;
        }
        ADD_FAILURE() << "page " << pfn << " is in no segment";
        return segs_before.size();
      };
      if (err == 0) {
        ASSERT_TRUE(a.ok())
            << what << ": the seed placed it, physpool " << a.status();
        std::sort(rl.begin(), rl.end());
        if (ours == rl) {
          ++agreed[std::string(PathName(a->path))];
        } else {
          // The two intended departures, both for order: the seed went on
          // to a later segment (or freelist) because its wrap pass missed a
          // run across the hint of an earlier one, which physpool takes;
          // or (max_segments >= 2) the seed took one run in a later
          // freelist where physpool serves the request in several runs
          // from freelists below it.
          const size_t seed_at = position(rl.front());
          if (a->path == Path::kMulti) {
            ASSERT_GE(c->max_runs, 2u) << what;
            for (const PageRun& r : a->runs) {
              ASSERT_LT(segs_before[position(r.start.value)].spec.freelist,
                        segs_before[seed_at].spec.freelist)
                  << what;
            }
            ++lower_freelist_multi;
          } else {
            ASSERT_EQ(a->path, Path::kContig) << what;
            const PageRun& r = a->runs.front();
            const size_t at = position(r.start.value);
            ASSERT_LT(at, seed_at) << what;
            const uint64_t hint = segs_before[at].hint.value;
            ASSERT_TRUE(r.start.value < hint && hint < r.end().value) << what;
            ++earlier_segment;
          }
          seed.Free(rl);
          seed.Take(ours);
          for (const SegmentInfo& si : pool.Segments()) {
            testing::SeedSeg& sg = seed_seg(Pfn(si.spec.iova / kPs));
            sg.start_hint =
                static_cast<unsigned>(si.hint.value - sg.avail_start);
          }
        }
      } else {
        ASSERT_EQ(err, ENOMEM) << what;
        if (a.ok()) {
          // Only the contiguous search's misses and the multi path may
          // succeed where the seed fails; the simple path is the seed's.
          ASSERT_NE(a->path, Path::kSimple) << what;
          ASSERT_EQ(ours.size(), c->pages.value) << what;
          ASSERT_LE(a->runs.size(), std::max<uint64_t>(c->max_runs, 1)) << what;
          for (const PageRun& r : a->runs)
            ASSERT_TRUE(c->Admits(r.start.value, r.pages.value)) << what;
          seed.Take(ours);
          for (const SegmentInfo& si : pool.Segments()) {
            testing::SeedSeg& sg = seed_seg(Pfn(si.spec.iova / kPs));
            sg.start_hint =
                static_cast<unsigned>(si.hint.value - sg.avail_start);
          }
          ++physpool_only[std::string(PathName(a->path))];
        } else {
          ++both_failed;
          if (c->Simple() && free_before > 0) ++seed_hint_exhausts;
        }
      }
      const std::string diff = hints_differ();
      ASSERT_EQ(diff, "") << what;
      if (a.ok()) live.emplace_back(a->id, std::move(ours));
    }
  }
  std::printf("%llu operations (%llu invalid requests skipped): ",
              static_cast<unsigned long long>(ops),
              static_cast<unsigned long long>(invalid));
  for (const auto& [path, n] : agreed)
    std::printf("%s %llu same as the seed; ", path.c_str(),
                static_cast<unsigned long long>(n));
  for (const auto& [path, n] : physpool_only)
    std::printf("%s %llu the seed missed; ", path.c_str(),
                static_cast<unsigned long long>(n));
  std::printf(
      "%llu placed by physpool in an earlier segment than the seed's (a run "
      "across its hint); %llu in several runs below the seed's freelist; "
      "%llu failed in both (%llu simple ones with pages free)\n",
      static_cast<unsigned long long>(earlier_segment),
      static_cast<unsigned long long>(lower_freelist_multi),
      static_cast<unsigned long long>(both_failed),
      static_cast<unsigned long long>(seed_hint_exhausts));
  EXPECT_GE(ops, target);
  EXPECT_GT(agreed["simple"], 0u);
  EXPECT_GT(agreed["contig"], 0u);
  EXPECT_GT(physpool_only["contig"], 0u);
  EXPECT_GT(physpool_only["multi"], 0u);
  EXPECT_GT(seed_hint_exhausts, 0u);
  EXPECT_GT(earlier_segment, 0u);
  EXPECT_GT(lower_freelist_multi, 0u);
}

}  // namespace
}  // namespace physpool::pglist
