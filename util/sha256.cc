// SPDX-License-Identifier: Apache-2.0
#include "util/sha256.h"

#include <openssl/evp.h>

namespace physpool {

std::string Sha256Hex(absl::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  return out;
}

bool IsSha256Hex(absl::string_view s) {
  return s.size() == 64 &&
         s.find_first_not_of("0123456789abcdef") == absl::string_view::npos;
}

}  // namespace physpool
