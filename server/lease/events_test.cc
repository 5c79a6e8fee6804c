// SPDX-License-Identifier: Apache-2.0
// The EventBus: Watch sinks capped per tenant, events only to their
// tenant's streams, and streams closed (after the turn) when their tenant
// is removed or the daemon shuts down.
#include "server/lease/events.h"

#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pglist/testing/status_matchers.h"
#include "server/core/fake_clock.h"
#include "server/core/turn_testing.h"

namespace physpool::server {
namespace {

using ::physpool::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class EventsTest : public ::testing::Test {
 protected:
  EventsTest() : tt_(&clock_), bus_(2) {}

  // Subscribes stream `id` of `tenant`: its events go to received_[id],
  // its close to closed_[id].
  absl::Status Subscribe(uint64_t id, const std::string& tenant) {
    auto t = tt_.Begin();
    absl::Status s = bus_.Subscribe(
        *t, id, tenant,
        [this, id](const LeaseEventInfo& e) {
          received_[id].push_back(e.lease_id);
        },
        [this, id](const absl::Status& why) { closed_[id].push_back(why); });
    tt_.End(*t);
    return s;
  }
  void Emit(const std::string& tenant, const std::string& lease) {
    tt_.Locked([&](Turn& t) {
      bus_.Emit(t, tenant,
                {LeaseEventInfo::Kind::kExpired, lease, "ttl", t.now(),
                 absl::InfinitePast()});
    });
  }

  FakeClock clock_;
  TurnTesting tt_;
  EventBus bus_;
  std::map<uint64_t, std::vector<std::string>> received_;
  std::map<uint64_t, std::vector<absl::Status>> closed_;
};

TEST_F(EventsTest, ATenantBeyondItsStreamCapIsRefused) {
  EXPECT_TRUE(Subscribe(1, "alice").ok());
  EXPECT_TRUE(Subscribe(2, "alice").ok());
  EXPECT_THAT(Subscribe(3, "alice"),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("watch.max_streams_per_tenant")));
  // The cap is per tenant.
  EXPECT_TRUE(Subscribe(4, "bob").ok());
  EXPECT_EQ(bus_.size(), 3u);
  // The refused one gets nothing.
  Emit("alice", "L1");
  EXPECT_THAT(received_[3], IsEmpty());
  // A stream that goes makes room.
  tt_.Locked([&](Turn& t) { bus_.Unsubscribe(t, 1); });
  EXPECT_TRUE(Subscribe(3, "alice").ok());
}

TEST_F(EventsTest, EventsReachEveryStreamOfTheirTenantOnly) {
  ASSERT_TRUE(Subscribe(1, "alice").ok());
  ASSERT_TRUE(Subscribe(2, "bob").ok());
  ASSERT_TRUE(Subscribe(3, "alice").ok());
  Emit("alice", "L1");
  Emit("bob", "L2");
  Emit("carol", "L3");
  EXPECT_THAT(received_[1], ElementsAre("L1"));
  EXPECT_THAT(received_[3], ElementsAre("L1"));
  EXPECT_THAT(received_[2], ElementsAre("L2"));
}

TEST_F(EventsTest, AnUnsubscribedStreamGetsNothingAndIsNotClosed) {
  ASSERT_TRUE(Subscribe(1, "alice").ok());
  tt_.Locked([&](Turn& t) { bus_.Unsubscribe(t, 1); });
  Emit("alice", "L1");
  tt_.Locked([&](Turn& t) {
    bus_.EndWhere(
        t, [](const std::string&) { return true; },
        absl::UnavailableError("shutting down"));
  });
  EXPECT_THAT(received_[1], IsEmpty());
  EXPECT_THAT(closed_[1], IsEmpty());
  EXPECT_EQ(bus_.size(), 0u);
}

TEST_F(EventsTest, EndWhereClosesTheNamedTenantsStreamsAfterTheTurn) {
  ASSERT_TRUE(Subscribe(1, "alice").ok());
  ASSERT_TRUE(Subscribe(2, "bob").ok());
  ASSERT_TRUE(Subscribe(3, "alice").ok());
  auto t = tt_.Begin();
  // A reload that removes alice.
  bus_.EndWhere(
      *t, [](const std::string& n) { return n == "alice"; },
      absl::PermissionDeniedError("tenant removed"));
  EXPECT_THAT(closed_[1], IsEmpty()) << "closed under the lock";
  tt_.End(*t);
  EXPECT_THAT(closed_[1],
              ElementsAre(StatusIs(absl::StatusCode::kPermissionDenied)));
  EXPECT_THAT(closed_[3],
              ElementsAre(StatusIs(absl::StatusCode::kPermissionDenied)));
  EXPECT_THAT(closed_[2], IsEmpty());
  EXPECT_EQ(bus_.size(), 1u);
  Emit("alice", "L1");
  Emit("bob", "L2");
  EXPECT_THAT(received_[1], IsEmpty());
  EXPECT_THAT(received_[2], ElementsAre("L2"));
  // Ended streams no longer count against the cap.
  EXPECT_TRUE(Subscribe(4, "alice").ok());
  EXPECT_TRUE(Subscribe(5, "alice").ok());
}

TEST_F(EventsTest, ShutdownClosesEveryStreamOnce) {
  ASSERT_TRUE(Subscribe(1, "alice").ok());
  ASSERT_TRUE(Subscribe(2, "bob").ok());
  for (int i = 0; i < 2; ++i) {
    tt_.Locked([&](Turn& t) {
      bus_.EndWhere(
          t, [](const std::string&) { return true; },
          absl::UnavailableError("physpoold is shutting down"));
    });
  }
  EXPECT_THAT(closed_[1],
              ElementsAre(StatusIs(absl::StatusCode::kUnavailable)));
  EXPECT_THAT(closed_[2],
              ElementsAre(StatusIs(absl::StatusCode::kUnavailable)));
  EXPECT_EQ(bus_.size(), 0u);
}

TEST_F(EventsTest, AStreamWithoutACloseCallbackEndsQuietly) {
  tt_.Locked([&](Turn& t) {
    ASSERT_TRUE(bus_.Subscribe(
                        t, 9, "alice", [](const LeaseEventInfo&) {}, nullptr)
                    .ok());
  });
  tt_.Locked([&](Turn& t) {
    bus_.EndWhere(
        t, [](const std::string&) { return true; },
        absl::UnavailableError("x"));
  });
  EXPECT_EQ(bus_.size(), 0u);
}

}  // namespace
}  // namespace physpool::server
