// SPDX-License-Identifier: Apache-2.0
// physpoold's life in named phases: take the pool (the instance lock), its
// keeper and memory source, open the lease store, start the memory, decide
// isolation, check the answer bound, start the pool, listen (gRPC, the fd
// socket, metrics, health), serve until a stopping signal (SIGHUP
// reloads), and stop gracefully. Each phase logs why it refuses and gives
// the process's exit code: 1 (cannot start), 2 (a configuration error).
//
// State: everything the daemon owns: the configuration, the instance lock,
// the keeper client, the memory source, the lease store, the tenants, the
// PoolManager, the services and servers, the fd socket, the reloader, the
// metrics, the service notifier.
// Thread safety: not thread-safe: main's thread owns it, takes the signals
// (sigwait) and starts the daemon's threads.
// I/O: the process's, at start and stop: the lock files, the store, the
// boot id, TLS files, the ready file, the sockets (gRPC, fd, metrics,
// health), the memory source, sd_notify; a SIGHUP reads the config again.
// REQUIRES: Run once, before the process starts another thread (each
// inherits the signals Take blocks).
#ifndef PHYSPOOL_SERVER_DAEMON_DAEMON_H_
#define PHYSPOOL_SERVER_DAEMON_DAEMON_H_

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "prometheus/exposer.h"
#include "server/core/clock.h"
#include "server/daemon/config.h"
#include "server/daemon/flags.h"
#include "server/daemon/instance_lock.h"
#include "server/daemon/keeper_client.h"
#include "server/daemon/notify.h"
#include "server/daemon/reload.h"
#include "server/pool_manager.h"
#include "server/rpc/fd_server.h"
#include "server/rpc/metrics.h"
#include "server/rpc/services.h"
#include "server/store/lease_store.h"
#include "vfio/memory_source.h"
#include "vfio/vfio_source.h"

namespace physpool::server {

class Daemon {
 public:
  // REQUIRES: `socket_gid` is listen.unix_group's on this host.
  Daemon(Flags flags, ServerConfig cfg, gid_t socket_gid);
  ~Daemon();

  // Every phase in order, then serving until SIGTERM or SIGINT, then the
  // graceful stop; the process's exit code.
  int Run();

 private:
  // The phases: each returns 0 to go on, else the exit code (logged why).
  int Take();         // signals, the instance lock, the keeper, the source
  int OpenStore();    // the lease store (voided leases logged)
  int StartMemory();  // the source, segments added at run time
  int Isolation();    // per-lease views per isolation.mode, udmabuf limits
  int AnswerBound();  // leases.max_runs_per_lease fits one answer
  int StartPool();    // tenants, the PoolManager, the memory logged
  int Listen();       // gRPC (unix, TCP) and the fd socket
  int Publish();      // metrics, the health listener, ready, notify
  void Serve();       // SIGHUP reloads until a stopping signal
  void Stop();        // graceful: answers in flight, then listeners
  // Every listener's grpc.health.v1 status.
  void SetHealth(bool serving);

  const Flags flags_;
  ServerConfig cfg_;
  const gid_t socket_gid_;
  const bool embedded_;
  sigset_t signals_;
  int stop_signal_ = 0;
  std::optional<InstanceLock> instance_;
  std::unique_ptr<KeeperClient> keeper_;
  std::unique_ptr<vfio::MemorySource> source_;
  vfio::VfioSource* vfio_source_ = nullptr;
  std::unique_ptr<LeaseStore> store_;
  bool reattach_ = false;
  absl::Time source_start_;
  ManagerOptions manager_options_;
  std::unique_ptr<TenantRegistry> registry_;
  SystemClock clock_;
  std::unique_ptr<PoolManager> manager_;
  // After the manager: its watchdog thread calls manager_->Stats() until
  // it is destroyed, so it goes first.
  ServiceNotifier notifier_;
  uint64_t total_bytes_ = 0;
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<PoolService> pool_service_;
  std::unique_ptr<AdminService> admin_service_;
  std::unique_ptr<grpc::Server> server_;
  int tcp_port_ = 0;
  std::unique_ptr<FdServer> fd_server_;
  std::unique_ptr<ConfigReloader> reloader_;
  std::shared_ptr<PoolCollector> collector_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int metrics_port_ = 0;
  std::unique_ptr<grpc::Server> health_server_;
  int health_port_ = 0;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_DAEMON_DAEMON_H_
