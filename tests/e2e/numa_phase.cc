// SPDX-License-Identifier: Apache-2.0
// The e2e tenant's NUMA phases (docs/vfio.md, "NUMA placement"), in a guest
// with two NUMA nodes (CPU 0 and a memory backend on node 0, CPU 1 and
// another on node 1) and one 1 GiB hugetlb page reserved on node 1 at boot.
//
// numa: a 2 MiB-page pool of 4 MiB on each node. The daemon runs on CPU 0
// only, so whatever it faults without a binding lands on node 0: a page on
// node 1 got there by the segment's mbind. move_pages(2) (query mode) tells
// the node of each page of a lease, as this tenant maps it. A lease asked
// for node 1 is on node 1; a strict request on the full node 1 is refused
// (RESOURCE_EXHAUSTED) and counts no fallback; a non-strict one is served
// on node 0, its path ends in "+numa-fallback" and
// physpool_numa_fallback_total{numa="1"} goes from 0 to 1 (scraped from
// the daemon's metrics endpoint on loopback).
//
// 1g: a pool of one 1 GiB page (memfd, MFD_HUGE_1GB) on node 1, and a
// fourth edu whose DMA mask reaches its IOVA: the lease's mapping has 1 GiB
// pages (/proc/self/smaps KernelPageSize), sits on node 1, and edu DMA
// lands near its start, in its middle and near its end, read back by the
// CPU.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <cerrno>
#include <cstring>

#include "e2e_util.h"

