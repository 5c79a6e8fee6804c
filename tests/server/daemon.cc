// SPDX-License-Identifier: Apache-2.0
#include "tests/server/daemon.h"

#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "server/lease/tenants.h"

namespace physpool::testing {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int JsonInt(const std::string& json, const std::string& key) {
  const size_t at = json.find("\"" + key + "\":");
  if (at == std::string::npos) return 0;
  return std::atoi(json.c_str() + at + key.size() + 3);
}

// The daemon's configuration for `o`, its files under `dir`.
std::string ConfigYaml(const DaemonOptions& o, const std::string& dir,
                       const std::string& socket) {
  using server::Sha256Hex;
  std::string segments;
  if (o.segments.empty()) {
    segments =
        "      - {bytes: 16777216, freelist: 0, numa: 0}\n"
        "      - {bytes: 8388608, freelist: 1, numa: 1}\n";
  }
  for (const std::string& seg : o.segments)
    absl::StrAppend(&segments, "      - ", seg, "\n");
  std::string watch;
  if (o.max_watch_streams_per_tenant || o.max_watch_queue) {
    watch = "watch:\n";
    if (o.max_watch_streams_per_tenant)
      absl::StrAppend(&watch, "  max_streams_per_tenant: ",
                      o.max_watch_streams_per_tenant, "\n");
    if (o.max_watch_queue)
      absl::StrAppend(&watch, "  max_queued_events: ", o.max_watch_queue, "\n");
  }
  return absl::StrFormat(
      R"(listen:
  unix: %s
  tcp: 127.0.0.1:0
%smetrics:
  listen: 127.0.0.1:0
source:
  type: sim
  sim:
    dir: %s/sim
    segments:
%spool:
  reserve_bytes: %d
leases:
  default_ttl_seconds: %d
  max_ttl_seconds: 600
  expiring_warning_seconds: %d
  reclaim_grace_ms: %d
%swait:
  starvation_ms: %d
%s%stenants:
  - {name: alice, token_sha256: [%s], cert_common_names: [alice.example], roles: [tenant]}
  - {name: bob, token_sha256: [%s], roles: [tenant]}
  - {name: carol, token_sha256: [%s], roles: [tenant], max_leases: 2, max_bytes: 1048576}
  - {name: root, token_sha256: [%s], roles: [tenant, admin, privileged]}
  - {name: ops, token_sha256: [%s], roles: [admin]}
log_level: debug
store:
  path: %s
  boot_id_file: %s
%s)",
      socket,
      absl::StrCat(o.fd_socket_access.empty()
                       ? ""
                       : "  fd_socket_access: " + o.fd_socket_access + "\n",
                   o.tls_dir.empty()
                       ? std::string()
                       : absl::StrFormat(
                             "  tls: {cert: %s/server.crt, key: %s/server.key, "
                             "client_ca: %s/ca.crt}\n",
                             o.tls_dir, o.tls_dir, o.tls_dir)),
      dir, segments, o.reserve_bytes, o.default_ttl_seconds,
      o.expiring_warning_seconds, o.reclaim_grace_ms,
      o.max_runs_per_lease
          ? absl::StrFormat("  max_runs_per_lease: %d\n", o.max_runs_per_lease)
          : "",
      o.starvation_ms,
      absl::StrCat(o.max_waiters_per_tenant
                       ? absl::StrFormat("  max_waiters_per_tenant: %d\n",
                                         o.max_waiters_per_tenant)
                       : "",
                   o.max_wait_ms
                       ? absl::StrFormat("  max_ms: %d\n", o.max_wait_ms)
                       : ""),
      watch, Sha256Hex(kAlice), Sha256Hex(kBob), Sha256Hex(kCarol),
      Sha256Hex(kRoot), Sha256Hex(kOps),
      o.store_path.empty() ? dir + "/leases.db" : o.store_path, o.boot_id_file,
      o.extra_yaml);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(DaemonOptions o) {
  auto d = std::make_unique<Daemon>();
  char tmpl[] = "/tmp/physpool-test-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
  d->dir_ = tmpl;
  d->socket_ = d->dir_ + "/physpool.sock";
  const std::string config = ConfigYaml(o, d->dir_, d->socket_);
  std::ofstream(d->dir_ + "/physpoold.yaml") << config;
  if (absl::Status s = d->Launch(); !s.ok()) return s;
  return d;
}

absl::Status Daemon::Launch() {
  const std::string ready = dir_ + "/ready.json";
  unlink(ready.c_str());
  pid_ = fork();
  if (pid_ == 0) {
    const std::string log = dir_ + "/physpoold.log";
    freopen(log.c_str(), "a", stderr);
    execl(PHYSPOOLD_PATH, "physpoold", "--config",
          (dir_ + "/physpoold.yaml").c_str(), "--ready-file", ready.c_str(),
          nullptr);
    _exit(127);
  }
  for (int i = 0; i < 400; ++i) {
    const std::string json = Slurp(ready);
    if (!json.empty()) {
      tcp_port_ = JsonInt(json, "tcp_port");
      metrics_port_ = JsonInt(json, "metrics_port");
      // After a restart gRPC may hand a new channel the subchannel of the
      // killed daemon, whose first call fails: use it up here.
      auto pool = Pool();
      for (int tries = 0; tries < 50; ++tries) {
        v1::GetPoolInfoResponse info;
        auto ctx = Ctx(kRoot, 2);
        const grpc::Status s = pool->GetPoolInfo(ctx.get(), {}, &info);
        if (s.error_code() != grpc::StatusCode::UNAVAILABLE) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      return absl::OkStatus();
    }
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(
          absl::StrCat("physpoold exited early:\n", Log()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("physpoold not ready:\n", Log()));
}

void Daemon::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

absl::Status Daemon::Restart() { return Launch(); }

Daemon::~Daemon() {
  Stop();
  if (std::getenv("PHYSPOOL_KEEP_TEST_DIRS") == nullptr)
    RunCommand("rm -rf " + dir_);
}

int Daemon::Stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  for (int i = 0; i < 200; ++i) {
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
  return -1;
}

std::string Daemon::Log() const { return Slurp(dir_ + "/physpoold.log"); }

std::shared_ptr<grpc::Channel> Daemon::UnixChannel() const {
  return grpc::CreateChannel("unix:" + socket_,
                             grpc::InsecureChannelCredentials());
}

std::shared_ptr<grpc::Channel> Daemon::TcpChannel() const {
  return grpc::CreateChannel(absl::StrCat("127.0.0.1:", tcp_port_),
                             grpc::InsecureChannelCredentials());
}

std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token,
                                         double seconds) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
  ctx->set_deadline(
      std::chrono::system_clock::now() +
      std::chrono::microseconds(static_cast<int64_t>(seconds * 1e6)));
  return ctx;
}

std::vector<v1::Lease> AllLeases(v1::Admin::Stub* admin,
                                 const std::string& token,
                                 const std::string& tenant, int page_size) {
  std::vector<v1::Lease> out;
  v1::AdminListLeasesRequest req;
  req.set_tenant(tenant);
  req.set_page_size(page_size);
  for (int pages = 0; pages < 100000; ++pages) {
    v1::ListLeasesResponse resp;
    auto ctx = Ctx(token);
    const grpc::Status s = admin->ListLeases(ctx.get(), req, &resp);
    if (!s.ok()) {
      ADD_FAILURE() << "ListLeases: " << s.error_message();
      return out;
    }
    for (const auto& l : resp.leases()) out.push_back(l);
    if (resp.next_page_token().empty()) return out;
    req.set_page_token(resp.next_page_token());
  }
  ADD_FAILURE() << "ListLeases never ended";
  return out;
}

std::string Metrics(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string req = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (write(fd, req.data(), req.size()) == ssize_t(req.size())) {
      char buf[8192];
      ssize_t n;
      while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, n);
    }
  }
  close(fd);
  return out;
}

