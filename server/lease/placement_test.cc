// SPDX-License-Identifier: Apache-2.0
// Placement (lease/placement.h): the quota before the pool, the preferred
// NUMA node then any unless strict, and a reclaim only for a caller that
// allows it when the pool has no space (not when the request is malformed
// or could never fit).
#include "server/lease/placement.h"

#include <map>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pglist/outcome.h"
#include "pglist/testing/status_matchers.h"
#include "server/lease/request_fingerprint.h"
#include "server/lease/testing/parts_fixture.h"

namespace physpool::server {
namespace {

using ::physpool::pglist::FailReason;
using ::physpool::pglist::FailReasonOf;
using ::physpool::testing::StatusIs;
using ::testing::HasSubstr;
using Verdict = Placement::Verdict;

constexpr uint64_t kPage = LeaseParts::kPage;
constexpr uint64_t kSeg = LeaseParts::kSegmentBytes;

class PlacementTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Two segments: NUMA node 0 (the lower IOVAs) and node 1.
    config_.segments = {{kSeg, 0, 0}, {kSeg, 0, 1}};
    h_ = std::make_unique<LeaseParts>(config_);
    ASSERT_OK(h_->Start());
  }

  // Serves `p` for `tenant` now, as admission would; the answer (if taken)
  // lands in `reply`.
  Placement::Outcome Serve(const std::string& tenant, AllocateParams p,
                           std::shared_ptr<Reply> reply) {
    Placement::Outcome o;
    p.req.run_cap = h_->options().max_runs_per_lease;
    h_->Run([&](Turn& t) {
      AllocDone done = Catch(reply);
      const absl::Time now = t.now();
      o = h_->parts().placement.Serve(t, h_->tenant(tenant), p,
                                      RequestFingerprint(p),
                                      h_->parts().admission.NewHandle(t),
                                      now + absl::Seconds(60), now, &done);
      taken_ = !done;
    });
    return o;
  }
  static AllocateParams On(int32_t numa, uint64_t bytes, bool strict) {
    AllocateParams p = LeaseParts::Params(bytes);
    p.req.numa = numa;
    p.numa_strict = strict;
    return p;
  }
  // Fills node `numa` with one lease of `tenant`.
  LeaseInfo Fill(const std::string& tenant, int32_t numa, bool preemptible) {
    AllocateParams p = On(numa, kSeg, true);
    p.req.preemptible = preemptible;
    absl::StatusOr<LeaseInfo> l = h_->Allocate(tenant, p);
    EXPECT_OK(l.status());
    return l.value_or(LeaseInfo{});
  }
  // The NUMA node of the segment a lease's first run is in.
  int32_t NodeOf(const LeaseInfo& l) {
    for (const pglist::SegmentInfo& s : h_->parts().pool.Segments()) {
      if (s.id == l.runs.at(0).segment_id) return s.spec.numa;
    }
    return -1;
  }

  LeaseParts::Config config_;
  std::unique_ptr<LeaseParts> h_;
  bool taken_ = false;  // Serve moved the answer on
};

TEST_F(PlacementTest, TheQuotaIsCheckedBeforeThePool) {
  const LeaseInfo victim = Fill("b", 0, /*preemptible=*/true);
  Fill("b", 1, /*preemptible=*/true);
  ASSERT_OK(h_->tenants().SetLimits("a", {16 * kPage, 0}).status());
  AllocateParams p = LeaseParts::Params(32 * kPage);
  p.may_reclaim = true;  // the pool would reclaim for it
  auto r = std::make_shared<Reply>();
  const Placement::Outcome o = Serve("a", p, r);
  EXPECT_EQ(o.verdict, Verdict::kRefused);
  EXPECT_THAT(o.why, StatusIs(absl::StatusCode::kResourceExhausted,
                              HasSubstr("quota")));
  EXPECT_EQ(FailReasonOf(o.why), FailReason::kNeverFits);
  EXPECT_FALSE(taken_);
  EXPECT_FALSE(r->answered());
  EXPECT_EQ(h_->parts().reclaims.size(), 0u);
  EXPECT_NE(h_->parts().lessor.Find(victim.id), nullptr);
  // The core was not asked: no failed allocation was timed.
  EXPECT_EQ(h_->parts().alloc_seconds.by_path.count("failed"), 0u);
}

