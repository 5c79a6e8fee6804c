// SPDX-License-Identifier: Apache-2.0
// Seeded random operation programs replayed on Pool and on the naive
// reference model, compared after every operation, under both placements
// (next fit and best fit); every answer is also checked by brute force
// (order_check.h): it reaches freelist k only when no answer in as many runs
// existed below k, a single run lands in the first segment in allocation
// order (freelists in order, then the strategy's order) that holds a
// feasible window, and a request fails for want of space only when no
// answer existed. PHYSPOOL_PROPERTY_OPS sets the total
// number of operations (default 1,000,000).
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "pglist/testing/program.h"

namespace physpool::pglist::testing {
namespace {

uint64_t TargetOps() {
  const char* env = std::getenv("PHYSPOOL_PROPERTY_OPS");
  return env != nullptr ? std::strtoull(env, nullptr, 10) : 1000000;
}

TEST(PoolPropertyTest, MatchesTheReferenceModel) {
  const uint64_t target = TargetOps();
  std::mt19937_64 rng(0x9e3779b97f4a7c15);
  RunTotals totals;
  int programs = 0;
  while (totals.ops < target) {
    std::vector<uint8_t> bytes(2000 + rng() % 20000);
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    const Program program = DecodeProgram(bytes);
    const absl::Status s = RunAgainstModel(program, &totals);
    ASSERT_TRUE(s.ok()) << "program " << programs << ": " << s;
    ++programs;
  }
  std::printf("%llu operations in %d programs matched the model\n",
              static_cast<unsigned long long>(totals.ops), programs);
  // The programs must reach every path and every way to fail, or the
  // comparison proves little.
  const PoolStats& st = totals.stats;
  for (Path p :
       {Path::kSimple, Path::kContig, Path::kMulti, Path::kAggressive}) {
    const PathCounters& c = st.at(p);
    std::printf("  %-10s attempts %8llu successes %8llu\n",
                std::string(PathName(p)).c_str(),
                static_cast<unsigned long long>(c.attempts),
                static_cast<unsigned long long>(c.successes));
    EXPECT_GT(c.successes, 0u) << PathName(p);
  }
  auto failures = [&](FailReason r) {
    uint64_t n = 0;
    for (const auto& c : st.paths) n += c.failures[static_cast<int>(r)];
    return n;
  };
  for (FailReason r :
       {FailReason::kInvalid, FailReason::kReserve, FailReason::kNoSpace,
        FailReason::kNeverFits, FailReason::kNoReclaim}) {
    std::printf("  failures %-10s %8llu\n",
                std::string(FailReasonName(r)).c_str(),
                static_cast<unsigned long long>(failures(r)));
    EXPECT_GT(failures(r), 0u) << FailReasonName(r);
  }
  std::printf(
      "  contig answers: nextfit %llu bestfit %llu, %llu of them "
      "past the first segment in order\n",
      static_cast<unsigned long long>(totals.contig[0]),
      static_cast<unsigned long long>(totals.contig[1]),
      static_cast<unsigned long long>(totals.contig_past_first_segment));
  EXPECT_GT(totals.contig[0], 0u);
  EXPECT_GT(totals.contig[1], 0u);
  EXPECT_GT(totals.contig_past_first_segment, 0u);
  std::printf(
      "  multi answers: %llu across freelists, %llu below a freelist that "
      "held one run\n",
      static_cast<unsigned long long>(totals.multi_mixed),
      static_cast<unsigned long long>(totals.multi_below_one_run));
  EXPECT_GT(totals.multi_mixed, 0u);
  EXPECT_GT(totals.multi_below_one_run, 0u);
  EXPECT_GT(st.fallback(Path::kContig, Path::kMulti), 0u);
  EXPECT_GT(st.fallback(Path::kContig, Path::kAggressive), 0u);
  EXPECT_GT(st.fallback(Path::kSimple, Path::kAggressive), 0u);
  EXPECT_GE(totals.ops, target);
}

}  // namespace
}  // namespace physpool::pglist::testing
