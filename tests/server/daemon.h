// SPDX-License-Identifier: Apache-2.0
// Starts the real physpoold binary for a test: a private directory, a
// config with four tenants, unix socket + TCP port 0 + metrics port 0, and
// waits for its ready file. Stops it (SIGTERM) on destruction.
#ifndef PHYSPOOL_TESTS_SERVER_DAEMON_H_
#define PHYSPOOL_TESTS_SERVER_DAEMON_H_

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "physpool/v1/physpool.grpc.pb.h"

namespace physpool::testing {

// Tokens of the test tenants: alice, bob (tenants), carol (tenant with
// limits: 2 leases, 1 MiB), root (tenant + admin + privileged), ops (admin).
// alice is also the client certificate with common name "alice.example".
inline constexpr char kAlice[] = "alice-token";
inline constexpr char kBob[] = "bob-token";
inline constexpr char kCarol[] = "carol-token";
inline constexpr char kRoot[] = "root-token";
// ops: the admin role only (not a tenant: it may not allocate).
inline constexpr char kOps[] = "ops-token";

struct DaemonOptions {
  // Extra YAML appended under `leases:` etc. is not supported; these are the
  // knobs tests need.
  int default_ttl_seconds = 30;
  int reclaim_grace_ms = 200;
  int starvation_ms = 500;
  int expiring_warning_seconds = 1;
  uint64_t reserve_bytes = 0;
  // With a directory holding server.crt, server.key and ca.crt: TCP with TLS
  // that requires client certificates signed by ca.crt.
  std::string tls_dir;
  std::string extra_yaml;  // appended verbatim at the top level
  // listen.fd_socket_access as a YAML flow mapping, e.g.
  // "{max_connections_per_uid: 4}"; empty: the defaults.
  std::string fd_socket_access;
  std::string boot_id_file = "/proc/sys/kernel/random/boot_id";
  // The sim segments (YAML flow list items); empty: 16 MiB on freelist 0 /
  // NUMA 0 and 8 MiB on freelist 1 / NUMA 1 (kTotal 24 MiB).
  std::vector<std::string> segments;
  // The store's path; empty: <dir>/leases.db.
  std::string store_path;
  // Limits (0: the daemon's default).
  uint32_t max_runs_per_lease = 0;
  uint32_t max_waiters_per_tenant = 0;
  uint32_t max_watch_streams_per_tenant = 0;
  uint32_t max_watch_queue = 0;
  uint32_t max_wait_ms = 0;
};

class Daemon {
 public:
  // Starts physpoold; fails if it does not become ready in 20 s.
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(DaemonOptions opts = {});
  ~Daemon();

  std::shared_ptr<grpc::Channel> UnixChannel() const;
  std::shared_ptr<grpc::Channel> TcpChannel() const;
  std::unique_ptr<v1::Pool::Stub> Pool() const {
    return v1::Pool::NewStub(UnixChannel());
  }
  std::unique_ptr<v1::Admin::Stub> Admin() const {
    return v1::Admin::NewStub(UnixChannel());
  }

  // SIGTERM and wait; the exit status (or -1 after 10 s, then SIGKILL).
  int Stop();
  // SIGKILL, as a crash.
  void Kill();
  // Starts the daemon again on the same directory, config and store.
  absl::Status Restart();

  const std::string& dir() const { return dir_; }
  const std::string& socket() const { return socket_; }
  int tcp_port() const { return tcp_port_; }
  int metrics_port() const { return metrics_port_; }
  pid_t pid() const { return pid_; }
  std::string Log() const;  // its stderr so far

 private:
  absl::Status Launch();

  std::string dir_, socket_;
  int tcp_port_ = 0, metrics_port_ = 0;
  pid_t pid_ = -1;
};

// A ClientContext carrying `token` and a deadline `seconds` away.
std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token,
                                         double seconds = 10);

// Every live lease (of `tenant`, or all), following the pages of Admin
// ListLeases. Fails the test (and returns what it has) on an error.
std::vector<v1::Lease> AllLeases(v1::Admin::Stub* admin,
                                 const std::string& token,
                                 const std::string& tenant = "",
                                 int page_size = 0);

// A lease's CPU view from the daemon's fd socket ("backing <id> <token>"),
// mapped read-write whole: run i is at runs(i).view_offset(). The answer's
// words after "ok" are kept. Unmaps and closes on destruction.
struct MappedView {
  uint8_t* base = nullptr;
  uint64_t bytes = 0;
  int fd = -1;
  std::vector<std::string> words;
  MappedView() = default;
  MappedView(const MappedView&) = delete;
  MappedView& operator=(const MappedView&) = delete;
  ~MappedView();
};
absl::StatusOr<std::unique_ptr<MappedView>> MapView(const Daemon& d,
                                                    const std::string& lease_id,
                                                    const std::string& token);
// One request on the fd socket: the words after "ok" and the descriptors
// (the caller closes them); an "error CODE msg" answer as that status.
absl::StatusOr<std::pair<std::vector<std::string>, std::vector<int>>>
FdSocketRequest(const std::string& path, const std::string& line);

// The metrics endpoint's answer to a plain HTTP/1.0 GET of /metrics on
// loopback `port` (headers included; "" on any error).
std::string Metrics(int port);
// The value of an unlabelled metric in that text, or -1 if absent.
double MetricValue(const std::string& text, const std::string& name);

// Runs a binary with arguments; returns exit code and output (stdout+stderr).
struct RunResult {
  int code = -1;
  std::string output;
};
RunResult RunCommand(const std::string& command);

}  // namespace physpool::testing

#endif  // PHYSPOOL_TESTS_SERVER_DAEMON_H_
