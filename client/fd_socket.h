// SPDX-License-Identifier: Apache-2.0
// The client side of physpoold's fd socket (server/rpc/fd_server.h): one
// request line, one answer line with descriptors over SCM_RIGHTS. Not
// installed.
#ifndef PHYSPOOL_CLIENT_FD_SOCKET_H_
#define PHYSPOOL_CLIENT_FD_SOCKET_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace physpool::client_internal {

struct FdAnswer {
  std::vector<int> fds;            // owned by the caller
  std::vector<std::string> words;  // after "ok"
};

// Sends `request` (without the newline) to the socket at `path` and reads
// the answer, all within `timeout` (connect, send and the whole receive):
// DEADLINE_EXCEEDED past it. An "error CODE message" answer becomes that
// status; UNAVAILABLE if the socket cannot be reached or closes without an
// answer.
absl::StatusOr<FdAnswer> FdRequest(const std::string& path,
                                   const std::string& request,
                                   absl::Duration timeout);

}  // namespace physpool::client_internal

#endif  // PHYSPOOL_CLIENT_FD_SOCKET_H_
