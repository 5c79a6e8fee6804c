// SPDX-License-Identifier: Apache-2.0
// libFuzzer: arbitrary bytes as a physpoold config file. Any input is
// either a config or an INVALID_ARGUMENT naming file and line; never a crash.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "server/daemon/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto c = physpool::server::ParseConfig(text, "fuzz.yaml");
  if (!c.ok() && (c.status().code() != absl::StatusCode::kInvalidArgument ||
                  !absl::StartsWith(c.status().message(), "fuzz.yaml:"))) {
    std::fprintf(stderr, "unexpected error: %s\n",
                 c.status().ToString().c_str());
    std::abort();
  }
  return 0;
}
