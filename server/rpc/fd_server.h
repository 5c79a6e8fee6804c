// SPDX-License-Identifier: Apache-2.0
// The fd socket: gRPC cannot carry file descriptors, so physpoold also
// listens on a second unix socket and hands out, over SCM_RIGHTS, after
// the same authentication as the gRPC API:
//   "device <bdf> [<token>]\n"     -> the VFIO device fd: of a device
//                                     assigned to the caller (it reaches
//                                     the caller's leases only), or of a
//                                     pool-wide device for the privileged
//                                     role (it reaches every lease)
//   "backing <lease> [<token>]\n"  -> the CPU view of the caller's lease
// The answer is one line, "ok <n> <fd>:<offset> <fd>:<offset> ...\n" with n
// descriptors attached and, per run of the lease, the index of the
// descriptor that maps it and the run's offset in it (backing: with
// per-lease views "ok 1 0:0 0:<run 0's length> ...", the lease's own view
// with its runs back to back; with isolation: off one descriptor per
// segment at the runs' file offsets; device: "ok 1"), or
// "error <CODE> <message>\n" with the gRPC status code name. See
// docs/vfio.md, "The fd socket's trust model".
//
// A view sent stays pinned (the quarantine counts it held) until the peer
// has read it (SIOCOUTQ: nothing left unread) or hung up: a descriptor in
// a socket's queue is in no process's /proc. Until then the connection
// stays open (and counts against its uid's cap), but for
// options.answer_deadline at most: then it is closed, its slot freed, and
// the view stays pinned until the peer process is gone (the descriptor may
// still wait in its receive queue). A peer whose pid SO_PEERCRED cannot
// name (another pid namespace) gets no view.
//
// Concurrency: one event-loop thread accepts and reads every connection
// without blocking (each connection's partial line is buffered), so a slow,
// silent or dripping peer holds only its own connection. A complete line goes
// to a small pool of worker threads (kWorkers) that run Answer() (which may
// wait briefly on the manager) and send the answer. Order on accept: the
// peer's credentials (SO_PEERCRED) first, then the allowed uids/gids, then
// the per-uid connection cap, and only then is anything read. The request
// line must be complete within options.request_deadline of the accept (the
// whole request, not per read()); then "error DEADLINE_EXCEEDED" and close.
//
// State: the listening socket and two eventfds, the connections (being
// read, queued, being answered, parked until read), each uid's count of
// open connections, the pins of views sent but never read.
// Thread safety: Start and Stop from one thread, never at once; the loop
// and the workers share the state under mu_. Answer() is thread-safe.
// I/O: the unix socket (its file replaced at Start, removed at Stop;
// accept, reads, sendmsg with SCM_RIGHTS, SIOCOUTQ), eventfds, /proc (a
// parked peer's start time), the memory source (device and backing fds);
// a view's hand-out goes through the manager, which creates a new view
// under the pool's lock (a named exception, pool_manager.h). The fd
// socket's own I/O never runs under the pool's lock.
// REQUIRES: `source`, `manager` and `auth` outlive it.
#ifndef PHYSPOOL_SERVER_FD_SERVER_H_
#define PHYSPOOL_SERVER_FD_SERVER_H_

#include <sys/socket.h>

#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/core/options.h"
#include "server/pool_manager.h"
#include "server/rpc/services.h"
#include "vfio/memory_source.h"

namespace physpool::server {

class FdServer {
 public:
  FdServer(vfio::MemorySource* source, PoolManager* manager,
           const Authenticator* auth)
      : source_(source), manager_(manager), auth_(auth) {}
  ~FdServer() { Stop(); }

  static constexpr int kWorkers = 4;

  // Binds `path` (a stale socket is replaced; its mode is what the umask
  // makes: the caller opens it to its peers, daemon/daemon_listen.cc) and
  // serves on the event-loop thread and kWorkers workers.
  absl::Status Start(const std::string& path,
                     const FdSocketOptions& options = {});
  // Stops serving and removes the socket; returns promptly: connections
  // still reading are closed, queued ones answered UNAVAILABLE, and those
  // being answered are shut down (a worker waits at most for one Answer()).
  // Idempotent.
  void Stop();

  // One request line -> the answer line and the descriptors to send
  // (owned by the caller): the protocol without the socket.
  // `pins` (may be null) receives what must stay alive until the peer has
  // read the descriptors.
  // `peer` is the asking process (SO_PEERCRED; 0: unknown).
  std::string Answer(const std::string& line, std::vector<int>* fds,
                     std::vector<std::shared_ptr<void>>* pins = nullptr,
                     pid_t peer = 0);

 private:
  // The two requests (fd_answer.cc): a device's fd, a lease's backing.
  std::string AnswerDevice(const Tenant& tenant, const std::string& bdf,
                           std::vector<int>* fds);
  std::string AnswerBacking(const Tenant& tenant, const std::string& lease_id,
                            std::vector<int>* fds,
                            std::vector<std::shared_ptr<void>>* pins);
  // "error CODE message\n", the message on one line.
  static std::string ErrorLine(const absl::Status& s);

  struct Conn {
    int fd = -1;
    ucred peer = {};
    absl::Time deadline;
    std::string buf;  // what has been read so far
  };

  void Loop();
  bool Allowed(const ucred& peer) const;
  // Credentials, allow list and cap for a new connection: kept in conns, or
  // answered and closed.
  void Admit(int fd, std::vector<Conn>* conns);
  // Reads what is there; true when the connection is done with the loop
  // (handed to a worker or closed).
  bool ReadSome(Conn& c);
  void Work();
  void Serve(Conn& c);
  // Sends `answer` (best effort, never blocks) and closes the connection.
  void Finish(Conn& c, const std::string& answer);
  // Finishes the parked connections whose peer has read its answer, closes
  // those past their deadline (their pins go to unread_), and drops the
  // pins of unread_ peers that are gone.
  void CheckParked();
  // Logs a refused connection, at most once a second.
  void LogRefused(const ucred& peer, const absl::Status& why);

  vfio::MemorySource* const source_;
  PoolManager* const manager_;
  const Authenticator* const auth_;
  FdSocketOptions options_;
  std::string path_;
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // eventfd: wakes the loop to stop
  int wake_fd_ = -1;  // eventfd: wakes the loop to watch a parked answer
  std::thread thread_;
  std::vector<std::thread> workers_;

  absl::Mutex mu_;
  absl::CondVar cv_;
  std::map<uid_t, uint32_t> open_per_uid_ ABSL_GUARDED_BY(mu_);
  std::deque<Conn> queue_ ABSL_GUARDED_BY(mu_);   // complete lines
  std::set<int> in_flight_ ABSL_GUARDED_BY(mu_);  // being answered
  struct Parked {
    Conn conn;
    std::vector<std::shared_ptr<void>> pins;
    std::string lease;    // whose view was sent
    absl::Time deadline;  // for the peer to read it
  };
  std::vector<Parked> parked_ ABSL_GUARDED_BY(mu_);  // answered, not read
  // Views sent to a peer that did not read them in time: the connection is
  // closed, but the descriptor may still wait in the peer's receive queue,
  // so each view stays pinned (held) until that process is gone. By peer
  // (pid, start time), one pin per lease.
  std::map<std::pair<pid_t, uint64_t>,
           std::map<std::string, std::shared_ptr<void>>>
      unread_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_refusal_log_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t refusals_unlogged_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_FD_SERVER_H_