TEST_F(PlacementTest, TheQuotaCountsWholePages) {
  ASSERT_OK(h_->tenants().SetLimits("a", {2 * kPage, 0}).status());
  auto r = std::make_shared<Reply>();
  EXPECT_EQ(Serve("a", LeaseParts::Params(2 * kPage + 1), r).verdict,
            Verdict::kRefused);  // three pages
  EXPECT_EQ(Serve("a", LeaseParts::Params(kPage + 1), r).verdict,
            Verdict::kGranted);  // two
  EXPECT_TRUE(taken_);
  ASSERT_OK(r->value.status());
  EXPECT_EQ(r->value->bytes, 2 * kPage);
}

TEST_F(PlacementTest, APreferredNodeIsTriedFirst) {
  auto r = std::make_shared<Reply>();
  EXPECT_EQ(Serve("a", On(1, kPage, false), r).verdict, Verdict::kGranted);
  ASSERT_OK(r->value.status());
  EXPECT_EQ(NodeOf(*r->value), 1);
}

TEST_F(PlacementTest, AFullPreferredNodeFallsBackToAnyUnlessStrict) {
  Fill("b", 0, /*preemptible=*/false);
  auto strict = std::make_shared<Reply>();
  const Placement::Outcome o = Serve("a", On(0, kPage, true), strict);
  EXPECT_EQ(o.verdict, Verdict::kRefused);
  EXPECT_THAT(o.why, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(FailReasonOf(o.why), FailReason::kNoSpace);
  EXPECT_FALSE(taken_);
  EXPECT_TRUE(h_->parts().placement.numa_fallbacks().empty());
  auto loose = std::make_shared<Reply>();
  EXPECT_EQ(Serve("a", On(0, kPage, false), loose).verdict, Verdict::kGranted);
  EXPECT_TRUE(taken_);
  ASSERT_OK(loose->value.status());
  EXPECT_EQ(NodeOf(*loose->value), 1);
  // It says so: in the lease's path and in the counter, by preferred node.
  EXPECT_EQ(loose->value->path, "simple+numa-fallback");
  EXPECT_EQ(h_->parts().placement.numa_fallbacks(),
            (std::map<int32_t, uint64_t>{{0, 1}}));
}

TEST_F(PlacementTest, ALeaseOnItsPreferredNodeIsNoFallback) {
  auto r = std::make_shared<Reply>();
  EXPECT_EQ(Serve("a", On(1, kPage, false), r).verdict, Verdict::kGranted);
  ASSERT_OK(r->value.status());
  EXPECT_EQ(r->value->path, "simple");
  // Nor is a request without a preferred node, wherever it lands.
  EXPECT_EQ(Serve("a", LeaseParts::Params(kPage), r).verdict,
            Verdict::kGranted);
  EXPECT_EQ(r->value->path, "simple");
  EXPECT_TRUE(h_->parts().placement.numa_fallbacks().empty());
}

TEST_F(PlacementTest, NoSpaceIsRefusedWithoutReclaimUnlessTheCallerMayReclaim) {
  const LeaseInfo v0 = Fill("b", 0, /*preemptible=*/true);
  const LeaseInfo v1 = Fill("b", 1, /*preemptible=*/true);
  auto r = std::make_shared<Reply>();
  const Placement::Outcome o = Serve("a", LeaseParts::Params(kPage), r);
  EXPECT_EQ(o.verdict, Verdict::kRefused);
  EXPECT_EQ(FailReasonOf(o.why), FailReason::kNoSpace);
  EXPECT_EQ(h_->parts().reclaims.size(), 0u);
  EXPECT_NE(h_->parts().lessor.Find(v0.id), nullptr);
  EXPECT_NE(h_->parts().lessor.Find(v1.id), nullptr);

  AllocateParams p = LeaseParts::Params(kPage);
  p.may_reclaim = true;
  EXPECT_EQ(Serve("a", p, r).verdict, Verdict::kReclaiming);
  EXPECT_TRUE(taken_);
  EXPECT_FALSE(r->answered());  // once the reclaim ends
  EXPECT_EQ(h_->parts().reclaims.size(), 1u);
  // Exactly one of the two was preempted.
  const bool v0_live = h_->parts().lessor.Find(v0.id) != nullptr;
  const bool v1_live = h_->parts().lessor.Find(v1.id) != nullptr;
  EXPECT_NE(v0_live, v1_live);
  const Lessor::Ended* gone =
      h_->parts().lessor.FindEnded(v0_live ? v1.id : v0.id);
  ASSERT_NE(gone, nullptr);
  EXPECT_EQ(gone->how, "preempted");
}

TEST_F(PlacementTest, AMalformedRequestIsNeverAReclaim) {
  const LeaseInfo v = Fill("b", 0, /*preemptible=*/true);
  Fill("b", 1, /*preemptible=*/true);
  AllocateParams p = LeaseParts::Params(kPage);
  p.req.alignment = 3 * kPage;  // not a power of two
  p.may_reclaim = true;
  auto r = std::make_shared<Reply>();
  const Placement::Outcome o = Serve("a", p, r);
  EXPECT_EQ(o.verdict, Verdict::kRefused);
  EXPECT_THAT(o.why, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(h_->parts().reclaims.size(), 0u);
  EXPECT_NE(h_->parts().lessor.Find(v.id), nullptr);
}

TEST_F(PlacementTest, ARequestThatNeverFitsIsNeverAReclaim) {
  const LeaseInfo v = Fill("b", 0, /*preemptible=*/true);
  Fill("b", 1, /*preemptible=*/true);
  AllocateParams p = LeaseParts::Params(2 * kSeg);
  p.req.max_segments = 1;  // one run: no segment has that much
  p.may_reclaim = true;
  auto r = std::make_shared<Reply>();
  const Placement::Outcome o = Serve("a", p, r);
  EXPECT_EQ(o.verdict, Verdict::kRefused);
  EXPECT_EQ(FailReasonOf(o.why), FailReason::kNeverFits);
  EXPECT_EQ(h_->parts().reclaims.size(), 0u);
  EXPECT_NE(h_->parts().lessor.Find(v.id), nullptr);
}

TEST_F(PlacementTest, AStrictRequestReclaimsOnlyOnItsNode) {
  Fill("b", 0, /*preemptible=*/false);
  const LeaseInfo other_node = Fill("b", 1, /*preemptible=*/true);
  AllocateParams p = On(0, kPage, true);
  p.may_reclaim = true;
  auto r = std::make_shared<Reply>();
  const Placement::Outcome o = Serve("a", p, r);
  EXPECT_EQ(o.verdict, Verdict::kRefused);
  EXPECT_EQ(FailReasonOf(o.why), FailReason::kNoReclaim);
  EXPECT_NE(h_->parts().lessor.Find(other_node.id), nullptr);
  // Not strict, the other node's preemptible lease is reclaimed for it.
  p.numa_strict = false;
  EXPECT_EQ(Serve("a", p, r).verdict, Verdict::kReclaiming);
  EXPECT_EQ(h_->parts().lessor.Find(other_node.id), nullptr);
  ASSERT_EQ(h_->parts().reclaims.size(), 1u);
  h_->parts().reclaims.ForEach([](PendingReclaim& pr) {
    EXPECT_EQ(pr.params.req.numa, -1);  // planned on any node
  });
}

}  // namespace
}  // namespace physpool::server
