// SPDX-License-Identifier: Apache-2.0
#include "server/lease/parts.h"

#include <utility>

namespace physpool::server {
namespace {

// Ended leases and failed request ids remembered.
constexpr size_t kEndedMemory = 16384;

}  // namespace

Parts::Parts(const ManagerOptions& o, pglist::Pool core,
             vfio::MemorySource* source, TenantRegistry* tenants,
             LeaseStore* store, AccessTokens* access, Coordinator* coordinator)
    : pool(std::move(core)),
      lessor(o.expiring_warning, kEndedMemory, access),
      waiters(o.starvation),
      scrubber(o.scrub_retry),
      wait_seconds(SecondsBuckets()),
      committer(store),
      durable(&committer, coordinator, o.store_retry),
      segments(&pool, source, &committer, &durable, coordinator),
      devices(&pool, source, &segments),
      recycler(&pool, source, &views, &scrubber, &devices, &durable),
      quarantine({o.per_lease_views, o.quarantine_scan, o.trusted_holders},
                 &pool, source, &views, &segments, coordinator),
      events(o.max_watch_streams_per_tenant),
      quota(&lessor, &views, &reclaims, tenants),
      request_ids(&lessor),
      granter({&o, &pool, &lessor, &segments, &devices, &recycler, &committer,
               &durable, coordinator}),
      ender({&o, &pool, &lessor, &views, &segments, &devices, &recycler,
             &quarantine, &events, &committer, &durable, coordinator}),
      reclaim({&o, &pool, &lessor, &reclaims, &views, &granter, &ender,
               &recycler, &devices, &quota, &request_ids, &committer, &durable,
               coordinator, &wait_seconds, &alloc_seconds}),
      placement(&pool, &quota, &granter, &reclaim, &alloc_seconds),
      waiting(&o, &pool, &waiters, &reclaims, &placement, &request_ids,
              &wait_seconds),
      admission({&o, &lessor, &waiters, &reclaims, &granter, &placement,
                 &waiting, &request_ids}),
      lookups(&lessor, &views, &quarantine) {}

}  // namespace physpool::server
