// SPDX-License-Identifier: Apache-2.0
// ArenaCore against a naive model: random programs of buffer allocations,
// frees, region additions and losses on leases of several runs at odd
// IOVAs. Every answer is checked (inside one live run, aligned and within
// its boundary in IOVA space, no overlap, CPU address = the run's mapping
// + offset, the pages asked for); a refusal of a one-run or simple request
// is checked against an exhaustive search of the model. Each buffer's
// memory is written whole: under ASan a CPU address outside its run's
// mapping (each run is its own heap block) fails. PHYSPOOL_PROPERTY_OPS
// scales the number of operations (default 1,000,000, as pglist's).
#include "client/arena_core.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "pglist/outcome.h"

namespace physpool::client_internal {
namespace {

constexpr uint64_t kPage = 4096;

uint64_t TargetOps() {
  const char* env = std::getenv("PHYSPOOL_PROPERTY_OPS");
  return env != nullptr ? std::strtoull(env, nullptr, 10) / 4 : 250000;
}

struct ModelRegion {
  std::vector<MappedRun> runs;
  std::vector<std::unique_ptr<char[]>> memory;  // one heap block per run
  bool live = true;
};

class Model {
 public:
  explicit Model(std::mt19937_64* rng) : rng_(*rng) {}

  // A lease of 1-4 runs at odd page addresses, away from the others.
  ModelRegion NewRegion() {
    ModelRegion r;
    const int runs = 1 + static_cast<int>(rng_() % 4);
    for (int i = 0; i < runs; ++i) {
      const uint64_t pages = 1 + rng_() % 96;
      // Odd pages, 1 GiB apart per run: never overlapping.
      const uint64_t iova = (next_gib_++ << 30) + ((rng_() % 4096) | 1) * kPage;
      r.memory.emplace_back(new char[pages * kPage]);
      r.runs.push_back({iova, pages * kPage, r.memory.back().get()});
    }
    return r;
  }

  // The run of a live region holding [iova, iova + bytes), or null.
  const MappedRun* RunOf(uint64_t iova, uint64_t bytes) const {
    for (const ModelRegion& r : regions) {
      if (!r.live) continue;
      for (const MappedRun& m : r.runs) {
        if (m.iova <= iova && iova + bytes <= m.iova + m.bytes) return &m;
      }
    }
    return nullptr;
  }
  size_t RegionOf(uint64_t iova) const {
    for (size_t i = 0; i < regions.size(); ++i) {
      for (const MappedRun& m : regions[i].runs) {
        if (m.iova <= iova && iova < m.iova + m.bytes) return i;
      }
    }
    return regions.size();
  }
  bool Used(uint64_t page) const { return used.count(page) > 0; }

  // Whether one run of `pages` with `align` and `boundary` (in pages) fits
  // in the free pages of the live regions (exhaustive).
  bool OneRunFits(uint64_t pages, uint64_t align, uint64_t boundary) const {
    for (const ModelRegion& r : regions) {
      if (!r.live) continue;
      for (const MappedRun& m : r.runs) {
        const uint64_t first = m.iova / kPage, end = first + m.bytes / kPage;
        for (uint64_t s = (first + align - 1) / align * align; s + pages <= end;
             s += align) {
          if (boundary != 0 && s / boundary != (s + pages - 1) / boundary)
            continue;
          bool free = true;
          for (uint64_t p = s; p < s + pages && free; ++p) free = !Used(p);
          if (free) return true;
        }
      }
    }
    return false;
  }
  uint64_t FreePages() const {
    uint64_t n = 0;
    for (const ModelRegion& r : regions) {
      if (!r.live) continue;
      for (const MappedRun& m : r.runs) n += m.bytes / kPage;
    }
    return n - used.size();
  }

  std::vector<ModelRegion> regions;  // by core index
  std::map<uint64_t, Placed> buffers;
  std::set<uint64_t> used;  // pages
  std::set<uint64_t> lost;  // buffer ids

