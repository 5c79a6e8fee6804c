// SPDX-License-Identifier: Apache-2.0
// The DRA driver's logic, between kubelet, the API server and physpoold:
// NodePrepareResources / NodeUnprepareResources for claims (a lease per
// allocated request, a CDI spec per claim), the cleanup pass, the lease
// renewals and the node's ResourceSlice. docs/kubernetes.md describes it.
//
// physpoold sees the driver as one tenant; each claim's leases carry an
// access token of their own (AllocateRequest.access_token_sha256) that the
// claim's containers get as a file, so they reach their leases and nothing
// else. Thread-safe: one lock serialises claims, cleanup and renewals
// (kubelet's calls are rare and short; a slow physpoold call holds it).
#ifndef PHYSPOOL_DRA_DRIVER_H_
#define PHYSPOOL_DRA_DRIVER_H_

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "dra/claim_state.h"
#include "dra/kube_client.h"
#include "nlohmann/json.hpp"
#include "physpool/v1/physpool.grpc.pb.h"

namespace physpool::dra {

struct DriverOptions {
  std::string driver_name = "dma.physpool.io";
  std::string node_name;
  std::string physpool_token;  // the driver's tenant token ("" = none)
  std::string socket_dir = "/run/physpool";  // physpoold's, on the host
  std::string socket_name = "physpool.sock";
  std::string plugin_dir;  // state.json, claims/<uid>/token
  std::string cdi_dir = "/var/run/cdi";
  uint32_t lease_ttl_seconds = 300;
  // Where a container finds its claim's token (the claim dir's mount).
  std::string container_claim_dir = "/var/run/physpool-claim";
};

// One allocated device of a prepared claim, as kubelet is told.
struct PreparedDevice {
  std::vector<std::string> requests;
  std::string pool, device;
  std::vector<std::string> cdi_ids;
};

// Kills this process with SIGKILL if $PHYSPOOL_DRA_CRASH_AT names `step`
// (fault injection for the crash tests; docs/kubernetes.md).
void CrashPoint(const char* step);

class Driver {
 public:
  Driver(DriverOptions options, std::shared_ptr<grpc::Channel> physpool,
         std::unique_ptr<KubeClient> kube, ClaimState state);

  // NodePrepareResources for one claim: the CDI devices, or the claim's
  // error. Idempotent: a prepared claim answers the same devices.
  absl::StatusOr<std::vector<PreparedDevice>> Prepare(const std::string& ns,
                                                      const std::string& uid,
                                                      const std::string& name);
  // NodeUnprepareResources for one claim; unknown claims are fine.
  absl::Status Unprepare(const std::string& uid);

  // Finishes interrupted Unprepares; unprepares claims the API server no
  // longer has (or that are no longer allocated here); marks prepared
  // claims whose lease ended as needing preparing again; releases the
  // driver's leases that no claim record names. Goes on past a failing
  // item and returns the first failure. Called at start (before kubelet
  // can call) and every --cleanup-interval.
  absl::Status Cleanup();
  // Renews the leases of prepared claims, and those of claims being
  // prepared (by label) (every ttl / 3).
  void RenewAll();
  // Publishes the node's ResourceSlice if it changed (or `force`: the
  // same content again, which re-creates a slice someone deleted). The
  // slice is owned by its Node, so it goes when the node object goes.
  absl::Status Publish(bool force = false);

  // The slice's devices as last computed (for tests and logs).
  nlohmann::json DevicesForTest();

 private:
  struct PoolFacts {
    uint64_t page_size = 0;
    // device name -> (numa node or -1, capacity, free, largest run)
    struct Dev {
      int numa = -1;
      uint64_t capacity = 0, free = 0, largest = 0;
    };
    std::map<std::string, Dev> devices;
    uint64_t dma_limit = 0;
  };
  absl::StatusOr<PoolFacts> ReadPool() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status UnprepareLocked(const std::string& uid)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The driver's leases at physpoold (all pages), by id -> label.
  absl::StatusOr<std::map<std::string, std::string>> ListLeases()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ReleaseLease(const std::string& id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<nlohmann::json> GetClaim(const std::string& ns,
                                          const std::string& name);
  absl::Status WriteClaimFiles(const ClaimRecord& r)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveClaimFiles(const std::string& uid);
  std::vector<PreparedDevice> DevicesOf(const ClaimRecord& r) const;
  std::unique_ptr<grpc::ClientContext> Context() const;
  std::string SliceName() const;
  std::string CdiKind() const { return opts_.driver_name + "/claim"; }

  const DriverOptions opts_;
  std::unique_ptr<v1::Pool::Stub> pool_;
  std::unique_ptr<KubeClient> kube_;
  absl::Mutex mu_;
  ClaimState state_ ABSL_GUARDED_BY(mu_);
  nlohmann::json published_ ABSL_GUARDED_BY(mu_);  // last slice spec sent
  std::string slice_version_ ABSL_GUARDED_BY(mu_);
  int64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  // The Node's UID, for the slice's owner reference ("" until known).
  std::string node_uid_ ABSL_GUARDED_BY(mu_);
  nlohmann::json devices_ ABSL_GUARDED_BY(mu_);
};

}  // namespace physpool::dra

#endif  // PHYSPOOL_DRA_DRIVER_H_
