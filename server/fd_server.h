// The fd socket: gRPC cannot carry file descriptors, so physpoold also
// listens on a second unix socket and hands out, over SCM_RIGHTS, after
// the same authentication as the gRPC API:
//   "device <bdf> [<token>]\n"     -> the VFIO device fd (privileged role:
//                                     a device can DMA anywhere in the
//                                     container)
//   "backing <lease> [<token>]\n"  -> the CPU view of the caller's lease
// The answer is one line, "ok <n> <fd>:<offset> <fd>:<offset> ...\n" with n
// descriptors attached and, per run of the lease, the index of the
// descriptor that maps it and the run's offset in it (backing: with
// per-lease views "ok 1 0:0 0:<run 0's length> ...", the lease's own view
// with its runs back to back; with isolation: off one descriptor per
// segment at the runs' file offsets; device: "ok 1"), or
// "error <CODE> <message>\n" with the gRPC status code name. A view sent
// stays pinned (quarantine counts it held) until the peer has read it or
// hung up. Connections are served one at a time, each request within 2 s.
// See docs/vfio.md.
#ifndef PHYSPOOL_SERVER_FD_SERVER_H_
#define PHYSPOOL_SERVER_FD_SERVER_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "server/pool_manager.h"
#include "server/services.h"
#include "vfio/memory_source.h"

namespace physpool::server {

class FdServer {
 public:
  FdServer(vfio::MemorySource* source, PoolManager* manager,
           const Authenticator* auth)
      : source_(source), manager_(manager), auth_(auth) {}
  ~FdServer() { Stop(); }

  // Binds `path` (mode 0660; a stale socket is replaced) and serves on a
  // thread.
  absl::Status Start(const std::string& path);
  // Stops serving and removes the socket. Idempotent.
  void Stop();

  // One request line -> the answer line and the descriptors to send
  // (owned by the caller): the protocol without the socket.
  // `pins` (may be null) receives what must stay alive until the peer has
  // read the descriptors.
  std::string Answer(const std::string& line, std::vector<int>* fds,
                     std::vector<std::shared_ptr<void>>* pins = nullptr);

 private:
  void Loop();
  // Answers one connection; returns the pins of what it sent.
  std::vector<std::shared_ptr<void>> Serve(int conn);

  struct Parked {
    int conn;
    std::vector<std::shared_ptr<void>> pins;
  };
  std::vector<Parked> parked_;  // the loop's: sent, not yet read

  vfio::MemorySource* const source_;
  PoolManager* const manager_;
  const Authenticator* const auth_;
  std::string path_;
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // eventfd: wakes the loop to stop
  std::thread thread_;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_FD_SERVER_H_
