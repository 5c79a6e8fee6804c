// SPDX-License-Identifier: Apache-2.0
// The tenant side of a DRA claim, as a pod's process runs it: started with
// the environment and mounts of the claim's CDI spec (PHYSPOOL_ENDPOINT,
// PHYSPOOL_TOKEN_FILE, PHYSPOOL_LEASE), it gets its memory with the client
// library and no token handling of its own.
//   dra_tenant fill BYTE     attach $PHYSPOOL_LEASE, fill every run with
//                            BYTE, read it back; prints "ok <lease> <bytes>
//                            <runs>"
//   dra_tenant denied LEASE  the claim's token may not allocate, attach
//                            LEASE (another's) or open a device; prints
//                            "denied" for each refusal
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "physpool/client.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: dra_tenant fill BYTE | denied LEASE\n");
    return 2;
  }
  auto client = physpool::Client::Connect({});
  if (!client.ok()) {
    fprintf(stderr, "connect: %s\n", client.status().ToString().c_str());
    return 1;
  }
  const std::string mode = argv[1];
  if (mode == "fill") {
    const int byte = std::atoi(argv[2]);
    auto region = (*client)->Attach();
    if (!region.ok()) {
      fprintf(stderr, "attach: %s\n", region.status().ToString().c_str());
      return 1;
    }
    for (const auto& run : (*region)->runs()) {
      std::memset(run.cpu, byte, run.bytes);
    }
    for (const auto& run : (*region)->runs()) {
      const auto* p = static_cast<const unsigned char*>(run.cpu);
      for (uint64_t i = 0; i < run.bytes; ++i) {
        if (p[i] != byte) {
          fprintf(stderr, "run at iova %llx: byte %llu reads %d\n",
                  static_cast<unsigned long long>(run.iova),
                  static_cast<unsigned long long>(i), p[i]);
          return 1;
        }
      }
    }
    printf("ok %s %llu %zu\n", (*region)->lease_id().c_str(),
           static_cast<unsigned long long>((*region)->bytes()),
           (*region)->runs().size());
    return 0;
  }
  if (mode == "denied") {
    int refused = 0;
    physpool::AllocateOptions o;
    o.bytes = 4096;
    auto a = (*client)->Allocate(o);
    if (!a.ok() && absl::IsPermissionDenied(a.status())) {
      printf("denied allocate: %s\n",
             std::string(a.status().message()).c_str());
      ++refused;
    } else {
      printf("allowed allocate: %s\n", a.status().ToString().c_str());
    }
    auto other = (*client)->Attach(argv[2]);
    if (!other.ok() && (absl::IsPermissionDenied(other.status()) ||
                        absl::IsNotFound(other.status()))) {
      printf("denied attach: %s\n",
             std::string(other.status().message()).c_str());
      ++refused;
    } else {
      printf("allowed attach: %s\n", other.status().ToString().c_str());
    }
    auto runs = (*client)->LeaseRuns(argv[2]);
    if (!runs.ok()) {
      printf("denied lease-runs: %s\n",
             std::string(runs.status().message()).c_str());
      ++refused;
    } else {
      printf("allowed lease-runs\n");
    }
    return refused == 3 ? 0 : 1;
  }
  fprintf(stderr, "unknown mode %s\n", mode.c_str());
  return 2;
}
