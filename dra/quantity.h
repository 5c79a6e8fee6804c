// SPDX-License-Identifier: Apache-2.0
// Kubernetes resource quantities ("1Gi", "512Mi", "1.5G", "1e9", "4096"),
// as in k8s.io/apimachinery/pkg/api/resource: a decimal number with an
// optional binary (Ki..Ei), decimal (n u m k M G T P E) or exponent (e3)
// suffix. Fractions of a unit round up, as Quantity.Value() does.
#ifndef PHYSPOOL_DRA_QUANTITY_H_
#define PHYSPOOL_DRA_QUANTITY_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace physpool::dra {

// The quantity as a whole number (bytes, for memory). INVALID_ARGUMENT for
// a malformed or negative quantity, or one above 2^63.
absl::StatusOr<uint64_t> ParseQuantity(absl::string_view q);

// A byte count as the API server writes it: "1Gi" when it is a whole number
// of Ki/Mi/Gi/Ti/Pi/Ei, else the plain integer.
std::string FormatQuantity(uint64_t bytes);

}  // namespace physpool::dra

#endif  // PHYSPOOL_DRA_QUANTITY_H_
