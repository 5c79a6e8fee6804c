// SPDX-License-Identifier: Apache-2.0
// A unix-socket proxy between a client and the daemon, for losing answers
// on purpose: it forwards bytes both ways, or drops what the daemon sends
// (the request arrives and is served, the answer never reaches the
// client), and can cut every connection. Each connection is forwarded by
// its own thread.
#ifndef PHYSPOOL_TESTS_CLIENT_SOCKET_PROXY_H_
#define PHYSPOOL_TESTS_CLIENT_SOCKET_PROXY_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace physpool::testing {

class SocketProxy {
 public:
  // Listens on `path`; each connection is forwarded to `target` (a unix
  // socket path), connected when the client connects.
  static absl::StatusOr<std::unique_ptr<SocketProxy>> Start(
      const std::string& path, const std::string& target);
  ~SocketProxy();  // cuts every connection and joins the threads

  std::string endpoint() const { return "unix:" + path_; }
  // true: what the daemon sends is read and dropped.
  void DropAnswers(bool drop) { drop_ = drop; }
  // Closes every current connection (both ends); new ones are accepted.
  void CutAll();

 private:
  SocketProxy() = default;
  void AcceptLoop();
  void Forward(int client, int daemon);

  // Constant after Start.
  std::string path_, target_;
  int listen_fd_ = -1;

  std::atomic<bool> drop_{false};
  absl::Mutex mu_;
  std::vector<std::pair<int, int>> connections_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> forwarders_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread acceptor_;
};

}  // namespace physpool::testing

#endif  // PHYSPOOL_TESTS_CLIENT_SOCKET_PROXY_H_
