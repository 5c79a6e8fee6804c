// SPDX-License-Identifier: Apache-2.0
// The daemon's parts: the shelves, then the flows over them, wired in the
// order they are built (each flow gets the parts below it). The
// coordinator (PoolManager) owns one and is its Coordinator; the flows'
// unit tests build one over a TurnTesting (core/turn_testing.h).
//
// State: every component's.
// Thread safety: not thread-safe; everything in it is used in a Turn
// (under the coordinator's lock), except what each component's header
// names: the Committer and the access tokens (locks of their own),
// Recycler::Work and Quarantine::Gather (no lock), DeviceMap::Map and
// UnmapNow (the committing thread).
// I/O: none here; the Committer it builds starts its thread (which writes
// `store`), and each component's header names its own.
// REQUIRES: `o`, `source`, `tenants`, `access`, `coordinator` and `store`
// (may be null: nothing persists) outlive it.
#ifndef PHYSPOOL_SERVER_LEASE_PARTS_H_
#define PHYSPOOL_SERVER_LEASE_PARTS_H_

#include "pglist/pool.h"
#include "server/core/histogram.h"
#include "server/core/options.h"
#include "server/core/turn.h"
#include "server/lease/access_tokens.h"
#include "server/lease/admission.h"
#include "server/lease/end.h"
#include "server/lease/events.h"
#include "server/lease/grant.h"
#include "server/lease/lessor.h"
#include "server/lease/lookups.h"
#include "server/lease/placement.h"
#include "server/lease/quota.h"
#include "server/lease/reclaim.h"
#include "server/lease/reclaimer.h"
#include "server/lease/request_ids.h"
#include "server/lease/tenants.h"
#include "server/lease/wait_queue.h"
#include "server/lease/waiting.h"
#include "server/memory/device_map.h"
#include "server/memory/lease_views.h"
#include "server/memory/quarantine.h"
#include "server/memory/recycle.h"
#include "server/memory/scrubber.h"
#include "server/memory/segments.h"
#include "server/store/committer.h"
#include "server/store/durable.h"
#include "server/store/lease_store.h"
#include "vfio/memory_source.h"

namespace physpool::server {

struct Parts {
  Parts(const ManagerOptions& o, pglist::Pool core, vfio::MemorySource* source,
        TenantRegistry* tenants, LeaseStore* store, AccessTokens* access,
        Coordinator* coordinator);

  // Shelves: they answer, and never call a flow.
  pglist::Pool pool;
  Lessor lessor;
  WaitQueue waiters;
  Reclaimer reclaims;
  Scrubber scrubber;
  LeaseViews views;
  Histogram wait_seconds;  // finished waits
  PathTimes alloc_seconds;
  Committer committer;
  // Flows, bottom up (memory never calls a lease flow).
  DurableLog durable;
  Segments segments;
  DeviceMap devices;
  Recycler recycler;
  Quarantine quarantine;
  EventBus events;
  Quota quota;
  RequestIds request_ids;
  Granter granter;
  Ender ender;
  Reclaim reclaim;
  Placement placement;
  Waiting waiting;
  Admission admission;
  Lookups lookups;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_LEASE_PARTS_H_
