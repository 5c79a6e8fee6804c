// SPDX-License-Identifier: Apache-2.0
#include "dra/quantity.h"

#include <cctype>

#include "absl/strings/str_cat.h"

namespace physpool::dra {

absl::StatusOr<uint64_t> ParseQuantity(absl::string_view q) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("quantity \"", q, "\": ", why));
  };
  size_t i = 0;
  if (i < q.size() && (q[i] == '+' || q[i] == '-')) {
    if (q[i] == '-') return bad("negative");
    ++i;
  }
  unsigned __int128 mantissa = 0;
  int frac_digits = 0, digits = 0;
  bool point = false;
  const unsigned __int128 kCap = static_cast<unsigned __int128>(1) << 100;
  for (; i < q.size(); ++i) {
    const char c = q[i];
    if (c == '.' && !point) {
      point = true;
      continue;
    }
    if (!std::isdigit(static_cast<unsigned char>(c))) break;
    ++digits;
    if (mantissa > kCap) return bad("too large");
    mantissa = mantissa * 10 + static_cast<unsigned>(c - '0');
    if (point) ++frac_digits;
  }
  if (digits == 0) return bad("no digits");
  const absl::string_view suffix = q.substr(i);
  // value = mantissa * 2^bin * 10^dec / 10^frac_digits
  int bin = 0, dec = 0;
  static const struct {
    const char* s;
    int bin, dec;
  } kSuffixes[] = {{"", 0, 0},    {"Ki", 10, 0}, {"Mi", 20, 0}, {"Gi", 30, 0},
                   {"Ti", 40, 0}, {"Pi", 50, 0}, {"Ei", 60, 0}, {"n", 0, -9},
                   {"u", 0, -6},  {"m", 0, -3},  {"k", 0, 3},   {"M", 0, 6},
                   {"G", 0, 9},   {"T", 0, 12},  {"P", 0, 15},  {"E", 0, 18}};
  bool known = false;
  for (const auto& s : kSuffixes) {
    if (suffix == s.s) {
      bin = s.bin;
      dec = s.dec;
      known = true;
    }
  }
  if (!known && suffix.size() >= 2 && (suffix[0] == 'e' || suffix[0] == 'E')) {
    int e = 0;
    size_t j = 1;
    bool neg = false;
    if (suffix[j] == '+' || suffix[j] == '-') neg = suffix[j++] == '-';
    if (j == suffix.size()) return bad("exponent without digits");
    for (; j < suffix.size(); ++j) {
      if (!std::isdigit(static_cast<unsigned char>(suffix[j])) || e > 100)
        return bad("bad exponent");
      e = e * 10 + (suffix[j] - '0');
    }
    dec = neg ? -e : e;
    known = true;
  }
  if (!known) return bad(absl::StrCat("unknown suffix \"", suffix, "\""));
  dec -= frac_digits;
  unsigned __int128 v = mantissa;
  const unsigned __int128 kMax = static_cast<unsigned __int128>(1) << 63;
  for (; bin > 0; --bin) {
    v <<= 1;
    if (v > kMax) return bad("above 2^63");
  }
  for (; dec > 0; --dec) {
    v *= 10;
    if (v > kMax) return bad("above 2^63");
  }
  for (; dec < 0; ++dec) v = (v + 9) / 10;  // round up
  if (v > kMax) return bad("above 2^63");
  return static_cast<uint64_t>(v);
}

std::string FormatQuantity(uint64_t bytes) {
  static const char* kUnits[] = {"Ei", "Pi", "Ti", "Gi", "Mi", "Ki"};
  for (int i = 0; i < 6; ++i) {
    const int shift = 60 - 10 * i;
    const uint64_t unit = uint64_t{1} << shift;
    if (bytes != 0 && bytes % unit == 0)
      return absl::StrCat(bytes >> shift, kUnits[i]);
  }
  return absl::StrCat(bytes);
}

}  // namespace physpool::dra
