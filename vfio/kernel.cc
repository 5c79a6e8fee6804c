#include "vfio/kernel.h"

#include "absl/strings/str_cat.h"

namespace physpool::vfio {

std::string Hex(uint64_t v) { return absl::StrCat("0x", absl::Hex(v)); }

}  // namespace physpool::vfio
