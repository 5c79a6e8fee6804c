// SPDX-License-Identifier: Apache-2.0
#include "server/rpc/page_token.h"

#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/lease/tenants.h"

namespace physpool::server {
namespace {

std::string Check(absl::string_view list, absl::string_view filter,
                  absl::string_view position) {
  return Sha256Hex(
             absl::StrCat("physpool-page|", list, "|", filter, "|", position))
      .substr(0, 12);
}

}  // namespace

absl::StatusOr<size_t> PageSize(int32_t requested, size_t def, size_t max) {
  if (requested < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size ", requested, " is negative"));
  }
  if (requested == 0) return def;
  return std::min<size_t>(static_cast<size_t>(requested), max);
}

std::string EncodePageToken(absl::string_view list, absl::string_view filter,
                            absl::string_view position) {
  return absl::WebSafeBase64Escape(
      absl::StrCat(Check(list, filter, position), ":", position));
}

absl::StatusOr<std::string> DecodePageToken(absl::string_view token,
                                            absl::string_view list,
                                            absl::string_view filter) {
  std::string raw;
  const absl::Status bad = absl::InvalidArgumentError(
      absl::StrCat("page_token is not one this list gave out (", list,
                   "; the same filter is needed on every page)"));
  if (!absl::WebSafeBase64Unescape(token, &raw)) return bad;
  const size_t colon = raw.find(':');
  if (colon == std::string::npos) return bad;
  const std::string position = raw.substr(colon + 1);
  if (raw.substr(0, colon) != Check(list, filter, position)) return bad;
  return position;
}

}  // namespace physpool::server
