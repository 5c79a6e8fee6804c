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
// physpool-keeper, with two tenants. Every verdict comes from bytes read
// back.
//
// Every check is recorded (Check); a check the rest of a phase depends on
// (Require) also ends the phase, which then counts as aborted. Each phase
// that runs to its end prints "PHYSPOOL-E2E-PHASE: <name> complete". The
// last line is "PHYSPOOL-E2E: PASS" only if no check failed and every phase
// completed, else "PHYSPOOL-E2E: FAIL (...)"; the exit code is 0 only with
// PASS. run_e2e.sh requires the PASS line, both phase lines, no "FAIL:"
// line and exit code 0.
//
// A tenant drives its device itself, so this program (not physpool's
// library) includes <linux/vfio.h> for the BAR's region info.
#include <fcntl.h>
#include <linux/udmabuf.h>
#include <linux/vfio.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
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

#include "physpool/client.h"

namespace {

int g_failures = 0;
int g_checks = 0;

// Records one verdict; returns `ok`.
bool Check(bool ok, const std::string& what) {
  ++g_checks;
  std::printf("%s: %s\n", ok ? "PASS" : "FAIL", what.c_str());
  std::fflush(stdout);
  if (!ok) ++g_failures;
  return ok;
}

// A check the rest of the phase needs: recorded, and on failure the phase
// (a function returning bool: "ran to its end") returns false.
#define REQUIRE(ok, what)             \
  do {                                \
    if (!Check((ok), (what))) {       \
      std::printf("T: phase ends\n"); \
      return false;                   \
    }                                 \
  } while (0)

double Uptime() {
  std::ifstream f("/proc/uptime");
  double up = 0;
  f >> up;
  return up;
}

struct Args {
  std::string daemon = "/bin/physpoold";
  std::string config = "/etc/physpool.yaml";
  std::string log = "/tmp/physpoold.log";
  std::string ready = "/run/physpoold.ready";
  std::string endpoint = "unix:/run/physpool/physpool.sock";
  std::string memfd_config = "/etc/physpool-memfd.yaml";
  std::string ctl = "/bin/physpoolctl";
  std::string bdf;
};

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

pid_t StartDaemon(const Args& a) {
  unlink(a.ready.c_str());
  const pid_t pid = fork();
  if (pid == 0) {
    const int log = open(a.log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(log, 1);
    dup2(log, 2);
    execl(a.daemon.c_str(), a.daemon.c_str(), "--config", a.config.c_str(),
          "--ready-file", a.ready.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

// Waits until `path` exists or the daemon exits; false on timeout or exit.
bool WaitReady(const Args& a, pid_t daemon, double seconds) {
  const double until = Uptime() + seconds;
  while (Uptime() < until) {
    if (access(a.ready.c_str(), F_OK) == 0) return true;
    int status = 0;
    if (waitpid(daemon, &status, WNOHANG) == daemon) {
      std::printf("T: physpoold exited (status %d) before it was ready\n",
                  status);
      return false;
    }
    usleep(50 * 1000);
  }
  return false;
}

// Kills (SIGKILL) the daemon `*pid` names when the phase ends early, so
// that the next phase starts on a free device; -1: nothing to do.
class DaemonGuard {
 public:
  explicit DaemonGuard(pid_t* pid) : pid_(pid) {}
  ~DaemonGuard() {
    if (*pid_ <= 0) return;
    kill(*pid_, SIGKILL);
    waitpid(*pid_, nullptr, 0);
    std::printf("T: physpoold (pid %d) killed at the end of the phase\n",
                static_cast<int>(*pid_));
    *pid_ = -1;
  }
  DaemonGuard(const DaemonGuard&) = delete;
  DaemonGuard& operator=(const DaemonGuard&) = delete;

 private:
  pid_t* pid_;
};

bool WaitLog(const Args& a, const std::string& needle, double seconds) {
  const double until = Uptime() + seconds;
  while (Uptime() < until) {
    if (Slurp(a.log).find(needle) != std::string::npos) return true;
    usleep(100 * 1000);
  }
  return false;
}

// The edu device (QEMU docs/specs/edu.rst) through a VFIO device fd.
class Edu {
 public:
  static std::unique_ptr<Edu> Open(int device_fd) {
    vfio_region_info ri = {};
    ri.argsz = sizeof(ri);
    ri.index = VFIO_PCI_BAR0_REGION_INDEX;
    if (ioctl(device_fd, VFIO_DEVICE_GET_REGION_INFO, &ri) != 0) return nullptr;
    void* p = mmap(nullptr, ri.size, PROT_READ | PROT_WRITE, MAP_SHARED,
                   device_fd, static_cast<off_t>(ri.offset));
    if (p == MAP_FAILED) return nullptr;
    auto e = std::unique_ptr<Edu>(new Edu);
    e->fd_ = device_fd;
    e->bar_ = static_cast<volatile uint8_t*>(p);
    e->bar_size_ = ri.size;
    return e;
  }
  ~Edu() {
    munmap(const_cast<uint8_t*>(bar_), bar_size_);
    close(fd_);
  }
  uint32_t Id() { return *reinterpret_cast<volatile uint32_t*>(bar_); }

  // One DMA of `count` (<= 4095: QEMU 7.2's edu aborts on 4096) bytes;
  // false if it does not complete within 5 s.
  bool Dma(uint64_t src, uint64_t dst, uint64_t count, bool to_ram) {
    Set(0x80, src);
    Set(0x88, dst);
    Set(0x90, count);
    Set(0x98, 1 | (to_ram ? 2 : 0));
    const double until = Uptime() + 5;
    while (Get(0x98) & 1) {
      if (Uptime() > until) return false;
      usleep(1000);
    }
    return true;
  }
  // RAM at `src` -> edu's buffer -> RAM at `dst`.
  bool Copy(uint64_t src, uint64_t dst, uint64_t count) {
    return Dma(src, kBuffer, count, false) && Dma(kBuffer, dst, count, true);
  }

 private:
  static constexpr uint64_t kBuffer = 0x40000;
  void Set(uint64_t reg, uint64_t v) {
    *reinterpret_cast<volatile uint64_t*>(bar_ + reg) = v;
  }
  uint64_t Get(uint64_t reg) {
    return *reinterpret_cast<volatile uint64_t*>(bar_ + reg);
  }
  int fd_ = -1;
  volatile uint8_t* bar_ = nullptr;
  uint64_t bar_size_ = 0;
};

void Fill(uint8_t* p, size_t n, uint8_t seed) {
  for (size_t i = 0; i < n; ++i)
    p[i] = static_cast<uint8_t>(seed + i * 7 + (i >> 8));
}
bool Matches(const uint8_t* p, size_t n, uint8_t seed) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != static_cast<uint8_t>(seed + i * 7 + (i >> 8))) {
      std::printf("T:   mismatch at %zu: %#x\n", i, p[i]);
      return false;
    }
  }
  return true;
}
bool AllZero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

// Runs physpoolctl as tenant "edu" (an admin too); its exit code and
// standard output.
std::pair<int, std::string> Ctl(const Args& a, std::vector<std::string> args) {
  int out[2];
  if (pipe(out) != 0) return {-1, ""};
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    close(out[0]);
    setenv("PHYSPOOL_ENDPOINT", a.endpoint.c_str(), 1);
    setenv("PHYSPOOL_TOKEN", "edu-token", 1);
    std::vector<char*> argv = {const_cast<char*>(a.ctl.c_str())};
    for (std::string& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    execv(a.ctl.c_str(), argv.data());
    _exit(127);
  }
  close(out[1]);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = read(out[0], buf, sizeof(buf))) > 0;)
    text.append(buf, n);
  close(out[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, text};
}

// The number after `"key": ` (quoted or not) in physpoolctl's JSON.
uint64_t JsonNumber(const std::string& json, const std::string& key) {
  const size_t at = json.find("\"" + key + "\":");
  if (at == std::string::npos) return 0;
  size_t i = at + key.size() + 3;
  while (i < json.size() && (json[i] == ' ' || json[i] == '"')) ++i;
  return std::strtoull(json.c_str() + i, nullptr, 10);
}

std::unique_ptr<physpool::Client> Connect(const Args& a,
                                          const std::string& token) {
  physpool::ClientOptions o;
  o.endpoint = a.endpoint;
  o.token = token;
  o.timeout = std::chrono::seconds(30);
  auto c = physpool::Client::Connect(o);
  if (!c.ok()) {
    std::printf("T: connect as %s: %s\n", token.c_str(),
                c.status().ToString().c_str());
    return nullptr;
  }
  return *std::move(c);
}

std::string Runs(const std::vector<std::pair<uint64_t, uint64_t>>& runs) {
  std::string s;
  for (const auto& [iova, bytes] : runs) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "[%#llx +%#llx]",
                  static_cast<unsigned long long>(iova),
                  static_cast<unsigned long long>(bytes));
    s += buf;
  }
  return s;
}

