// SPDX-License-Identifier: Apache-2.0
// What was built: the project's version (CMakeLists.txt's project()), the
// git revision and the date of the build. `--version` of every binary and
// the daemon's physpool_build_info gauge (docs/operations.md, "Versions").
#ifndef PHYSPOOL_UTIL_BUILD_INFO_H_
#define PHYSPOOL_UTIL_BUILD_INFO_H_

#include <string>

#include "absl/strings/string_view.h"

namespace physpool {

// "0.1.0".
absl::string_view BuildVersion();

// The short git revision of the source tree when it was built ("5e5a723"),
// or "unknown" outside a git checkout (a tarball, the container build) unless
// -DPHYSPOOL_REVISION= gave one.
absl::string_view BuildRevision();

// The day of the build, UTC ("2026-12-06"; SOURCE_DATE_EPOCH if set).
absl::string_view BuildDate();

// "<program> 0.1.0 (revision 5e5a723, built 2026-12-06)".
std::string VersionLine(absl::string_view program);

// True if an argument before a "--" is "--version": the binary then prints
// VersionLine and exits 0 before reading anything else.
bool WantsVersion(int argc, char** argv);

}  // namespace physpool

#endif  // PHYSPOOL_UTIL_BUILD_INFO_H_
