// SPDX-License-Identifier: Apache-2.0
// What the C API's files share (client/c_api.cc, client/c_api_arena.cc):
// the per-thread last error, the exception guard and the conversion of the
// allocation options. Not installed.
#ifndef PHYSPOOL_CLIENT_C_API_UTIL_H_
#define PHYSPOOL_CLIENT_C_API_UTIL_H_

#include <exception>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "physpool/client.h"
#include "physpool/physpool.h"

struct physpool_client {
  std::unique_ptr<physpool::Client> client;
};
struct physpool_region {
  std::unique_ptr<physpool::Region> region;
};

namespace physpool::c_api {

inline constexpr int kInvalidArgument = 3;
inline constexpr int kInternal = 13;

// physpool_last_error's text, per thread (defined in c_api.cc).
extern thread_local std::string last_error;

inline int Fail(const absl::Status& s) {
  last_error = std::string(s.message());
  return static_cast<int>(s.code());
}

// INVALID_ARGUMENT naming the NULL argument of `function`.
inline int NullArgument(const char* function, const char* argument) {
  last_error = absl::StrCat(function, ": ", argument, " is NULL");
  return kInvalidArgument;
}

// Runs `body`; an exception becomes `on_exception` with the message set.
template <typename T, typename Body>
T Guarded(const char* function, T on_exception, Body body) noexcept {
  try {
    return body();
  } catch (const std::exception& e) {
    last_error = absl::StrCat(function, ": internal error: ", e.what());
  } catch (...) {
    last_error = absl::StrCat(function, ": internal error");
  }
  return on_exception;
}

// The C++ options a physpool_alloc_options asks for.
AllocateOptions FromC(const physpool_alloc_options& c);

}  // namespace physpool::c_api

#endif  // PHYSPOOL_CLIENT_C_API_UTIL_H_
