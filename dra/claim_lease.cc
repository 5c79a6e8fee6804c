// SPDX-License-Identifier: Apache-2.0
#include "dra/claim_lease.h"

#include <sys/random.h>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace physpool::dra {
namespace {
constexpr char kLabelPrefix[] = "dra-claim=";
}  // namespace

std::string ClaimLeaseLabel(const std::string& uid, const std::string& ns,
                            const std::string& name,
                            const std::string& request) {
  // physpoold keeps 256 bytes of label; the UID comes first.
  return absl::StrCat(kLabelPrefix, uid, " ", ns, "/", name, " ", request)
      .substr(0, 256);
}

std::string UidOfLabel(const std::string& label) {
  if (!absl::StartsWith(label, kLabelPrefix)) return "";
  const std::string rest = label.substr(sizeof(kLabelPrefix) - 1);
  return rest.substr(0, rest.find(' '));
}

std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  size_t got = 0;
  while (got < bytes) {
    const ssize_t n = getrandom(raw.data() + got, bytes - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
    // EINTR: again; getrandom never fails otherwise once the pool is up.
  }
  return absl::BytesToHexString(raw);
}

absl::Status FromGrpc(const grpc::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

}  // namespace physpool::dra
