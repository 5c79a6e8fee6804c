// SPDX-License-Identifier: Apache-2.0
// Watch streams' lease events (docs/api.md, "Watch"): each tenant's sinks,
// capped per tenant, fed under the pool's lock, ended at shutdown or when a
// reload removes their tenant.
//
// State: the sinks, by subscription id.
// Thread safety: not thread-safe; every method takes the Turn that proves
// the pool's lock. Sinks run in the turn and must not block or call back;
// close callbacks run after it (Turn::Later).
// I/O: none of its own (a sink's runs under the lock: it must not block).
// REQUIRES: nothing.
#ifndef PHYSPOOL_SERVER_LEASE_EVENTS_H_
#define PHYSPOOL_SERVER_LEASE_EVENTS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "server/core/turn.h"
#include "server/core/types.h"

namespace physpool::server {

class EventBus {
 public:
  using EventSink = std::function<void(const LeaseEventInfo&)>;
  using CloseSink = std::function<void(const absl::Status&)>;

  explicit EventBus(uint32_t max_per_tenant)
      : max_per_tenant_(max_per_tenant) {}

  // RESOURCE_EXHAUSTED beyond the per-tenant cap; the id is `id`.
  absl::Status Subscribe(Turn& t, uint64_t id, const std::string& tenant,
                         EventSink sink, CloseSink close);
  void Unsubscribe(Turn& t, uint64_t id);
  void Emit(Turn& t, const std::string& tenant, const LeaseEventInfo& e);
  // Ends the streams of the tenants `end` names (all: shutdown), each
  // answered `why` after the turn. How many had a close to answer.
  size_t EndWhere(Turn& t, const std::function<bool(const std::string&)>& end,
                  const absl::Status& why);
  size_t size() const { return sinks_.size(); }

 private:
  struct Sink {
    std::string tenant;
    EventSink sink;
    CloseSink close;
  };
  const uint32_t max_per_tenant_;
  std::map<uint64_t, Sink> sinks_;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_LEASE_EVENTS_H_
