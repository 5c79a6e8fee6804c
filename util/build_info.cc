// SPDX-License-Identifier: Apache-2.0
#include "util/build_info.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace physpool {

// Defined in the source the build writes (cmake/BuildInfo.cmake), rewritten
// only when the revision or the date changes.
extern const char kPhysPoolBuildRevision[];
extern const char kPhysPoolBuildDate[];

absl::string_view BuildVersion() { return PHYSPOOL_VERSION; }

absl::string_view BuildRevision() { return kPhysPoolBuildRevision; }

absl::string_view BuildDate() { return kPhysPoolBuildDate; }

std::string VersionLine(absl::string_view program) {
  return absl::StrCat(program, " ", BuildVersion(), " (revision ",
                      BuildRevision(), ", built ", BuildDate(), ")");
}

bool WantsVersion(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) return false;
    if (std::strcmp(argv[i], "--version") == 0) return true;
  }
  return false;
}

}  // namespace physpool