namespace physpool_e2e {
namespace {

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;
constexpr int kMetricsPort = 9464;  // physpool-numa.yaml.in

// The daemon's /metrics over plain HTTP on loopback; "" if unreachable.
std::string Scrape() {
  const int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(kMetricsPort);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const std::string req = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  std::string text;
  if (connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      write(s, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
    char buf[4096];
    for (ssize_t n; (n = read(s, buf, sizeof(buf))) > 0;) text.append(buf, n);
  } else {
    std::printf("T: metrics on 127.0.0.1:%d: %s\n", kMetricsPort,
                std::strerror(errno));
  }
  close(s);
  return text;
}

// The value of the sample named exactly `series` (name{labels}); -1 if
// there is none.
double Sample(const std::string& text, const std::string& series) {
  const std::string line = "\n" + series + " ";
  const size_t at = text.find(line);
  if (at == std::string::npos) return -1;
  return std::strtod(text.c_str() + at + line.size(), nullptr);
}

// The NUMA node of each `step`-sized page of [p, p + bytes), touched first
// (read: the daemon's MAP_DMA has faulted and pinned them already), from
// move_pages(2) in query mode (nodes = NULL); a negative errno for a page
// it cannot tell, and {} if the call itself fails.
std::vector<int> NodesOf(const void* p, uint64_t bytes, uint64_t step) {
  std::vector<void*> pages;
  for (uint64_t off = 0; off < bytes; off += step) {
    volatile const uint8_t* b = static_cast<const uint8_t*>(p) + off;
    (void)*b;
    pages.push_back(const_cast<uint8_t*>(static_cast<const uint8_t*>(p)) + off);
  }
  std::vector<int> status(pages.size(), -1);
  if (syscall(SYS_move_pages, 0, pages.size(), pages.data(), nullptr,
              status.data(), 0) != 0) {
    std::printf("T: move_pages: %s\n", std::strerror(errno));
    return {};
  }
  return status;
}

// True if every page of every run of `r` is on `node`; prints the nodes.
bool AllOnNode(const physpool::Region& r, uint64_t page, int node,
               const std::string& name) {
  bool all = !r.runs().empty();
  std::string seen;
  for (const auto& run : r.runs()) {
    const std::vector<int> nodes = NodesOf(run.cpu, run.bytes, page);
    if (nodes.empty()) all = false;
    for (int n : nodes) {
      seen += " " + std::to_string(n);
      if (n != node) all = false;
    }
  }
  std::printf("T: %s (%s, path %s): pages on nodes%s\n", name.c_str(),
              r.lease_id().c_str(), r.path().c_str(), seen.c_str());
  return all;
}

// KernelPageSize (kB) of the mapping that holds `addr`, from
// /proc/self/smaps; 0 if not found.
uint64_t KernelPageSizeKb(const void* addr) {
  std::ifstream f("/proc/self/smaps");
  const auto a = reinterpret_cast<uintptr_t>(addr);
  bool in = false;
  for (std::string line; std::getline(f, line);) {
    unsigned long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 &&
        line.find('-') < line.find(' ')) {
      in = a >= lo && a < hi;
    } else if (in && line.rfind("KernelPageSize:", 0) == 0) {
      return std::strtoull(line.c_str() + 15, nullptr, 10);
    }
  }
  return 0;
}

bool EndsWith(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() &&
         s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

bool RunNuma(const Args& args) {
  Args a = args;
  a.config = a.numa_config;
  a.log = a.numa_log;
  a.cpu = 0;  // node 0: without an mbind, pages land there
  REQUIRE(access("/sys/devices/system/node/node1", F_OK) == 0 &&
              Slurp("/sys/devices/system/node/node0/cpulist") == "0\n",
          "the guest has NUMA nodes 0 and 1, CPU 0 on node 0");
  pid_t daemon = StartDaemon(a);
  DaemonGuard guard(&daemon);
  REQUIRE(WaitReady(a, daemon, 120), "physpoold (NUMA pool) is ready");
  auto client = Connect(a, "edu-token");
  REQUIRE(client != nullptr, "the tenant connects");
  const uint64_t page = client->page_size();
  Check(page == 2 * kMiB, "2 MiB pages");
  const std::string fallbacks1 = "physpool_numa_fallback_total{numa=\"1\"}";
  Check(Sample(Scrape(), fallbacks1) == 0,
        fallbacks1 + " is 0 before any fallback");

  physpool::AllocateOptions on1;
  on1.bytes = 4 * kMiB;
  on1.numa_node = 1;
  on1.numa_strict = true;
  on1.ttl = std::chrono::seconds(600);
  on1.label = "numa";
  auto one = client->Allocate(on1);
  REQUIRE(one.ok(), "4 MiB on node 1, strict: " + one.status().ToString());
  Check(!EndsWith((*one)->path(), "+numa-fallback"),
        "a lease on its node says no fallback: path " + (*one)->path());
  Check(AllOnNode(**one, page, 1, "node-1 lease"),
        "every page of the lease asked for node 1 is on node 1 (move_pages)");

  physpool::AllocateOptions on0 = on1;
  on0.bytes = 2 * kMiB;
  on0.numa_node = 0;
  auto zero = client->Allocate(on0);
  REQUIRE(zero.ok(), "2 MiB on node 0, strict: " + zero.status().ToString());
  Check(AllOnNode(**zero, page, 0, "node-0 lease"),
        "every page of the lease asked for node 0 is on node 0 (move_pages)");

  // Node 1 is full now.
  physpool::AllocateOptions more = on1;
  more.bytes = 2 * kMiB;
  auto strict = client->Allocate(more);
  Check(strict.status().code() == absl::StatusCode::kResourceExhausted,
        "strict on the full node 1 is refused, not moved: " +
            strict.status().ToString());
  Check(Sample(Scrape(), fallbacks1) == 0,
        "a refused strict request counts no fallback");
  more.numa_strict = false;
  auto loose = client->Allocate(more);
  REQUIRE(loose.ok(),
          "non-strict on the full node 1: " + loose.status().ToString());
  Check(EndsWith((*loose)->path(), "+numa-fallback"),
        "the fallback says so in the lease's path: " + (*loose)->path());
  Check(AllOnNode(**loose, page, 0, "fallback lease"),
        "the fallback lease's pages are on node 0, the node with room");
  const std::string metrics = Scrape();
  Check(Sample(metrics, fallbacks1) == 1,
        fallbacks1 + " is 1 after the fallback");
  Check(Sample(metrics, "physpool_numa_fallback_total{numa=\"0\"}") == 0,
        "no fallback counted for node 0");

  for (auto* r : {&*one, &*zero, &*loose}) {
    Check((*r)->Release().ok(), "release " + (*r)->lease_id());
    r->reset();
  }
  client.reset();
  StopDaemon(&daemon, "the NUMA daemon stops cleanly on SIGTERM");
  return true;
}

bool RunGigantic(const Args& args) {
  constexpr uint64_t kCount = 4095;
  Args a = args;
  a.config = a.gigantic_config;
  a.log = a.numa_log;
  a.cpu = 0;
  const std::string reserved = Slurp(
      "/sys/devices/system/node/node1/hugepages/hugepages-1048576kB/"
      "nr_hugepages");
  REQUIRE(reserved == "1\n",
          "one 1 GiB page reserved on node 1 at boot (hugepagesz=1G "
          "hugepages=1:1); node 1 has: " +
              reserved);
  const double t0 = Uptime();
  pid_t daemon = StartDaemon(a);
  DaemonGuard guard(&daemon);
  REQUIRE(WaitReady(a, daemon, 180), "physpoold (1 GiB pages) is ready");
  std::printf("T: physpoold with a 1 GiB page ready after %.2fs\n",
              Uptime() - t0);
  auto client = Connect(a, "edu-token");
  REQUIRE(client != nullptr, "the tenant connects");
  Check(client->page_size() == kGiB, "GetPoolInfo: 1 GiB pages");

  physpool::AllocateOptions o;
  o.bytes = kGiB;
  o.numa_node = 1;
  o.numa_strict = true;
  o.device = a.bdf_n;
  o.ttl = std::chrono::seconds(600);
  o.label = "1g";
  auto g = client->Allocate(o);
  REQUIRE(g.ok(), "1 GiB on node 1: " + g.status().ToString());
  REQUIRE((*g)->runs().size() == 1 && (*g)->runs()[0].bytes == kGiB,
          "one run of 1 GiB: " + Runs(RunsOf(**g)));
  auto* cpu = static_cast<uint8_t*>((*g)->runs()[0].cpu);
  const uint64_t iova = (*g)->runs()[0].iova;
  std::printf("T: 1 GiB lease %s at IOVA %#llx\n", (*g)->lease_id().c_str(),
              static_cast<unsigned long long>(iova));
  const uint64_t kb = KernelPageSizeKb(cpu);
  Check(kb == kGiB / 1024,
        "the lease's mapping has 1 GiB pages: smaps KernelPageSize " +
            std::to_string(kb) + " kB");
  Check(AllOnNode(**g, kGiB, 1, "1 GiB lease"),
        "the 1 GiB page is on node 1 (move_pages)");

  auto fd = client->OpenDevice(a.bdf_n);
  REQUIRE(fd.ok(), "the edu's device fd: " + fd.status().ToString());
  auto edu = Edu::Open(*fd);
  REQUIRE(edu && (edu->Id() & 0xff) == 0xed, "edu's BAR0 through the fd");
  Fill(cpu + 0x1000, kCount, 0x3c);
  // Near the end and in the middle: one IOMMU mapping covers the page.
  for (uint64_t off : {kGiB - 0x3000, kGiB / 2 + 0x123000}) {
    char what[96];
    std::snprintf(what, sizeof(what), "lease+%#llx",
                  static_cast<unsigned long long>(off));
    Check(AllZero(cpu + off - 0x100, kCount + 0x200),
          std::string(what) + " reads zero before the DMA");
    Check(edu->Copy(iova + 0x1000, iova + off, kCount),
          std::string("DMA into ") + what + " completes");
    Check(Matches(cpu + off, kCount, 0x3c),
          std::string("the bytes edu wrote at ") + what +
              " read back by the CPU");
    Check(
        AllZero(cpu + off - 0x100, 0x100) && AllZero(cpu + off + kCount, 0x100),
        std::string("nothing around ") + what + " changed");
  }
  edu.reset();
  Check((*g)->Release().ok(), "release the 1 GiB lease");
  g->reset();
  client.reset();
  StopDaemon(&daemon, "the 1 GiB daemon stops cleanly on SIGTERM");
  return true;
}

}  // namespace physpool_e2e
