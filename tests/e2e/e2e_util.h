// SPDX-License-Identifier: Apache-2.0
// What the e2e tenant's phases share (tests/e2e/e2e_tenant.cc,
// tests/e2e/numa_phase.cc): the verdicts (Check, REQUIRE), the daemon's
// start and stop, the edu device through a VFIO device fd, patterns,
// physpoolctl and the client.
#ifndef PHYSPOOL_TESTS_E2E_E2E_UTIL_H_
#define PHYSPOOL_TESTS_E2E_E2E_UTIL_H_

#include <fcntl.h>
#include <linux/vfio.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "physpool/client.h"

namespace physpool_e2e {

inline int g_failures = 0;
inline int g_checks = 0;

// Records one verdict; returns `ok`.
inline bool Check(bool ok, const std::string& what) {
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

// Seconds since boot (CLOCK_BOOTTIME: /proc/uptime's clock, to the ns).
inline double Uptime() {
  timespec t{};
  clock_gettime(CLOCK_BOOTTIME, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

struct Args {
  std::string daemon = "/bin/physpoold";
  std::string config = "/etc/physpool.yaml";
  std::string log = "/tmp/physpoold.log";
  std::string ready = "/run/physpoold.ready";
  std::string endpoint = "unix:/run/physpool/physpool.sock";
  std::string memfd_config = "/etc/physpool-memfd.yaml";
  std::string domains_config = "/etc/physpool-domains.yaml";
  std::string domains_log = "/tmp/physpoold-domains.log";
  std::string ctl = "/bin/physpoolctl";
  std::string bdf;           // the vfio and memfd phases' edu
  std::string bdf_a, bdf_b;  // the domains phase's: tenant ta's, tb's
  // The numa and 1g phases' edu (a 40-bit DMA mask: reaches a 1 GiB page).
  std::string bdf_n;
  std::string numa_config = "/etc/physpool-numa.yaml";
  std::string gigantic_config = "/etc/physpool-1g.yaml";
  std::string numa_log = "/tmp/physpoold-numa.log";
  // >= 0: the daemon runs on this CPU only (sched_setaffinity), so that its
  // NUMA-local default is that CPU's node.
  int cpu = -1;
};

inline std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline pid_t StartDaemon(const Args& a) {
  unlink(a.ready.c_str());
  const pid_t pid = fork();
  if (pid == 0) {
    const int log = open(a.log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(log, 1);
    dup2(log, 2);
    if (a.cpu >= 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(a.cpu, &set);
      if (sched_setaffinity(0, sizeof(set), &set) != 0) _exit(126);
    }
    execl(a.daemon.c_str(), a.daemon.c_str(), "--config", a.config.c_str(),
          "--ready-file", a.ready.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

// Waits until `path` exists or the daemon exits; false on timeout or exit.
inline bool WaitReady(const Args& a, pid_t daemon, double seconds) {
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

// SIGTERM to the daemon `*pid` names; checks that it exits 0 (`what`).
inline void StopDaemon(pid_t* pid, const std::string& what) {
  kill(*pid, SIGTERM);
  int status = 0;
  waitpid(*pid, &status, 0);
  *pid = -1;
  Check(WIFEXITED(status) && WEXITSTATUS(status) == 0, what);
}

inline bool WaitLog(const Args& a, const std::string& needle, double seconds) {
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
  // RAM at `src` -> edu's buffer; edu's buffer -> RAM at `dst`.
  bool Load(uint64_t src, uint64_t count) {
    return Dma(src, kBuffer, count, false);
  }
  bool Store(uint64_t dst, uint64_t count) {
    return Dma(kBuffer, dst, count, true);
  }
  bool Copy(uint64_t src, uint64_t dst, uint64_t count) {
    return Load(src, count) && Store(dst, count);
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

inline void Fill(uint8_t* p, size_t n, uint8_t seed) {
  for (size_t i = 0; i < n; ++i)
    p[i] = static_cast<uint8_t>(seed + i * 7 + (i >> 8));
}
// The first byte of p[0, n) that differs from Fill's pattern; n if none.
inline size_t FirstMismatch(const uint8_t* p, size_t n, uint8_t seed) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != static_cast<uint8_t>(seed + i * 7 + (i >> 8))) return i;
  }
  return n;
}
inline bool Matches(const uint8_t* p, size_t n, uint8_t seed) {
  const size_t i = FirstMismatch(p, n, seed);
  if (i < n) std::printf("T:   mismatch at %zu: %#x\n", i, p[i]);
  return i == n;
}
inline bool AllZero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

// Runs physpoolctl with `token` (by default tenant "edu", an admin too);
// its exit code and standard output.
inline std::pair<int, std::string> Ctl(const Args& a,
                                       std::vector<std::string> args,
                                       const char* token = "edu-token") {
  int out[2];
  if (pipe(out) != 0) return {-1, ""};
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    close(out[0]);
    setenv("PHYSPOOL_ENDPOINT", a.endpoint.c_str(), 1);
    setenv("PHYSPOOL_TOKEN", token, 1);
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
inline uint64_t JsonNumber(const std::string& json, const std::string& key) {
  const size_t at = json.find("\"" + key + "\":");
  if (at == std::string::npos) return 0;
  size_t i = at + key.size() + 3;
  while (i < json.size() && (json[i] == ' ' || json[i] == '"')) ++i;
  return std::strtoull(json.c_str() + i, nullptr, 10);
}

inline std::unique_ptr<physpool::Client> Connect(const Args& a,
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

inline std::string Runs(
    const std::vector<std::pair<uint64_t, uint64_t>>& runs) {
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

inline std::vector<std::pair<uint64_t, uint64_t>> RunsOf(
    const physpool::Region& r) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  for (const auto& run : r.runs()) out.push_back({run.iova, run.bytes});
  return out;
}

// The phases of tests/e2e/numa_phase.cc; true if each ran to its end.
bool RunNuma(const Args& a);
bool RunGigantic(const Args& a);

}  // namespace physpool_e2e

#endif  // PHYSPOOL_TESTS_E2E_E2E_UTIL_H_
