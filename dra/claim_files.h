// SPDX-License-Identifier: Apache-2.0
// A prepared claim's files on the node: its access token
// (<plugin_dir>/claims/<uid>/token, 0444, in a directory mounted into the
// claim's containers only) and its CDI spec (<cdi_dir>/physpool-<uid>.json:
// the environment naming the leases, and read-only mounts of physpoold's
// socket directory and of the claim's directory).
//
// State: none. Thread safety: safe for different claims; the driver's
// lock serialises one claim's. I/O: writes atomically (temporary, fsync,
// rename) and removes those files.
#ifndef PHYSPOOL_DRA_CLAIM_FILES_H_
#define PHYSPOOL_DRA_CLAIM_FILES_H_

#include <string>

#include "absl/status/status.h"
#include "dra/claim_state.h"
#include "dra/driver_options.h"

namespace physpool::dra {

// The CDI kind of the driver's claims ("<driver>/claim").
std::string CdiKind(const DriverOptions& o);

absl::Status WriteClaimFiles(const DriverOptions& o, const ClaimRecord& r);
// Gone already is fine.
void RemoveClaimFiles(const DriverOptions& o, const std::string& uid);

}  // namespace physpool::dra

#endif  // PHYSPOOL_DRA_CLAIM_FILES_H_
