// SPDX-License-Identifier: Apache-2.0
// e2e_tenant: the end-to-end test of the vfio source, run as the tenant
// inside a QEMU guest with an emulated IOMMU and QEMU's edu DMA device
// (tests/e2e/run_e2e.sh builds and boots the guest).
//
// It starts physpoold, leases regions with the client library, gets the
// edu device fd from the daemon over the fd socket, and makes edu copy
// bytes from region A into region B by DMA; then kills the daemon with
// SIGKILL while holding the device fd, restarts it, and checks that the
// leases, runs and memory survived and that new DMA lands; then the same
// with memfd backing, isolation required (a udmabuf per lease) and
// physpool-keeper, with two tenants; then the device domains: two more edus,
// one per tenant, each reaching only its tenant's leases (through a revoke
// and a kill -9); then NUMA placement and a 1 GiB page on a fourth edu
// (numa_phase.cc). Every verdict comes from bytes read back. It also
// measures MAP_DMA/UNMAP_DMA ("PHYSPOOL-E2E-BENCH:" lines).
//
// Every check is recorded (Check); a check the rest of a phase depends on
// (Require) also ends the phase, which then counts as aborted. Each phase
// that runs to its end prints "PHYSPOOL-E2E-PHASE: <name> complete". The
// last line is "PHYSPOOL-E2E: PASS" only if no check failed and every phase
// completed, else "PHYSPOOL-E2E: FAIL (...)"; the exit code is 0 only with
// PASS. run_e2e.sh requires the PASS line, the five phase lines, no
// "FAIL:" line and exit code 0.
//
// A tenant drives its device itself, so this program (not physpool's
// library) includes <linux/vfio.h> for the BAR's region info.
#include <dirent.h>
#include <fcntl.h>
#include <linux/udmabuf.h>
#include <linux/vfio.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "e2e_util.h"
#include "physpool/client.h"

