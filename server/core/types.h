// SPDX-License-Identifier: Apache-2.0
// The daemon's value types, shared by its components: a lease as its
// tenant sees it, its runs, a process that holds an ended lease's view,
// a lease event, and an Allocate request's parameters. Plain data.
//
// State: none (value types). Thread safety: values; no shared state.
// I/O: none. REQUIRES: nothing.
#ifndef PHYSPOOL_SERVER_CORE_TYPES_H_
#define PHYSPOOL_SERVER_CORE_TYPES_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pglist/request.h"

namespace physpool::server {

// A run as a tenant sees it.
struct LeaseRun {
  uint64_t iova = 0;
  uint64_t bytes = 0;
  std::string backing_path;
  uint64_t backing_offset = 0;
  uint32_t segment_id = 0;
};

// A process that still reaches an ended lease's view (memory/holders.h).
struct Holder {
  pid_t pid = 0;  // 0: references the kernel counts that no scan named
  uid_t uid = 0;
  std::string command;       // /proc/<pid>/comm
  bool has_fd = false;       // holds a descriptor
  bool maps = false;         // maps it
  bool uninspected = false;  // may not be read: may hold it (fail closed)
  int64_t references = 0;    // pid 0: how many
};

struct LeaseInfo {
  std::string id;
  std::string tenant;
  std::vector<LeaseRun> runs;
  uint64_t bytes = 0;
  bool preemptible = false;
  absl::Time expires;
  absl::Duration ttl;
  std::string path;
  std::string label;
  std::string request_id;
  // SHA-256 (hex) of its access token ("" = none): that token's holder
  // may read it and map its view, nothing else (tenants.h, lease_scope).
  std::string access_sha256;
  // An ended lease whose memory is quarantined (memory/lease_views.h):
  // since when, and who still holds its view.
  struct Quarantine {
    absl::Time since;
    std::vector<Holder> holders;
  };
  std::optional<Quarantine> quarantine;
};

struct TenantUsage {
  uint64_t bytes = 0;
  uint32_t leases = 0;
};

struct LeaseEventInfo {
  enum class Kind {
    kExpiring = 1,
    kExpired = 2,
    kRevoked = 3,
    kPreempted = 4,
    kOverflow = 5,  // sent by the stream itself, never by the manager
  };
  Kind kind;
  std::string lease_id;
  std::string reason;
  absl::Time at;
  absl::Time deadline = absl::InfinitePast();  // kPreempted: stop DMA by then
};

struct AllocateParams {
  pglist::Request req;  // privileged is set from the tenant's role
  bool numa_strict = false;
  bool may_wait = false;
  bool may_reclaim = false;
  absl::Duration ttl = absl::ZeroDuration();  // zero: the default
  std::string label;
  std::string device;      // the device whose DMA limit clipped the window
  std::string request_id;  // "" = none
  // SHA-256 (hex) of the token that reaches this lease alone; "" = none.
  std::string access_sha256;
};

using AllocDone = std::function<void(absl::StatusOr<LeaseInfo>)>;

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_CORE_TYPES_H_
