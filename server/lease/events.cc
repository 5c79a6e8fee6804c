// SPDX-License-Identifier: Apache-2.0
#include "server/lease/events.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace physpool::server {

absl::Status EventBus::Subscribe(Turn&, uint64_t id, const std::string& tenant,
                                 EventSink sink, CloseSink close) {
  uint32_t streams = 0;
  for (const auto& [i, s] : sinks_) streams += s.tenant == tenant;
  if (streams >= max_per_tenant_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("watch.max_streams_per_tenant: tenant \"", tenant,
                     "\" already has ", streams, " Watch streams"));
  }
  sinks_[id] = {tenant, std::move(sink), std::move(close)};
  return absl::OkStatus();
}

void EventBus::Unsubscribe(Turn&, uint64_t id) { sinks_.erase(id); }

void EventBus::Emit(Turn&, const std::string& tenant, const LeaseEventInfo& e) {
  for (auto& [id, sink] : sinks_) {
    if (sink.tenant == tenant) sink.sink(e);
  }
}

size_t EventBus::EndWhere(Turn& t,
                          const std::function<bool(const std::string&)>& end,
                          const absl::Status& why) {
  size_t closed = 0;
  for (auto it = sinks_.begin(); it != sinks_.end();) {
    if (!end(it->second.tenant)) {
      ++it;
      continue;
    }
    if (it->second.close) {
      t.Later([close = std::move(it->second.close), why] { close(why); });
      ++closed;
    }
    it = sinks_.erase(it);
  }
  return closed;
}

}  // namespace physpool::server
