// SPDX-License-Identifier: Apache-2.0
// The DRA driver's logic, between kubelet, the API server and physpoold:
// NodePrepareResources / NodeUnprepareResources for claims (a lease per
// allocated request, a CDI spec per claim), the cleanup pass (cleanup.h),
// the lease renewals and the node's ResourceSlice (slice_publisher.h).
// docs/kubernetes.md describes it.
//
// physpoold sees the driver as one tenant; each claim's leases carry an
// access token of their own (AllocateRequest.access_token_sha256) that the
// claim's containers get as a file, so they reach their leases and nothing
// else.
//
// State: the claim records (ClaimState, on disk), the slice publisher, the
// pool as last read. Thread safety: thread-safe; one lock serialises
// claims, cleanup, renewals and publishing (kubelet's calls are rare and
// short; a slow physpoold call holds it). I/O: gRPC to physpoold, HTTPS to
// the API server, the claim files and the state file.
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
#include "dra/dma_config.h"
#include "dra/driver_options.h"
#include "dra/kube_client.h"
#include "dra/pool_facts.h"
#include "dra/slice_publisher.h"
#include "nlohmann/json.hpp"
#include "physpool/v1/physpool.grpc.pb.h"

namespace physpool::dra {

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

  // The cleanup pass (cleanup.h). Called at start (before kubelet can
  // call) and every --cleanup-interval.
  absl::Status Cleanup();
  // Renews the leases of prepared claims, and those of claims being
  // prepared (by label) (every ttl / 3).
  void RenewAll();
  // Publishes the node's ResourceSlice if it changed (or `force`: the
  // same content again, which re-creates a slice someone deleted). The
  // slice is owned by its Node, so it goes when the node object goes.
  // physpoold unreachable or NOT_SERVING: the devices last seen, with
  // capacity 0 and schedulable false (nothing if none was ever seen).
  absl::Status Publish(bool force = false);

  // The slice's devices as last computed (for tests and logs).
  nlohmann::json DevicesForTest();

 private:
  // Prepare's phases, in order (each under mu_).
  //
  // 1. What the record says: an interrupted Unprepare is finished (*rec
  //    reset); a prepared claim whose leases all live answers its devices
  //    again (returned); one whose lease ended goes back to kPreparing.
  absl::StatusOr<std::optional<std::vector<PreparedDevice>>> ResumeRecord(
      const std::string& uid, std::optional<ClaimRecord>* rec)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // 2. The claim's results for this driver, checked against the API
  //    server's claim and this node's pool, with their configs.
  struct Allocation {
    std::vector<ClaimResult> results;
    std::vector<DmaConfig> configs;  // one per result
    PoolFacts facts;
  };
  absl::StatusOr<Allocation> ReadAllocation(const std::string& ns,
                                            const std::string& uid,
                                            const std::string& name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // 3. The record (kPreparing) with request ids and the token, before the
  //    first Allocate.
  absl::Status RecordPreparing(const std::string& ns, const std::string& uid,
                               const std::string& name, const Allocation& alloc,
                               std::optional<ClaimRecord>* rec)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // 4. A lease per result (a retry gets the same lease by request id).
  absl::Status AllocateLeases(const std::string& ns, const std::string& uid,
                              const std::string& name, const Allocation& alloc,
                              ClaimRecord* rec)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // 5. The claim's files, then the record kPrepared.
  absl::StatusOr<std::vector<PreparedDevice>> CommitPrepared(ClaimRecord* rec)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The pool; `wait` false fails at once when physpoold is not reachable.
  absl::StatusOr<PoolFacts> ReadPool(bool wait = true)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // physpoold's grpc.health.v1 status: OK serving, UNAVAILABLE not
  // serving or not reachable (a daemon without the service: OK).
  absl::Status CheckServing();
  absl::Status UnprepareLocked(const std::string& uid)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The driver's leases at physpoold (all pages), by id -> label.
  absl::StatusOr<std::map<std::string, std::string>> ListLeases()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ReleaseLease(const std::string& id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<nlohmann::json> GetClaim(const std::string& ns,
                                          const std::string& name);
  std::vector<PreparedDevice> DevicesOf(const ClaimRecord& r) const;
  std::unique_ptr<grpc::ClientContext> Context(bool wait = true) const;

  const DriverOptions opts_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Pool::Stub> pool_;
  std::unique_ptr<KubeClient> kube_;
  absl::Mutex mu_;
  ClaimState state_ ABSL_GUARDED_BY(mu_);
  SlicePublisher slices_ ABSL_GUARDED_BY(mu_);
  // The pool as last read for the slice (for publishing "not serving").
  std::optional<PoolFacts> last_pool_ ABSL_GUARDED_BY(mu_);
  bool serving_ ABSL_GUARDED_BY(mu_) = true;  // as last published
  nlohmann::json devices_ ABSL_GUARDED_BY(mu_);
};

}  // namespace physpool::dra

#endif  // PHYSPOOL_DRA_DRIVER_H_