std::vector<std::pair<uint64_t, uint64_t>> RunsOf(const physpool::Region& r) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  for (const auto& run : r.runs()) out.push_back({run.iova, run.bytes});
  return out;
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
  kill(daemon, SIGTERM);
  int status = 0;
  waitpid(daemon, &status, 0);
  daemon = -1;
  Check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "physpoold stops cleanly on SIGTERM");
  return true;
}

// memfd backing with isolation required and physpool-keeper: two tenants,
// each mapping only its own leases through a per-lease udmabuf; edu DMA
// into B's lease reads back through B's dma-buf mapping and leaves A's
// lease as it was; a kill -9 of physpoold with both tenants' leases live
// interrupts no DMA (the keeper holds the container), and the next daemon
// has both leases with their bytes, and new DMA lands.
// true if it ran to its end.
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
  kill(daemon, SIGTERM);
  int status = 0;
  waitpid(daemon, &status, 0);
  daemon = -1;
  Check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "the memfd daemon stops cleanly on SIGTERM");
  return true;
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
  const bool pass = g_failures == 0 && vfio && memfd && g_checks > 0;
  if (pass) {
    std::printf("PHYSPOOL-E2E: PASS (%d checks)\n", g_checks);
  } else {
    std::printf(
        "PHYSPOOL-E2E: FAIL (%d of %d checks failed; phases: vfio %s, "
        "memfd %s)\n",
        g_failures, g_checks, vfio ? "complete" : "NOT COMPLETE",
        memfd ? "complete" : "NOT COMPLETE");
  }
  std::fflush(stdout);
  _exit(pass ? 0 : 1);
}
