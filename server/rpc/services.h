// SPDX-License-Identifier: Apache-2.0
// The gRPC services: physpool.v1.Pool (tenants, pool_service.h) and
// physpool.v1.Admin (admin_service.h), with who is calling
// (authenticator.h) and the conversions between the API and the daemon
// (convert.h).
//
// State: none. Thread safety: each header's. I/O: none here.
// REQUIRES: nothing beyond each header's.
#ifndef PHYSPOOL_SERVER_RPC_SERVICES_H_
#define PHYSPOOL_SERVER_RPC_SERVICES_H_

#include "server/rpc/admin_service.h"
#include "server/rpc/authenticator.h"
#include "server/rpc/convert.h"
#include "server/rpc/pool_service.h"

#endif  // PHYSPOOL_SERVER_RPC_SERVICES_H_
