// SPDX-License-Identifier: Apache-2.0
// alloc: leases a region through the client library (request id, retries,
// mapping), prints it and returns, leaving the lease to its TTL; with
// --hold, renews it until SIGINT/SIGTERM and then releases it.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "cli/format.h"

namespace physpool::cli {
namespace {

struct AllocFlags {
  std::string bytes, alignment, boundary, low, high, wait, ttl;
  uint32_t max_segments = 0;
  int32_t numa = -1;  // -1: any node
  bool numa_strict = false, preemptible = false, reclaim = false;
  bool hold = false;
  std::string label = "physpoolctl alloc", device;
};

AllocateOptions Options(const AllocFlags& f) {
  // Every size and duration was checked by SizeCheck / DurationCheck.
  auto size = [](const std::string& s) {
    return s.empty() ? uint64_t{0} : *ParseBytes(s);
  };
  AllocateOptions o;
  o.bytes = size(f.bytes);
  o.alignment = size(f.alignment);
  o.boundary = size(f.boundary);
  o.low = size(f.low);
  if (!f.high.empty()) o.high = size(f.high);
  o.max_segments = f.max_segments;
  if (f.numa >= 0) o.numa_node = f.numa;
  o.numa_strict = f.numa_strict;
  o.preemptible = f.preemptible;
  o.may_reclaim = f.reclaim;
  o.label = f.label;
  o.device = f.device;
  if (!f.wait.empty())
    o.wait_timeout = std::chrono::milliseconds(*ParseMillis(f.wait));
  if (!f.ttl.empty()) o.ttl = std::chrono::seconds(*ParseMillis(f.ttl) / 1000);
  return o;
}

sigset_t StopSignals() {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGINT);
  sigaddset(&s, SIGTERM);
  return s;
}

int Alloc(const Ctx& c, const AllocFlags& f) {
  ClientOptions opts = c.opts;
  // The library sends one request id for this invocation and retries
  // UNAVAILABLE / DEADLINE_EXCEEDED with it; say so on stderr.
  opts.on_allocate_retry = [](const AllocateRetry& r) {
    std::fprintf(stderr,
                 "physpoolctl: alloc attempt %d: %s; retrying in %lld ms "
                 "(request %s)\n",
                 r.attempt, r.error.ToString().c_str(),
                 static_cast<long long>(r.pause.count()), r.request_id.c_str());
  };
  auto client = Client::Connect(opts);
  if (!client.ok()) return Fail(client.status());
  std::atomic<bool> revoked{false};
  auto region = (*client)->Allocate(
      Options(f), [&](const std::string& id, const std::string& kind,
                      const std::string& reason, int64_t) {
        std::fprintf(stderr, "Error: lease %s %s: %s\n", id.c_str(),
                     kind.c_str(), reason.c_str());
        revoked = true;
        kill(getpid(), SIGTERM);
      });
  if (!region.ok()) return Fail(region.status());
  // Print the lease as the daemon has it, with the request id this
  // invocation sent (a daemon without request ids does not echo it).
  v1::GetLeaseRequest req;
  req.set_lease_id((*region)->lease_id());
  v1::GetLeaseResponse resp;
  auto ctx = c.Call();
  if (auto s = c.Pool()->GetLease(ctx.get(), req, &resp); !s.ok())
    return Fail(s);
  resp.mutable_lease()->set_request_id((*region)->request_id());
  if (!f.hold) {
    // etcdctl lease grant: the lease outlives the command, until its TTL.
    (*region)->Detach();
    c.out->Lease(resp.lease(), LeaseShown::kGranted);
    return 0;
  }
  c.out->Lease(resp.lease(), LeaseShown::kHeld);
  const sigset_t stop = StopSignals();
  int sig;
  sigwait(&stop, &sig);
  region->reset();  // releases the lease
  return revoked ? kExitFailed : 0;
}

}  // namespace

void AddAllocCommand(CLI::App* root, Commands* out) {
  auto f = std::make_shared<AllocFlags>();
  CLI::App* alloc = Leaf(
      root, "alloc",
      "physpoolctl alloc --bytes SIZE [--alignment SIZE] [--boundary SIZE] "
      "[--max-segments N]\n"
      "                  [--low IOVA] [--high IOVA] [--numa N "
      "[--numa-strict]] [--preemptible]\n"
      "                  [--reclaim] [--wait 10s] [--ttl 60s] [--label TEXT] "
      "[--device BDF] [--hold]",
      "Leases a region, maps it (to check it can be reached), prints it and "
      "returns: the lease lives until its TTL runs out unless renewed (lease "
      "renew) or released (release), as etcdctl lease grant. With --hold it "
      "stays, renewed in the background, until interrupted (Ctrl-C, "
      "SIGTERM); then it is released: for testing a device.\n"
      "The request carries a request id (printed with the lease) and is "
      "retried with it on UNAVAILABLE and DEADLINE_EXCEEDED (5 attempts; a "
      "--wait request only on UNAVAILABLE), each retry noted on stderr.\n"
      "--max-segments 0 (the default) means any number of runs, except with "
      "--alignment above one page or --boundary: then one run, unless N >= "
      "2.",
      "physpoolctl alloc --bytes 2MiB --alignment 2MiB --max-segments 1");
  alloc->add_option("--bytes", f->bytes, "its size")
      ->required()
      ->check(SizeCheck());
  alloc->add_option("--alignment", f->alignment, "IOVA alignment of each run")
      ->check(SizeCheck());
  alloc
      ->add_option("--boundary", f->boundary, "no run crosses a multiple of it")
      ->check(SizeCheck());
  alloc->add_option("--max-segments", f->max_segments,
                    "at most N runs (0: see above)");
  alloc->add_option("--low", f->low, "lowest IOVA")->check(SizeCheck());
  alloc->add_option("--high", f->high, "highest IOVA (inclusive)")
      ->check(SizeCheck());
  CLI::Option* numa =
      alloc->add_option("--numa", f->numa, "the NUMA node to prefer")
          ->check(CLI::Range(0, INT32_MAX));
  alloc->add_flag("--numa-strict", f->numa_strict, "only that node")
      ->needs(numa);
  alloc->add_flag("--preemptible", f->preemptible,
                  "may be taken back for another tenant's --reclaim");
  alloc->add_flag("--reclaim", f->reclaim,
                  "may take back preemptible leases to fit");
  alloc->add_option("--wait", f->wait, "wait this long for memory to free up")
      ->check(DurationCheck());
  alloc->add_option("--ttl", f->ttl, "the lease's TTL (default: the daemon's)")
      ->check(DurationCheck());
  alloc->add_option("--label", f->label, "shown in lease list");
  alloc->add_option("--device", f->device,
                    "map it for this device only (vfio, its BDF)");
  alloc->add_flag("--hold", f->hold,
                  "renew it until interrupted, then release it");
  out->push_back({alloc, [f](const Ctx& c) { return Alloc(c, *f); },
                  [f] { return f->hold; }});
}

}  // namespace physpool::cli
