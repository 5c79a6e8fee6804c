// SPDX-License-Identifier: Apache-2.0
#include "pglist/request.h"

#include "gtest/gtest.h"
#include "pglist/testing/status_matchers.h"

namespace physpool::pglist {
namespace {

using ::physpool::testing::StatusIs;
constexpr uint64_t kPs = 4096;

TEST(NormalizeTest, RoundsToPagesAndWindowInward) {
  Request r;
  r.bytes = 5000;
  r.low = 100;
  r.high = 10 * kPs + 7;
  ASSERT_OK_AND_ASSIGN(Constraints c, Normalize(r, kPs));
  EXPECT_EQ(c.pages, PageCount(2));
  EXPECT_EQ(c.low, Pfn(1));    // first whole page at or above 100
  EXPECT_EQ(c.high, Pfn(10));  // last whole page ends at or below high
  EXPECT_EQ(c.align, 1u);
  EXPECT_TRUE(c.Simple());
}

TEST(NormalizeTest, SmallAlignmentMeansPageAndUnboundedHigh) {
  Request r;
  r.bytes = 1;
  r.alignment = 512;
  ASSERT_OK_AND_ASSIGN(Constraints c, Normalize(r, kPs));
  EXPECT_EQ(c.align, 1u);
  EXPECT_EQ(c.high.value, uint64_t{1} << 52);  // 2^64 / 4096
  r.alignment = 1 << 21;
  r.max_segments = 1;
  ASSERT_OK_AND_ASSIGN(c, Normalize(r, kPs));
  EXPECT_EQ(c.align, 512u);
  EXPECT_FALSE(c.Simple());
}

TEST(NormalizeTest, RejectsMalformedRequests) {
  struct Case {
    const char* name;
    Request r;
  };
  auto req = [](uint64_t bytes) {
    Request r;
    r.bytes = bytes;
    return r;
  };
  Request align3 = req(kPs), bound3 = req(kPs), small_bound = req(3 * kPs),
          empty = req(kPs), inverted = req(kPs), narrow = req(4 * kPs),
          align_narrow = req(kPs), overflow = req(~uint64_t{0} - 10);
  align3.alignment = 3 * kPs;
  bound3.boundary = 3 * kPs;
  small_bound.boundary = 2 * kPs;  // below the rounded size
  empty.low = empty.high = 8 * kPs;
  inverted.low = 9 * kPs;
  inverted.high = 8 * kPs;
  narrow.low = kPs;
  narrow.high = 4 * kPs;  // holds 3 pages
  align_narrow.low = kPs;
  align_narrow.high = 1 << 20;
  align_narrow.alignment = 1 << 20;  // first aligned start is at high
  for (const Case& c :
       {Case{"zero", req(0)}, Case{"align3", align3}, Case{"bound3", bound3},
        Case{"small_bound", small_bound}, Case{"empty", empty},
        Case{"inverted", inverted}, Case{"narrow", narrow},
        Case{"align_narrow", align_narrow}, Case{"overflow", overflow}}) {
    EXPECT_THAT(Normalize(c.r, kPs),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << c.name;
  }
}

TEST(NormalizeTest, BoundaryEqualToSizeIsAllowed) {
  Request r;
  r.bytes = 3 * kPs;
  r.boundary = 4 * kPs;
  EXPECT_OK(Normalize(r, kPs));
  r.bytes = 4 * kPs;
  EXPECT_OK(Normalize(r, kPs));
}

TEST(ConstraintsTest, BoundaryAndAlignmentAreOnAbsolutePages) {
  Constraints c;
  c.pages = PageCount(4);
  c.align = 4;
  c.boundary = 8;
  c.low = Pfn(0);
  c.high = Pfn(100);
  EXPECT_TRUE(c.Admits(4, 4));
  EXPECT_FALSE(c.Admits(6, 4));         // unaligned
  EXPECT_FALSE(c.Admits(6, 4, false));  // crosses 8
  EXPECT_EQ(c.NextCell(6), 8u);
  EXPECT_EQ(c.AlignUp(5), 8u);
}

}  // namespace
}  // namespace physpool::pglist