namespace {

using namespace physpool_e2e;  // NOLINT: the phases' shared helpers

// The first descriptor of one message (SCM_RIGHTS); -1 if none.
int RecvFd(int sock) {
  char buf[512];
  iovec iov{buf, sizeof(buf)};
  alignas(cmsghdr) char control[CMSG_SPACE(16 * sizeof(int))] = {};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof(control);
  if (recvmsg(sock, &m, MSG_CMSG_CLOEXEC) <= 0) return -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
      return fd;
    }
  }
  return -1;
}
// A lease's view straight from the fd socket ("backing <id> <token>"), as a
// runtime that bypasses the client library would take it; -1 on failure.
int RawView(const Args& a, const std::string& lease, const std::string& token) {
  const std::string path = a.endpoint.substr(5) + ".fds";  // "unix:..."
  const int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  const std::string line = "backing " + lease + " " + token + "\n";
  if (connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      write(s, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    close(s);
    return -1;
  }
  const int fd = RecvFd(s);
  close(s);
  return fd;
}

// One descriptor over a unix socket (SCM_RIGHTS), with one byte.
bool SendFd(int sock, int fd) {
  char byte = 'v';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof(control);
  cmsghdr* c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  return sendmsg(sock, &m, MSG_NOSIGNAL) == 1;
}

// The vfio source with hugetlbfs files; true if it ran to its end.
bool RunVfio(const Args& a) {
  constexpr uint64_t kMiB = 1 << 20;
  constexpr uint64_t kCount = 4095;
  std::printf("T: tenant starts at %.2fs uptime\n", Uptime());
  const double t0 = Uptime();
  pid_t daemon = StartDaemon(a);
  DaemonGuard guard(&daemon);  // destroyed after the clients and regions
  REQUIRE(WaitReady(a, daemon, 120), "physpoold (vfio source) is ready");
  std::printf("T: physpoold ready after %.2fs\n", Uptime() - t0);

  auto client = Connect(a, "edu-token");
  auto plain = Connect(a, "plain-token");
  REQUIRE(client && plain, "tenants connect");
  Check(client->source() == "vfio", "GetPoolInfo: source vfio");
  const auto& ranges = client->iova_ranges();
  for (const auto& r : ranges) {
    std::printf("T: iova range [%#llx, %#llx]\n",
                static_cast<unsigned long long>(r.first),
                static_cast<unsigned long long>(r.last));
  }
  Check(ranges.size() == 2 && ranges[0].last == 0xfedfffff &&
            ranges[1].first == 0xfef00000,
        "GetPoolInfo: the IOMMU's IOVA ranges, split at the MSI window");
  Check(client->devices().size() == 1 && client->devices()[0].bdf == a.bdf &&
            client->devices()[0].dma_limit == (1u << 28),
        "GetPoolInfo: edu with its 28-bit DMA limit");
  const uint64_t limit = uint64_t{1} << 28;

  // Regions for edu: the daemon clips the window to its 28-bit limit.
  physpool::AllocateOptions low;
  low.bytes = 2 * kMiB;
  low.device = a.bdf;
  low.ttl = std::chrono::seconds(600);
  low.label = "edu";
  auto A = client->Allocate(low);
  auto B = client->Allocate(low);
  REQUIRE(A.ok() && B.ok(), "allocate A and B below edu's DMA limit");
  for (auto* r : {A->get(), B->get()}) {
    std::printf("T: %s runs %s\n", r->lease_id().c_str(),
                Runs(RunsOf(*r)).c_str());
    Check(r->runs().size() == 1 &&
              r->runs()[0].iova + r->runs()[0].bytes <= limit,
          "region inside edu's window");
  }
  physpool::AllocateOptions above = low;
  above.low = limit;
  Check(client->Allocate(above).status().code() ==
            absl::StatusCode::kInvalidArgument,
        "a window above the device's DMA limit is refused for that device");
  // Memory above the limit is a separate freelist, used first.
  physpool::AllocateOptions high = low;
  high.device = "";
  high.low = limit;
  auto C = client->Allocate(high);
  physpool::AllocateOptions any = low;
  any.device = "";
  auto D = client->Allocate(any);
  REQUIRE(C.ok() && (*C)->runs()[0].iova >= limit,
          "a window above the limit is served from the high freelist");
  REQUIRE(D.ok() && (*D)->runs()[0].iova >= limit,
          "a request without a window gets high memory first (low is used "
          "last)");
  physpool::AllocateOptions too_big = low;
  too_big.bytes = 16 * kMiB;
  auto E = client->Allocate(too_big);
  Check(E.status().code() == absl::StatusCode::kResourceExhausted,
        "more than the low freelist holds below the limit is refused: " +
            E.status().ToString());

  // The device fd: privileged tenants only.
  Check(plain->OpenDevice(a.bdf).status().code() ==
            absl::StatusCode::kPermissionDenied,
        "a tenant without the privileged role gets no device fd");
  auto fd = client->OpenDevice(a.bdf);
  REQUIRE(fd.ok(), "device fd over the fd socket: " + fd.status().ToString());
  auto edu = Edu::Open(*fd);
  REQUIRE(edu && (edu->Id() & 0xff) == 0xed, "edu's BAR0 through the fd");

  auto* a_cpu = static_cast<uint8_t*>((*A)->runs()[0].cpu);
  auto* b_cpu = static_cast<uint8_t*>((*B)->runs()[0].cpu);
  const uint64_t a_iova = (*A)->runs()[0].iova, b_iova = (*B)->runs()[0].iova;
  Check(AllZero(b_cpu, 2 * kMiB), "a new region is zeroed");
  Fill(a_cpu, kCount, 0x5a);
  const double dma0 = Uptime();
  Check(edu->Copy(a_iova, b_iova + 0x100, kCount), "DMA completes");
  std::printf("T: DMA round trip %.0f ms\n", (Uptime() - dma0) * 1000);
  Check(Matches(b_cpu + 0x100, kCount, 0x5a),
        "bytes DMAed from A into B+0x100 read back through B's CPU mapping");
  Check(AllZero(b_cpu, 0x100) &&
            AllZero(b_cpu + 0x100 + kCount, 2 * kMiB - 0x100 - kCount),
        "nothing outside the target in B changed");
  Check(Matches(a_cpu, kCount, 0x5a) &&
            AllZero(a_cpu + kCount, 2 * kMiB - kCount),
        "A unchanged");
  Check(AllZero(static_cast<uint8_t*>((*C)->runs()[0].cpu), 2 * kMiB) &&
            AllZero(static_cast<uint8_t*>((*D)->runs()[0].cpu), 2 * kMiB),
        "the other regions untouched");

  // Hot add: a physseg mapped at run time takes DMA; hot remove unmaps it.
  {
    auto [rc, out] = Ctl(a, {"-o", "json", "segment", "add", "--bytes", "2MiB",
                             "--freelist", "1"});
    const uint64_t id = JsonNumber(out, "id");
    const uint64_t iova = JsonNumber(out, "iova");
    std::printf("T: hot-added segment %llu at %#llx\n",
                static_cast<unsigned long long>(id),
                static_cast<unsigned long long>(iova));
    Check(rc == 0 && iova > 0 && iova + 2 * kMiB <= limit,
          "hot add: a new physseg in the low freelist, below edu's limit");
    physpool::AllocateOptions in_new = low;
    in_new.low = iova;
    in_new.high = iova + 2 * kMiB;
    auto H = client->Allocate(in_new);
    Check(H.ok() && (*H)->runs()[0].iova == iova,
          "a region in the hot-added physseg");
    if (H.ok()) {
      Fill(a_cpu, kCount, 0x42);
      auto* h_cpu = static_cast<uint8_t*>((*H)->runs()[0].cpu);
      Check(edu->Copy(a_iova, iova + 0x40, kCount) &&
                Matches(h_cpu + 0x40, kCount, 0x42) && AllZero(h_cpu, 0x40),
            "DMA into the hot-added physseg reads back");
      H->reset();  // releases; the memory is zeroed, then free
    }
    bool removed = false;
    for (int i = 0; i < 50 && !removed; ++i) {
      removed = Ctl(a, {"segment", "remove", std::to_string(id)}).first == 0;
      if (!removed) usleep(100 * 1000);
    }
    Check(removed, "hot remove of the physseg once its lease ended");
  }
  std::vector<std::vector<std::pair<uint64_t, uint64_t>>> before;
  for (auto* r : {A->get(), B->get(), C->get(), D->get()}) {
    before.push_back(RunsOf(*r));
  }

  // kill -9 while this tenant holds the device fd.
  kill(daemon, SIGKILL);
  waitpid(daemon, nullptr, 0);
  std::printf("T: physpoold killed at %.2fs\n", Uptime());
  Fill(a_cpu, kCount, 0x21);
  Check(edu->Copy(a_iova, b_iova + 0x2000, kCount) &&
            Matches(b_cpu + 0x2000, kCount, 0x21),
        "with the daemon dead, the held device fd keeps the container and "
        "its mappings: DMA still lands");
  const double t1 = Uptime();
  daemon = StartDaemon(a);
  Check(WaitLog(a, "is busy, held by", 120),
        "the restarted daemon says the group is busy");
  const std::string log = Slurp(a.log);
  Check(log.find("(e2e_tenant)") != std::string::npos,
        "... and names the process holding it");
  edu.reset();  // unmaps BAR0 and closes the device fd: the group is free
  std::printf("T: device fd closed at %.2fs\n", Uptime());
  Check(WaitReady(a, daemon, 120), "the daemon starts once the fd is closed");
  std::printf("T: restart took %.2fs (incl. the wait)\n", Uptime() - t1);
  Check(Slurp(a.log).find("\"reattached\":\"yes\"") != std::string::npos ||
            Slurp(a.log).find("reattached=yes") != std::string::npos,
        "the daemon re-attached the backing");

  auto client2 = Connect(a, "edu-token");
  REQUIRE(client2 != nullptr, "the tenant connects to the restarted daemon");
  int i = 0;
  for (auto* r : {A->get(), B->get(), C->get(), D->get()}) {
    auto runs = client2->LeaseRuns(r->lease_id());
    Check(runs.ok() && *runs == before[i],
          "lease " + r->lease_id() + " and its runs survived: " +
              (runs.ok() ? Runs(*runs) : runs.status().ToString()));
    ++i;
  }
  Check(Matches(b_cpu + 0x100, kCount, 0x5a) &&
            Matches(b_cpu + 0x2000, kCount, 0x21),
        "B's bytes survived the restart");
  auto fd2 = client2->OpenDevice(a.bdf);
  REQUIRE(fd2.ok(), "a device fd from the new daemon");
  auto edu2 = Edu::Open(*fd2);
  REQUIRE(edu2 && (edu2->Id() & 0xff) == 0xed,
          "edu's BAR0 through the new daemon's fd");
  Fill(a_cpu, kCount, 0x77);
  Check(edu2->Copy(a_iova, b_iova + 0x3000, kCount) &&
            Matches(b_cpu + 0x3000, kCount, 0x77),
        "after the restart, new DMA lands in the same region at the same IOVA");
  Check(AllZero(b_cpu + 0x3000 + kCount, 2 * kMiB - 0x3000 - kCount),
        "and nowhere else");
  edu2.reset();
  StopDaemon(&daemon, "physpoold stops cleanly on SIGTERM");
  return true;
}

// memfd backing with isolation required and physpool-keeper: two tenants,
// each mapping only its own leases through a per-lease udmabuf; edu DMA
// into B's lease reads back through B's dma-buf mapping and leaves A's
// lease as it was; a kill -9 of physpoold with both tenants' leases live
// interrupts no DMA (the keeper holds the container), and the next daemon
// has both leases with their bytes, and new DMA lands.
// true if it ran to its end.
// Holders no /proc scan can see, on a daemon with udmabuf views: a view's
// descriptor in flight in a socket's queue (in no process), and a forked
// child's mapping across a kill -9 of the daemon. The kernel's dma-buf
// count keeps each ended lease quarantined until the holder lets go.
// `tenant` holds a 2 MiB page of the pool free for the test.
bool RunUncountedHolders(const Args& a, pid_t* daemon,
                         std::unique_ptr<physpool::Client> tenant,
                         const physpool::AllocateOptions& o) {
  auto quarantined = [&a] {
    auto [rc, out] = Ctl(a, {"-o", "json", "pool", "status"}, "plain-token");
    return rc == 0 ? JsonNumber(out, "quarantined_bytes") : ~uint64_t{0};
  };
  auto ends = [&](double seconds) {
    const double deadline = Uptime() + seconds;
    while (quarantined() != 0 && Uptime() < deadline) usleep(100 * 1000);
    return quarantined() == 0;
  };
  auto lease = tenant->Allocate(o);
  REQUIRE(lease.ok(),
          "a lease for the holder checks: " + lease.status().ToString());
  int raw = RawView(a, (*lease)->lease_id(), "plain-token");
  int pair[2] = {-1, -1};
  REQUIRE(raw >= 0 && socketpair(AF_UNIX, SOCK_STREAM, 0, pair) == 0 &&
              SendFd(pair[0], raw),
          "the lease's view, sent into a socketpair's queue");
  close(raw);
  const uint64_t bytes = (*lease)->runs()[0].bytes;
  lease->reset();       // unmapped and released
  usleep(2500 * 1000);  // more than two scans
  Check(quarantined() == bytes,
        "a view descriptor in a socket's queue (no process holds it) keeps "
        "the ended lease quarantined: the kernel counts it");
  Check(!tenant->Allocate(o).ok(), "... and its pages go to nobody");
  const int back = RecvFd(pair[1]);
  Check(back >= 0, "the descriptor comes back out of the queue");
  close(back);
  close(pair[0]);
  close(pair[1]);
  Check(ends(10), "once it is closed, the quarantine ends");

  lease = tenant->Allocate(o);
  REQUIRE(lease.ok(), "a second lease: " + lease.status().ToString());
  raw = RawView(a, (*lease)->lease_id(), "plain-token");
  void* map = raw < 0 ? MAP_FAILED
                      : mmap(nullptr, bytes, PROT_READ, MAP_SHARED, raw, 0);
  REQUIRE(map != MAP_FAILED, "the second lease's view mapped");
  close(raw);
  const pid_t child = fork();
  if (child == 0) {
    pause();  // keeps the inherited mapping
    _exit(0);
  }
  munmap(map, bytes);
  lease->reset();
  usleep(2500 * 1000);
  Check(quarantined() == bytes,
        "a forked child's mapping keeps the ended lease quarantined");
  kill(*daemon, SIGKILL);
  waitpid(*daemon, nullptr, 0);
  *daemon = StartDaemon(a);
  REQUIRE(WaitReady(a, *daemon, 120), "the daemon restarts (holder checks)");
  usleep(2500 * 1000);
  Check(quarantined() == bytes,
        "after a kill -9 and a restart the child still holds it: still "
        "quarantined");
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  Check(ends(10), "the child gone, the quarantine ends");
  return true;
}

bool RunMemfd(Args a) {
  constexpr uint64_t kMiB = 1 << 20;
  constexpr uint64_t kCount = 4095;
  a.config = a.memfd_config;
  pid_t daemon = StartDaemon(a);
  DaemonGuard guard(&daemon);
  REQUIRE(WaitReady(a, daemon, 120),
          "physpoold with memfd backing, isolation required and "
          "physpool-keeper is ready");
  {
    auto [rc, out] = Ctl(a, {"-o", "json", "pool", "status"});
    Check(rc == 0 && out.find("udmabuf per lease") != std::string::npos,
          "GetPoolInfo: isolation on, a udmabuf per lease");
  }
  auto tenant_b = Connect(a, "edu-token");  // drives edu
  auto tenant_a = Connect(a, "plain-token");
  REQUIRE(tenant_a && tenant_b, "both tenants connect (memfd)");
  physpool::AllocateOptions o;
  o.bytes = 2 * kMiB;
  o.device = a.bdf;
  o.ttl = std::chrono::seconds(600);
  // Each Allocate here includes the lease's udmabuf (UDMABUF_CREATE_LIST
  // of one run), its fd socket round trip and the mmap (TCG: slow).
  const double alloc0 = Uptime();
  auto LA = tenant_a->Allocate(o);
  auto B1 = tenant_b->Allocate(o);
  auto B2 = tenant_b->Allocate(o);
  std::printf("T: 3 Allocate+udmabuf+mmap of 2 MiB: %.1f ms each (TCG)\n",
              (Uptime() - alloc0) * 1000 / 3);
  REQUIRE(LA.ok() && B1.ok() && B2.ok(),
          "leases mapped through their udmabufs: " + LA.status().ToString() +
              " " + B1.status().ToString() + " " + B2.status().ToString());
  auto* la = static_cast<uint8_t*>((*LA)->runs()[0].cpu);
  auto* b1 = static_cast<uint8_t*>((*B1)->runs()[0].cpu);
  auto* b2 = static_cast<uint8_t*>((*B2)->runs()[0].cpu);
  Fill(la, 2 * kMiB, 0xa5);  // A's pattern, end to end
  Check(AllZero(b1, 2 * kMiB) && AllZero(b2, 2 * kMiB),
        "nothing B is handed contains A's pattern (B's mappings read end to "
        "end)");
  auto fd = tenant_b->OpenDevice(a.bdf);
  REQUIRE(fd.ok(), "device fd (memfd daemon): " + fd.status().ToString());
  auto edu = Edu::Open(*fd);
  REQUIRE(edu && (edu->Id() & 0xff) == 0xed,
          "edu's BAR0 through the memfd daemon's fd");
  const uint64_t b1_iova = (*B1)->runs()[0].iova;
  const uint64_t b2_iova = (*B2)->runs()[0].iova;
  Fill(b1, kCount, 0x3c);
  Check(edu->Copy(b1_iova, b2_iova + 0x80, kCount) &&
            Matches(b2 + 0x80, kCount, 0x3c) && AllZero(b2, 0x80),
        "edu DMA into B's lease reads back through B's dma-buf mapping");
  Check(Matches(la, 2 * kMiB, 0xa5), "A's view unchanged by the DMA");

  std::vector<std::vector<std::pair<uint64_t, uint64_t>>> before;
  for (auto* r : {LA->get(), B1->get(), B2->get()})
    before.push_back(RunsOf(*r));
  kill(daemon, SIGKILL);
  waitpid(daemon, nullptr, 0);
  std::printf("T: physpoold (memfd) killed at %.2fs\n", Uptime());
  Fill(b1, kCount, 0x21);
  Check(edu->Copy(b1_iova, b2_iova + 0x2000, kCount) &&
            Matches(b2 + 0x2000, kCount, 0x21),
        "with the daemon dead, physpool-keeper holds the container: DMA "
        "still lands");
  const double t1 = Uptime();
  daemon = StartDaemon(a);
  REQUIRE(WaitReady(a, daemon, 120),
          "the memfd daemon restarts while the tenants hold their leases "
          "and the device fd");
  std::printf("T: memfd restart took %.2fs\n", Uptime() - t1);
  const std::string log = Slurp(a.log);
  Check(log.find("\"reattached\":\"yes\"") != std::string::npos ||
            log.find("reattached=yes") != std::string::npos,
        "the daemon took the memory back from physpool-keeper");
  Check(log.find("map_dma_calls\":0") != std::string::npos ||
            log.find("map_dma_calls=0") != std::string::npos,
        "... without a MAP_DMA: the IOVAs stayed mapped");
  auto a2 = Connect(a, "plain-token");
  auto b2c = Connect(a, "edu-token");
  REQUIRE(a2 && b2c, "both tenants connect to the restarted daemon");
  int i = 0;
  for (auto* r : {LA->get(), B1->get(), B2->get()}) {
    auto runs = (i == 0 ? a2 : b2c)->LeaseRuns(r->lease_id());
    Check(runs.ok() && *runs == before[i],
          "lease " + r->lease_id() + " and its runs survived: " +
              (runs.ok() ? Runs(*runs) : runs.status().ToString()));
    ++i;
  }
  Check(Matches(la, 2 * kMiB, 0xa5), "A's bytes survived the restart");
  Check(Matches(b2 + 0x80, kCount, 0x3c) && Matches(b2 + 0x2000, kCount, 0x21),
        "B's bytes survived the restart");
  auto fd2 = b2c->OpenDevice(a.bdf);
  REQUIRE(fd2.ok(), "a device fd from the new daemon");
  auto edu2 = Edu::Open(*fd2);
  REQUIRE(edu2 && (edu2->Id() & 0xff) == 0xed,
          "edu's BAR0 through the new daemon's fd");
  Fill(b1, kCount, 0x77);
  Check(edu2->Copy(b1_iova, b2_iova + 0x3000, kCount) &&
            Matches(b2 + 0x3000, kCount, 0x77),
        "after the restart, new DMA lands in B's lease at the same IOVA");
  Check(Matches(la, 2 * kMiB, 0xa5), "and A's lease is still untouched");
  edu.reset();
  edu2.reset();
  if (!RunUncountedHolders(a, &daemon, std::move(a2), o)) return false;
  StopDaemon(&daemon, "the memfd daemon stops cleanly on SIGTERM");
  return true;
}

// Makes an edu store its buffer at `iova` over and over, on a thread of its
// own, until Stop: a device that keeps writing. The Edu must outlive it
// and is not used by anyone else meanwhile.
class Writer {
 public:
  Writer(Edu* edu, uint64_t iova, uint64_t count)
      : thread_([this, edu, iova, count] {
          while (!stop_) {
            if (edu->Store(iova, count)) ++stores_;
          }
        }) {}
  ~Writer() { Stop(); }
  // Waits (up to 10 s) until `n` more stores than now have completed.
  bool WaitFor(int n) {
    const int until = stores_ + n;
    const double deadline = Uptime() + 10;
    while (stores_ < until && Uptime() < deadline) usleep(1000);
    return stores_ >= until;
  }
  // Stops and joins; the number of stores done.
  int Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    return stores_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> stores_{0};
  std::thread thread_;
};

// The IOMMU group of a PCI device (sysfs) and the number of devices in it;
// {"", 0} if it has none.
std::pair<std::string, int> IommuGroup(const std::string& bdf) {
  const std::string dir = "/sys/bus/pci/devices/" + bdf + "/iommu_group";
  char link[512];
  const ssize_t n = readlink(dir.c_str(), link, sizeof(link) - 1);
  if (n <= 0) return {"", 0};
  std::string group(link, n);
  group = group.substr(group.rfind('/') + 1);
  int devices = 0;
  if (DIR* d = opendir((dir + "/devices").c_str())) {
    while (dirent* e = readdir(d)) devices += e->d_name[0] != '.';
    closedir(d);
  }
  return {group, devices};
}

// The number after "key" in the object of device `bdf` in
// `physpoolctl -o json pool status`; -1 if the device is not there.
int64_t DeviceNumber(const std::string& json, const std::string& bdf,
                     const std::string& key) {
  const size_t at = json.find("\"" + bdf + "\"");
  if (at == std::string::npos) return -1;
  const std::string object = json.substr(at, json.find('}', at) - at);
  if (object.find("\"" + key + "\"") == std::string::npos) return -1;
  return static_cast<int64_t>(JsonNumber(object, key));
}

std::string Snapshot(const uint8_t* p, size_t n) {
  return std::string(reinterpret_cast<const char*>(p), n);
}
bool Unchanged(const uint8_t* p, const std::string& before) {
  return std::memcmp(p, before.data(), before.size()) == 0;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The device-domain phase: two edus, one assigned to tenant ta, one to tb;
// memfd backing, a udmabuf per lease, a keeper of its own. Each device
// reaches its tenant's leases and nothing else, a revoke cuts a writing
// device off before it answers and the pages reach the next tenant zeroed,
// and a kill -9 mid-DMA keeps both domains as they were. true if it ran to
// its end.
bool RunDomains(Args a) {
  constexpr uint64_t kMiB = 1 << 20;
  constexpr uint64_t kCount = 4095;
  constexpr uint64_t kLease = 2 * kMiB;
  a.config = a.domains_config;
  a.log = a.domains_log;
  // Not structured bindings: clang 14 cannot capture those in a lambda.
  const std::pair<std::string, int> ga = IommuGroup(a.bdf_a);
  const std::pair<std::string, int> gb = IommuGroup(a.bdf_b);
  const std::string group_a = ga.first, group_b = gb.first;
  const int in_a = ga.second, in_b = gb.second;
  std::printf("T: %s: iommu group %s (%d devices); %s: group %s (%d)\n",
              a.bdf_a.c_str(), group_a.c_str(), in_a, a.bdf_b.c_str(),
              group_b.c_str(), in_b);
  REQUIRE(!group_a.empty() && !group_b.empty() && group_a != group_b &&
              in_a == 1 && in_b == 1,
          "each edu of the domains phase is alone in its IOMMU group");
  pid_t daemon = StartDaemon(a);
  DaemonGuard guard(&daemon);
  REQUIRE(WaitReady(a, daemon, 120),
          "physpoold with one device per tenant (memfd, keeper) is ready");
  auto ta = Connect(a, "a-token");
  auto tb = Connect(a, "b-token");
  auto tc = Connect(a, "c-token");  // a tenant without a device
  auto ops = Connect(a, "ops-token");
  REQUIRE(ta && tb && tc && ops, "the tenants connect (domains)");

  // The fd socket: a device's fd goes to its tenant only.
  Check(ta->OpenDevice(a.bdf_b).status().code() ==
            absl::StatusCode::kPermissionDenied,
        "tenant ta gets no fd of tb's device");
  Check(ops->OpenDevice(a.bdf_a).status().code() ==
            absl::StatusCode::kPermissionDenied,
        "an admin with the privileged role gets no fd of a tenant's device");
  auto fd_a = ta->OpenDevice(a.bdf_a);
  auto fd_b = tb->OpenDevice(a.bdf_b);
  REQUIRE(fd_a.ok() && fd_b.ok(),
          "each tenant gets its own device's fd without the privileged role: " +
              fd_a.status().ToString() + " " + fd_b.status().ToString());
  auto edu_a = Edu::Open(*fd_a);
  auto edu_b = Edu::Open(*fd_b);
  REQUIRE(edu_a && edu_b && (edu_a->Id() & 0xff) == 0xed &&
              (edu_b->Id() & 0xff) == 0xed,
          "both edus' BAR0 through their tenants' fds");

  physpool::AllocateOptions o;
  o.bytes = kLease;
  o.ttl = std::chrono::seconds(600);
  physpool::AllocateOptions oa = o, ob = o;
  oa.device = a.bdf_a;
  ob.device = a.bdf_b;
  auto A1 = ta->Allocate(oa);
  auto A2 = ta->Allocate(oa);
  auto B1 = tb->Allocate(ob);
  auto B2 = tb->Allocate(ob);
  auto C1 = tc->Allocate(o);
  REQUIRE(A1.ok() && A2.ok() && B1.ok() && B2.ok() && C1.ok(),
          "leases for ta, tb and tc: " + A1.status().ToString() + " " +
              B1.status().ToString() + " " + C1.status().ToString());
  auto* a1 = static_cast<uint8_t*>((*A1)->runs()[0].cpu);
  auto* a2 = static_cast<uint8_t*>((*A2)->runs()[0].cpu);
  auto* b1 = static_cast<uint8_t*>((*B1)->runs()[0].cpu);
  auto* b2 = static_cast<uint8_t*>((*B2)->runs()[0].cpu);
  auto* c1 = static_cast<uint8_t*>((*C1)->runs()[0].cpu);
  const uint64_t a1_iova = (*A1)->runs()[0].iova;
  const uint64_t a2_iova = (*A2)->runs()[0].iova;
  const uint64_t b1_iova = (*B1)->runs()[0].iova;
  const uint64_t b2_iova = (*B2)->runs()[0].iova;
  const uint64_t c1_iova = (*C1)->runs()[0].iova;
  auto domains_show = [&](int64_t maps_a, int64_t maps_b,
                          const std::string& when) {
    auto [rc, out] = Ctl(a, {"-o", "json", "pool", "status"}, "ops-token");
    Check(rc == 0 && DeviceNumber(out, a.bdf_a, "mappings") == maps_a &&
              DeviceNumber(out, a.bdf_a, "mapped_bytes") ==
                  maps_a * int64_t{kLease} &&
              DeviceNumber(out, a.bdf_b, "mappings") == maps_b &&
              DeviceNumber(out, a.bdf_b, "mapped_bytes") ==
                  maps_b * int64_t{kLease} &&
              out.find("\"group-" + group_a + "\"") != std::string::npos &&
              out.find("\"group-" + group_b + "\"") != std::string::npos,
          "pool status " + when + ": ta's domain maps " +
              std::to_string(maps_a) + " leases, tb's " +
              std::to_string(maps_b) + ", each in its group's domain");
  };
  domains_show(2, 2, "after the grants");

  // A device reaches its tenant's leases and nothing else.
  Fill(a2, kCount, 0x11);
  Check(edu_a->Copy(a2_iova, a1_iova + 0x100, kCount) &&
            Matches(a1 + 0x100, kCount, 0x11),
        "ta's device DMAs into ta's lease: lands");
  Fill(b2, kCount, 0x22);
  Check(edu_b->Copy(b2_iova, b1_iova + 0x100, kCount) &&
            Matches(b1 + 0x100, kCount, 0x22),
        "tb's device DMAs into tb's lease: lands");
  Fill(b1 + 0x1000, kLease - 0x1000, 0xb1);
  Fill(c1, kLease, 0xc1);
  const std::string b1_before = Snapshot(b1, kLease);
  const std::string c1_before = Snapshot(c1, kLease);
  edu_a->Copy(a2_iova, b1_iova, kCount);  // edu says done even if blocked
  edu_a->Copy(a2_iova, b1_iova + 0x1000, kCount);
  edu_a->Copy(a2_iova, c1_iova + 0x1000, kCount);
  Check(Unchanged(b1, b1_before),
        "ta's device DMA to the IOVA of tb's lease leaves tb's bytes as they "
        "were");
  const std::string a1_before = Snapshot(a1, kLease);
  edu_b->Copy(b2_iova, a1_iova + 0x1000, kCount);
  edu_b->Copy(b2_iova, c1_iova + 0x2000, kCount);
  Check(Unchanged(a1, a1_before),
        "tb's device DMA to the IOVA of ta's lease leaves ta's bytes as they "
        "were");
  Check(Unchanged(c1, c1_before),
        "neither device reaches the lease of a tenant without a device");
  Check(edu_a->Copy(a2_iova, a1_iova + 0x3000, kCount) &&
            Matches(a1 + 0x3000, kCount, 0x11),
        "ta's device still DMAs into its own lease after the blocked DMA");

  // The cost of the domain on a grant, through the daemon: grant and
  // release of a 2 MiB lease by ta (one domain: MAP_DMA through the
  // keeper, UNMAP_DMA before the release answers) and by tc (none).
  for (auto [client, name] : {std::pair{ta.get(), "with a device domain"},
                              std::pair{tc.get(), "without a device"}}) {
    std::vector<double> ms;
    for (int i = 0; i < 8; ++i) {
      const double t0 = Uptime();
      auto r = client->Allocate(o);
      if (!r.ok()) break;
      r->reset();
      ms.push_back((Uptime() - t0) * 1000);
    }
    Check(ms.size() == 8, std::string("8 grants and releases ") + name);
    std::printf(
        "PHYSPOOL-E2E-BENCH: grant+release of a 2 MiB lease %s: median "
        "%.1f ms of 8 (TCG, through physpoold, incl. its udmabuf)\n",
        name, Median(ms));
  }

  // Revoke while ta's device keeps writing into the lease.
  Fill(a2, kCount, 0x33);
  REQUIRE(edu_a->Load(a2_iova, kCount), "ta's edu loads its buffer");
  {
    Writer writer(edu_a.get(), a1_iova + 0x8000, kCount);
    Check(writer.WaitFor(2) && Matches(a1 + 0x8000, kCount, 0x33),
          "ta's device keeps writing into ta's lease (lands)");
    auto [rc, out] = Ctl(a,
                         {"lease", "revoke", (*A1)->lease_id(), "--reason",
                          "e2e: revoke under DMA"},
                         "ops-token");
    const int stores = writer.Stop();
    REQUIRE(rc == 0,
            "the admin revokes ta's lease while ta's device "
            "writes into it");
    std::printf("T: %d stores by ta's device before the revoke answered\n",
                stores);
  }
  // ta still maps the pages (they are quarantined until it lets go).
  const std::string revoked = Snapshot(a1, kLease);
  Fill(a2, kCount, 0x44);
  edu_a->Copy(a2_iova, a1_iova + 0x8000, kCount);
  edu_a->Copy(a2_iova, a1_iova + 0x10000, kCount);
  Check(Unchanged(a1, revoked),
        "after the revoke answered, a new DMA by ta's device does not "
        "change the revoked lease's pages");
  Check(edu_a->Copy(a2_iova, a2_iova + 0x100000, kCount) &&
            Matches(a2 + 0x100000, kCount, 0x44),
        "... while the same device's DMA into ta's live lease lands");
  domains_show(1, 2, "after the revoke");
  A1->reset();  // ta lets go of the revoked lease's view
  physpool::AllocateOptions there = ob;
  there.low = a1_iova;
  there.high = a1_iova + kLease;
  there.wait_timeout = std::chrono::seconds(60);
  auto B3 = tb->Allocate(there);
  REQUIRE(B3.ok() && (*B3)->runs()[0].iova == a1_iova,
          "tb is given the revoked lease's pages once ta let go: " +
              B3.status().ToString());
  auto* b3 = static_cast<uint8_t*>((*B3)->runs()[0].cpu);
  const uint64_t b3_iova = (*B3)->runs()[0].iova;
  Check(AllZero(b3, kLease), "... and reads zeros in them");
  edu_a->Copy(a2_iova, a1_iova + 0x8000, kCount);
  Check(AllZero(b3, kLease),
        "ta's device cannot reach them now that they are tb's");
  domains_show(1, 3, "after tb's grant");

  // kill -9 while both devices write into their tenants' leases.
  const std::vector<std::string> live = {(*A2)->lease_id(), (*B1)->lease_id(),
                                         (*B2)->lease_id(), (*B3)->lease_id()};
  std::vector<std::vector<std::pair<uint64_t, uint64_t>>> before = {
      RunsOf(**A2), RunsOf(**B1), RunsOf(**B2), RunsOf(**B3)};
  Fill(a2, kCount, 0x55);
  Fill(b2, kCount, 0x66);
  REQUIRE(edu_a->Load(a2_iova, kCount) && edu_b->Load(b2_iova, kCount),
          "both edus load their buffers");
  std::memset(a2 + 0x180000, 0, kCount);
  std::memset(b2 + 0x180000, 0, kCount);
  {
    Writer wa(edu_a.get(), a2_iova + 0x180000, kCount);
    Writer wb(edu_b.get(), b2_iova + 0x180000, kCount);
    REQUIRE(wa.WaitFor(1) && wb.WaitFor(1), "both devices are writing");
    kill(daemon, SIGKILL);
    waitpid(daemon, nullptr, 0);
    std::printf("T: physpoold (domains) killed at %.2fs\n", Uptime());
    Check(wa.WaitFor(2) && wb.WaitFor(2) &&
              Matches(a2 + 0x180000, kCount, 0x55) &&
              Matches(b2 + 0x180000, kCount, 0x66),
          "with the daemon dead, both devices' DMA keeps landing (the keeper "
          "holds both domains)");
    daemon = StartDaemon(a);
    const bool ready = WaitReady(a, daemon, 120);
    Check(wa.WaitFor(1) && wb.WaitFor(1),
          "both devices kept writing through the restart");
    REQUIRE(ready, "the domains daemon restarts while both devices write");
  }
  const std::string log = Slurp(a.log);
  Check(log.find("device domains reconciled\" kept=4 unmapped=0 mapped=0 "
                 "map_errors=0") != std::string::npos,
        "the restarted daemon kept the 4 mappings the keeper held and says "
        "so in its log");
  auto ta2 = Connect(a, "a-token");
  auto tb2 = Connect(a, "b-token");
  REQUIRE(ta2 && tb2, "both tenants connect to the restarted daemon");
  for (size_t i = 0; i < live.size(); ++i) {
    auto runs = (i == 0 ? ta2 : tb2)->LeaseRuns(live[i]);
    Check(runs.ok() && *runs == before[i],
          "lease " + live[i] + " and its runs survived: " +
              (runs.ok() ? Runs(*runs) : runs.status().ToString()));
  }
  domains_show(1, 3, "after the restart");
  Fill(a2, kCount, 0x77);
  Fill(b2, kCount, 0x78);
  Check(edu_a->Copy(a2_iova, a2_iova + 0x1c0000, kCount) &&
            Matches(a2 + 0x1c0000, kCount, 0x77),
        "after the restart, ta's device DMA into ta's lease lands");
  Check(edu_b->Copy(b2_iova, b3_iova + 0x100, kCount) &&
            Matches(b3 + 0x100, kCount, 0x78),
        "after the restart, tb's device DMA into tb's lease lands");
  const std::string b1_after = Snapshot(b1, kLease);
  const std::string a2_after = Snapshot(a2, kLease);
  edu_a->Copy(a2_iova, b1_iova + 0x1000, kCount);
  edu_b->Copy(b2_iova, a2_iova + 0x1000, kCount);
  Check(Unchanged(b1, b1_after) && Unchanged(a2, a2_after),
        "after the restart, cross-tenant DMA is still blocked both ways");
  auto fd_a2 = ta2->OpenDevice(a.bdf_a);
  Check(fd_a2.ok() && ta2->OpenDevice(a.bdf_b).status().code() ==
                          absl::StatusCode::kPermissionDenied,
        "the restarted daemon hands ta its device's fd and not tb's");
  if (fd_a2.ok()) close(*fd_a2);
  edu_a.reset();
  edu_b.reset();
  StopDaemon(&daemon, "the domains daemon stops cleanly on SIGTERM");
  return true;
}

// The kernel's cost of a lease's runs in a device domain, measured here
// (the host has no IOMMU): VFIO_IOMMU_MAP_DMA and UNMAP_DMA of one run in a
// fresh type1v2 container of `group` (a group no daemon holds yet), for a
// 4 KiB run of 4 KiB pages, a 2 MiB run of 4 KiB pages and a 2 MiB run of
// one 2 MiB hugepage; the median of 32 calls each. The map pins the run's
// pages, so its cost grows with the number of pages. TCG makes all of it
// slower than on hardware. Each case is a check: a measurement that cannot
// be made fails.
void MeasureMapUnmap(const std::string& bdf) {
  const std::string group = IommuGroup(bdf).first;
  const int container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
  const int g = open(("/dev/vfio/" + group).c_str(), O_RDWR | O_CLOEXEC);
  const bool ready = container >= 0 && g >= 0 &&
                     ioctl(g, VFIO_GROUP_SET_CONTAINER, &container) == 0 &&
                     ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0;
  if (Check(ready,
            "a type1v2 container on group " + group +
                " for the map/unmap measurement: " + std::strerror(errno))) {
    struct Case {
      const char* name;
      uint64_t page, run;
    };
    constexpr uint64_t kMiB = 1 << 20;
    constexpr int kRuns = 4, kReps = 8;
    for (const Case& c :
         {Case{"4 KiB run of 4 KiB pages", 4096, 4096},
          Case{"2 MiB run of 4 KiB pages", 4096, 2 * kMiB},
          Case{"2 MiB run of 2 MiB pages", 2 * kMiB, 2 * kMiB}}) {
      const int mem = memfd_create(
          "measure", MFD_CLOEXEC | (c.page > 4096 ? MFD_HUGETLB : 0));
      void* p = MAP_FAILED;
      if (mem >= 0 && ftruncate(mem, kRuns * c.run) == 0) {
        p = mmap(nullptr, kRuns * c.run, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_POPULATE, mem, 0);
      }
      std::vector<double> map_us, unmap_us;
      bool ok = p != MAP_FAILED;
      for (int rep = 0; ok && rep < kReps; ++rep) {
        for (int i = 0; ok && i < kRuns; ++i) {
          vfio_iommu_type1_dma_map m = {};
          m.argsz = sizeof(m);
          m.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
          m.vaddr = reinterpret_cast<uint64_t>(p) + i * c.run;
          m.iova = 0x1000000 + i * 2 * c.run;  // not adjacent
          m.size = c.run;
          timespec t0, t1;
          clock_gettime(CLOCK_MONOTONIC, &t0);
          ok = ioctl(container, VFIO_IOMMU_MAP_DMA, &m) == 0;
          clock_gettime(CLOCK_MONOTONIC, &t1);
          map_us.push_back((t1.tv_sec - t0.tv_sec) * 1e6 +
                           (t1.tv_nsec - t0.tv_nsec) / 1e3);
        }
        for (int i = 0; ok && i < kRuns; ++i) {
          vfio_iommu_type1_dma_unmap u = {};
          u.argsz = sizeof(u);
          u.iova = 0x1000000 + i * 2 * c.run;
          u.size = c.run;
          timespec t0, t1;
          clock_gettime(CLOCK_MONOTONIC, &t0);
          ok = ioctl(container, VFIO_IOMMU_UNMAP_DMA, &u) == 0 &&
               u.size == c.run;
          clock_gettime(CLOCK_MONOTONIC, &t1);
          unmap_us.push_back((t1.tv_sec - t0.tv_sec) * 1e6 +
                             (t1.tv_nsec - t0.tv_nsec) / 1e3);
        }
      }
      if (Check(ok, std::string("MAP_DMA/UNMAP_DMA of a ") + c.name + ": " +
                        std::strerror(errno))) {
        std::printf(
            "PHYSPOOL-E2E-BENCH: %s: MAP_DMA median %.1f us, UNMAP_DMA "
            "median %.1f us (%zu calls each; TCG guest)\n",
            c.name, Median(map_us), Median(unmap_us), map_us.size());
      }
      if (p != MAP_FAILED) munmap(p, kRuns * c.run);
      if (mem >= 0) close(mem);
    }
  }
  if (g >= 0) close(g);
  if (container >= 0) close(container);
}

// The kernel's cost of a lease's dma-buf, measured here (the host has no
// /dev/udmabuf): UDMABUF_CREATE_LIST over a sealed 4 KiB-page memfd with
// 1, 16, 256 and 1024 runs of one page, median of 20 each. Printed only;
// TCG makes it slower than on hardware.
void MeasureUdmabuf() {
  const int dev = open("/dev/udmabuf", O_RDWR | O_CLOEXEC);
  const int mem = memfd_create("measure", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  constexpr int kPages = 2048;
  if (dev < 0 || mem < 0 || ftruncate(mem, kPages * 4096) != 0 ||
      fcntl(mem, F_ADD_SEALS, F_SEAL_SHRINK) != 0) {
    std::printf("T: udmabuf measurement skipped: %s\n", std::strerror(errno));
    return;
  }
  for (int runs : {1, 16, 256, 1024}) {
    std::vector<char> buf(sizeof(udmabuf_create_list) +
                          runs * sizeof(udmabuf_create_item));
    auto* list = reinterpret_cast<udmabuf_create_list*>(buf.data());
    list->flags = UDMABUF_FLAGS_CLOEXEC;
    list->count = runs;
    for (int i = 0; i < runs; ++i) {
      list->list[i].memfd = mem;
      list->list[i].offset = uint64_t(i) * 2 * 4096;  // not adjacent
      list->list[i].size = 4096;
    }
    std::vector<double> us;
    for (int rep = 0; rep < 20; ++rep) {
      timespec t0, t1;
      clock_gettime(CLOCK_MONOTONIC, &t0);
      const int fd = ioctl(dev, UDMABUF_CREATE_LIST, list);
      clock_gettime(CLOCK_MONOTONIC, &t1);
      if (fd < 0) {
        std::printf("T: UDMABUF_CREATE_LIST of %d runs: %s\n", runs,
                    std::strerror(errno));
        break;
      }
      close(fd);
      us.push_back((t1.tv_sec - t0.tv_sec) * 1e6 +
                   (t1.tv_nsec - t0.tv_nsec) / 1e3);
    }
    if (us.empty()) continue;
    std::sort(us.begin(), us.end());
    std::printf("T: udmabuf of %4d runs: median %.1f us (%.2f us a run; TCG)\n",
                runs, us[us.size() / 2], us[us.size() / 2] / runs);
  }
  close(mem);
  close(dev);
}

// Runs one phase; a phase that did not run to its end is a failure too.
bool Phase(const char* name, const std::function<bool()>& body) {
  std::printf("T: --- phase %s ---\n", name);
  const int failures = g_failures;
  const bool completed = body();
  if (completed) {
    std::printf("PHYSPOOL-E2E-PHASE: %s complete, %d failed checks\n", name,
                g_failures - failures);
  } else {
    ++g_failures;
    std::printf("FAIL: phase %s aborted (the FAIL above)\n", name);
  }
  std::fflush(stdout);
  return completed;
}

}  // namespace

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--bdf")
      a.bdf = v;
    else if (k == "--bdf-a")
      a.bdf_a = v;
    else if (k == "--bdf-b")
      a.bdf_b = v;
    else if (k == "--bdf-n")
      a.bdf_n = v;
    else if (k == "--daemon")
      a.daemon = v;
    else if (k == "--config")
      a.config = v;
    else if (k == "--log")
      a.log = v;
  }
  if (a.bdf.empty()) {
    Check(false, "--bdf names the edu device");
  }
  // The memfd phase runs even if the vfio phase was aborted (its daemon is
  // killed and its device fd closed by then): more to go on in the log.
  const bool vfio = !a.bdf.empty() && Phase("vfio", [&] { return RunVfio(a); });
  const bool memfd =
      !a.bdf.empty() && Phase("memfd", [&] { return RunMemfd(a); });
  MeasureUdmabuf();
  const bool two = !a.bdf_a.empty() && !a.bdf_b.empty();
  if (!two) Check(false, "--bdf-a and --bdf-b name the domains phase's edus");
  // Before the domains phase: its daemon holds tb's group from then on.
  if (two) MeasureMapUnmap(a.bdf_b);
  const bool domains = two && Phase("domains", [&] { return RunDomains(a); });
  // The fourth edu, on a NUMA guest (tests/e2e/numa_phase.cc).
  if (a.bdf_n.empty()) Check(false, "--bdf-n names the NUMA phases' edu");
  const bool numa =
      !a.bdf_n.empty() && Phase("numa", [&] { return RunNuma(a); });
  const bool gigantic =
      !a.bdf_n.empty() && Phase("1g", [&] { return RunGigantic(a); });
  const bool pass = g_failures == 0 && vfio && memfd && domains && numa &&
                    gigantic && g_checks > 0;
  auto done = [](bool b) { return b ? "complete" : "NOT COMPLETE"; };
  if (pass) {
    std::printf("PHYSPOOL-E2E: PASS (%d checks)\n", g_checks);
  } else {
    std::printf(
        "PHYSPOOL-E2E: FAIL (%d of %d checks failed; phases: vfio %s, "
        "memfd %s, domains %s, numa %s, 1g %s)\n",
        g_failures, g_checks, done(vfio), done(memfd), done(domains),
        done(numa), done(gigantic));
  }
  std::fflush(stdout);
  _exit(pass ? 0 : 1);
}
