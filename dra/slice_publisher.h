// SPDX-License-Identifier: Apache-2.0
// The node's ResourceSlice (resource.k8s.io/v1): what its devices say
// (SliceDevices) and keeping the one slice at the API server equal to it
// (SlicePublisher). docs/kubernetes.md, "The ResourceSlice".
//
// One slice per node and driver, named "<node>-<driver>" with dots made
// dashes, pool = the node's name, owned by the Node object (so it goes
// with the node). A first publish lists the slices of this node and
// driver, adopts the one of that name and deletes the others; later ones
// PUT over the known resourceVersion, and a 404 or 409 starts over.
//
// State: the last devices written, the slice's resourceVersion, the pool
// generation, the Node's UID. Thread safety: none; the driver calls it
// under its lock. I/O: HTTPS to the API server through the KubeClient.
#ifndef PHYSPOOL_DRA_SLICE_PUBLISHER_H_
#define PHYSPOOL_DRA_SLICE_PUBLISHER_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "dra/kube_client.h"
#include "dra/pool_facts.h"
#include "nlohmann/json.hpp"

namespace physpool::dra {

// The standard attribute of a device's NUMA node (Kubernetes'
// k8s.io/dynamic-resource-allocation/deviceattribute): an int that other
// drivers publish too, so that a claim's matchAttribute can put DMA memory
// beside another driver's accelerator.
inline constexpr char kStandardNumaAttribute[] =
    "resource.kubernetes.io/numaNode";

// The slice's device list for `facts`. `serving` false (physpoold is
// unreachable or says NOT_SERVING): every device with capacity 0 and
// schedulable false. A device whose segments all drain: capacity 0,
// schedulable false. The scheduler cannot allocate from capacity 0 (every
// request consumes at least a page), so such a device is never picked;
// the attributes say why (docs/kubernetes.md).
nlohmann::json SliceDevices(const PoolFacts& facts, bool serving);

class SlicePublisher {
 public:
  // REQUIRES: `kube` outlives the publisher.
  SlicePublisher(std::string driver_name, std::string node_name,
                 const KubeClient* kube);

  // Writes the slice if `devices` differ from what was last written (or
  // `force`: the same again, which re-creates a slice someone deleted).
  // A change of content is a new pool generation.
  absl::Status Publish(const nlohmann::json& devices, bool force);

  std::string SliceName() const;

 private:
  absl::Status AdoptOrDeleteExisting();
  void LearnNodeUid();

  const std::string driver_name_, node_name_;
  const KubeClient* const kube_;
  nlohmann::json published_;   // last devices written
  std::string slice_version_;  // "" until a slice is known
  int64_t generation_ = 0;
  std::string node_uid_;  // "" until known: the slice then has no owner
};

}  // namespace physpool::dra

#endif  // PHYSPOOL_DRA_SLICE_PUBLISHER_H_