double MetricValue(const std::string& text, const std::string& name) {
  size_t at = 0;
  while ((at = text.find(name + " ", at)) != std::string::npos) {
    if (at == 0 || text[at - 1] == '\n')
      return std::atof(text.c_str() + at + name.size() + 1);
    at += name.size();
  }
  return -1;
}

RunResult RunCommand(const std::string& command) {
  RunResult r;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

MappedView::~MappedView() {
  if (base != nullptr) munmap(base, bytes);
  if (fd >= 0) close(fd);
}

absl::StatusOr<std::pair<std::vector<std::string>, std::vector<int>>>
FdSocketRequest(const std::string& path, const std::string& line) {
  const int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  timeval tv = {10, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(s);
    return absl::UnavailableError("cannot connect to " + path);
  }
  const std::string req = line + "\n";
  (void)!write(s, req.data(), req.size());
  char buf[1 << 16];
  char control[CMSG_SPACE(sizeof(int) * 253)];
  iovec iov = {buf, sizeof(buf)};
  msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  const ssize_t n = recvmsg(s, &msg, MSG_CMSG_CLOEXEC);
  close(s);
  if (n <= 0) return absl::UnavailableError("no answer on " + path);
  std::vector<int> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr;
       c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      fds.push_back(fd);
    }
  }
  std::string answer(buf, static_cast<size_t>(n));
  if (!answer.empty() && answer.back() == '\n') answer.pop_back();
  std::vector<std::string> words = absl::StrSplit(answer, ' ');
  if (words.empty() || words[0] != "ok") {
    for (int fd : fds) close(fd);
    absl::StatusCode code = absl::StatusCode::kUnknown;
    if (words.size() >= 2) {
      for (int c = 0; c <= 16; ++c) {
        if (absl::StatusCodeToString(static_cast<absl::StatusCode>(c)) ==
            words[1])
          code = static_cast<absl::StatusCode>(c);
      }
    }
    return absl::Status(code, answer);
  }
  words.erase(words.begin());
  return std::make_pair(std::move(words), std::move(fds));
}

absl::StatusOr<std::unique_ptr<MappedView>> MapView(const Daemon& d,
                                                    const std::string& lease_id,
                                                    const std::string& token) {
  auto got =
      FdSocketRequest(d.socket() + ".fds", "backing " + lease_id + " " + token);
  if (!got.ok()) return got.status();
  auto& [words, fds] = *got;
  if (fds.size() != 1) {
    for (int fd : fds) close(fd);
    return absl::InternalError(
        absl::StrCat("expected one view fd, got ", fds.size()));
  }
  auto v = std::make_unique<MappedView>();
  v->fd = fds[0];
  v->words = words;
  struct stat st;
  if (fstat(v->fd, &st) != 0 || st.st_size <= 0)
    return absl::InternalError("cannot size the view");
  v->bytes = static_cast<uint64_t>(st.st_size);
  void* p =
      mmap(nullptr, v->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
  if (p == MAP_FAILED) return absl::InternalError("cannot map the view");
  v->base = static_cast<uint8_t*>(p);
  return v;
}

}  // namespace physpool::testing