 private:
  std::mt19937_64& rng_;
  uint64_t next_gib_ = 1;
};

uint64_t Pow2(std::mt19937_64& rng, int max_log) {
  return uint64_t{1} << (rng() % (max_log + 1));
}

// Checks one answer against the model and records it.
void CheckPlaced(Model& m, const BufferOptions& o, const Placed& p) {
  const uint64_t pages = (o.bytes + kPage - 1) / kPage;
  ASSERT_EQ(p.bytes, pages * kPage);
  ASSERT_FALSE(p.runs.empty());
  if (o.max_segments != 0) {
    ASSERT_LE(p.runs.size(), o.max_segments);
  }
  uint64_t sum = 0;
  for (const Buffer::Run& r : p.runs) {
    const MappedRun* run = m.RunOf(r.iova, r.bytes);
    ASSERT_NE(run, nullptr) << "run at 0x" << std::hex << r.iova
                            << " is not inside one live lease run";
    ASSERT_EQ(static_cast<char*>(r.cpu), run->cpu + (r.iova - run->iova));
    if (o.alignment > kPage) {
      ASSERT_EQ(r.iova % o.alignment, 0u);
    }
    if (o.boundary != 0) {
      ASSERT_EQ(r.iova / o.boundary, (r.iova + r.bytes - 1) / o.boundary);
    }
    for (uint64_t pg = r.iova / kPage; pg < (r.iova + r.bytes) / kPage; ++pg)
      ASSERT_TRUE(m.used.insert(pg).second) << "page " << pg << " twice";
    std::memset(r.cpu, static_cast<int>(p.id), r.bytes);  // ASan: in bounds
    sum += r.bytes;
  }
  ASSERT_EQ(sum, p.bytes);
  m.buffers[p.id] = p;
}

void Release(Model& m, uint64_t id) {
  for (const Buffer::Run& r : m.buffers[id].runs) {
    for (uint64_t pg = r.iova / kPage; pg < (r.iova + r.bytes) / kPage; ++pg)
      m.used.erase(pg);
  }
  m.buffers.erase(id);
}

BufferOptions RandomRequest(std::mt19937_64& rng) {
  BufferOptions o;
  o.bytes = 1 + rng() % (24 * kPage);
  const int kind = static_cast<int>(rng() % 10);
  o.alignment = kind < 3 ? kPage * Pow2(rng, 5) : 0;
  const uint64_t pages = (o.bytes + kPage - 1) / kPage;
  if (kind == 3)
    o.boundary = kPage * (uint64_t{1} << (64 - __builtin_clzll(pages)));
  o.max_segments = rng() % 3 == 0 ? static_cast<uint32_t>(rng() % 4) : 1;
  return o;
}

void Step(ArenaCore& core, Model& m, std::mt19937_64& rng) {
  const int op = static_cast<int>(rng() % 100);
  if (op < 55) {
    const BufferOptions o = RandomRequest(rng);
    absl::StatusOr<Placed> p = core.Allocate(o);
    if (p.ok()) {
      CheckPlaced(m, o, *p);
      return;
    }
    ASSERT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted)
        << p.status();
    const uint64_t pages = (o.bytes + kPage - 1) / kPage;
    const uint64_t align = std::max<uint64_t>(o.alignment / kPage, 1);
    if (o.max_segments == 1) {
      ASSERT_FALSE(m.OneRunFits(pages, align, o.boundary / kPage))
          << "refused a one-run request that fits: " << p.status();
    } else if (o.max_segments == 0 && align == 1 && o.boundary == 0) {
      ASSERT_LT(m.FreePages(), pages) << "refused a simple request";
    }
  } else if (op < 95) {
    if (m.buffers.empty()) return;
    auto it = m.buffers.begin();
    std::advance(it, rng() % m.buffers.size());
    const uint64_t id = it->first;
    ASSERT_TRUE(core.Free(id));
    ASSERT_FALSE(core.Free(id)) << "freed twice";
    Release(m, id);
  } else if (op < 98 || m.regions.size() < 2) {
    ModelRegion r = m.NewRegion();
    absl::StatusOr<size_t> index = core.AddRegion(r.runs);
    ASSERT_TRUE(index.ok()) << index.status();
    ASSERT_EQ(*index, m.regions.size());
    m.regions.push_back(std::move(r));
  } else {
    const size_t index = rng() % m.regions.size();
    std::set<uint64_t> expect;
    if (m.regions[index].live) {
      for (const auto& [id, p] : m.buffers) {
        for (const Buffer::Run& r : p.runs)
          if (m.RegionOf(r.iova) == index) expect.insert(id);
      }
    }
    const std::vector<uint64_t> hit = core.RemoveRegion(index);
    ASSERT_EQ(std::set<uint64_t>(hit.begin(), hit.end()), expect);
    m.regions[index].live = false;
    for (uint64_t id : hit) {
      Release(m, id);
      ASSERT_TRUE(core.IsLost(id));
      ASSERT_FALSE(core.Free(id)) << "a lost buffer is only forgotten";
      ASSERT_FALSE(core.IsLost(id));
    }
  }
}

TEST(ArenaCorePropertyTest, MatchesTheNaiveModel) {
  std::mt19937_64 rng(26);
  uint64_t ops = 0, placed = 0, programs = 0;
  const uint64_t target = TargetOps();
  while (ops < target) {
    auto core = ArenaCore::Create(kPage, /*best_fit=*/programs % 2 == 0);
    ASSERT_TRUE(core.ok()) << core.status();
    Model m(&rng);
    for (int i = 0; i < 2000 && ops < target; ++i, ++ops) {
      const size_t before = m.buffers.size();
      ASSERT_NO_FATAL_FAILURE(Step(*core, m, rng));
      placed += m.buffers.size() > before;
      ASSERT_EQ(core->live_buffers(), m.buffers.size());
      ASSERT_EQ(core->used_bytes(), m.used.size() * kPage);
      if (i % 64 == 0) {
        ASSERT_TRUE(core->Verify().ok()) << core->Verify();
      }
    }
    ASSERT_TRUE(core->Verify().ok()) << core->Verify();
    ++programs;
  }
  // The programs placed buffers, refused some and lost some: not vacuous.
  EXPECT_GT(placed, ops / 10);
  RecordProperty("ops", static_cast<int>(ops));
}

TEST(ArenaCoreTest, RejectsRunsThatAreNotWholeMappedPages) {
  auto core = ArenaCore::Create(kPage, true);
  ASSERT_TRUE(core.ok());
  char mem[kPage];
  EXPECT_EQ(core->AddRegion({{kPage + 1, kPage, mem}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(core->AddRegion({{kPage, 100, mem}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(core->AddRegion({{kPage, kPage, nullptr}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(core->AddRegion({{kPage, kPage, mem}}).ok());
  EXPECT_EQ(core->AddRegion({{kPage, kPage, mem}}).status().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST(ArenaCoreTest, AlignmentAndBoundaryHoldInIovaSpaceNotInTheMapping) {
  auto core = ArenaCore::Create(kPage, true);
  ASSERT_TRUE(core.ok());
  // A run at an odd page: IOVA 0x10123b000; its mapping's alignment is
  // unrelated (a heap block).
  std::vector<char> mem(512 * kPage);
  ASSERT_TRUE(core->AddRegion({{0x10123b000, 512 * kPage, mem.data()}}).ok());
  BufferOptions o;
  o.bytes = 3 * kPage;
  o.alignment = 64 * kPage;  // 256 KiB
  auto p = core->Allocate(o);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->runs[0].iova % (64 * kPage), 0u);
  EXPECT_EQ(static_cast<char*>(p->runs[0].cpu),
            mem.data() + (p->runs[0].iova - 0x10123b000));
  o.alignment = 0;
  o.bytes = 8 * kPage;
  o.boundary = 8 * kPage;
  auto q = core->Allocate(o);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->runs[0].iova % (8 * kPage), 0u);
  // Never fits: larger than the region.
  o.boundary = 0;
  o.bytes = 600 * kPage;
  EXPECT_EQ(pglist::FailReasonOf(core->Allocate(o).status()),
            pglist::FailReason::kNeverFits);
}

}  // namespace
}  // namespace physpool::client_internal
