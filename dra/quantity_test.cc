// SPDX-License-Identifier: Apache-2.0
#include "dra/quantity.h"

#include <gtest/gtest.h>

namespace physpool::dra {
namespace {

TEST(Quantity, ParsesTheApiServersForms) {
  EXPECT_EQ(*ParseQuantity("4096"), 4096u);
  EXPECT_EQ(*ParseQuantity("1Ki"), 1024u);
  EXPECT_EQ(*ParseQuantity("1Gi"), 1073741824u);
  EXPECT_EQ(*ParseQuantity("1.5Gi"), 1610612736u);
  EXPECT_EQ(*ParseQuantity("2M"), 2000000u);
  EXPECT_EQ(*ParseQuantity("1e9"), 1000000000u);
  EXPECT_EQ(*ParseQuantity("1E3"), 1000u);
  EXPECT_EQ(*ParseQuantity("+5k"), 5000u);
  EXPECT_EQ(*ParseQuantity("1500m"), 2u);  // 1.5 rounds up
  EXPECT_EQ(*ParseQuantity("0"), 0u);
  EXPECT_EQ(*ParseQuantity("8Ei"), uint64_t{1} << 63);
}

TEST(Quantity, RefusesWhatIsNotAQuantity) {
  for (const char* q : {"", "Gi", "-1Gi", "1GB", "1 Gi", "1e", "1e+", "9Ei",
                        "1..0", "0x10", "1gi"}) {
    EXPECT_FALSE(ParseQuantity(q).ok()) << q;
  }
}

TEST(Quantity, FormatsWholeBinaryUnits) {
  EXPECT_EQ(FormatQuantity(1073741824), "1Gi");
  EXPECT_EQ(FormatQuantity(3 * 1024 * 1024), "3Mi");
  EXPECT_EQ(FormatQuantity(4096), "4Ki");
  EXPECT_EQ(FormatQuantity(1000), "1000");
  EXPECT_EQ(FormatQuantity(0), "0");
  for (uint64_t b : {uint64_t{1}, uint64_t{4096}, uint64_t{12345678},
                     uint64_t{1} << 40, (uint64_t{1} << 40) + 4096}) {
    EXPECT_EQ(*ParseQuantity(FormatQuantity(b)), b);
  }
}

}  // namespace
}  // namespace physpool::dra
