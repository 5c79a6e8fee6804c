// SPDX-License-Identifier: Apache-2.0
#include "bench/dpdk_heap.h"

#include <rte_lcore.h>
#include <rte_memory.h>

#include <algorithm>
#include <cstring>

namespace physpool::bench {
namespace {

constexpr uint64_t kPage = ChurnRequest::kPage;

int RangeOf(const rte_memseg_list* msl, void* arg) {
  auto* r = static_cast<std::pair<uint64_t, uint64_t>*>(arg);
  if (msl->len == 0) return 0;
  const uint64_t lo = reinterpret_cast<uint64_t>(msl->base_va);
  r->first = std::min(r->first, lo);
  r->second = std::max(r->second, lo + msl->len);
  return 0;
}

}  // namespace

std::optional<uint64_t> MallocTarget::Allocate(const ChurnRequest& r,
                                               uint64_t* handle) {
  uint64_t align = r.EffectiveAlignment();
  if (r.boundary != 0) align = std::max(align, NextPow2(r.bytes));
  void* p = rte_malloc_socket(nullptr, r.bytes, static_cast<unsigned>(align),
                              SOCKET_ID_ANY);
  if (p == nullptr) return std::nullopt;
  *handle = reinterpret_cast<uint64_t>(p);
  return rte_malloc_virt2iova(p);
}

void MallocTarget::Free(uint64_t handle) {
  rte_free(reinterpret_cast<void*>(handle));
}

std::pair<uint64_t, uint64_t> DpdkRange() {
  std::pair<uint64_t, uint64_t> range{~uint64_t{0}, 0};
  rte_memseg_list_walk(RangeOf, &range);
  return range;
}

rte_malloc_socket_stats HeapStats() {
  rte_malloc_socket_stats st{};
  rte_malloc_get_socket_stats(static_cast<int>(rte_socket_id()), &st);
  return st;
}

bool WarmUpHeap() {
  const size_t len = HeapStats().greatest_free_size / kPage * kPage - kPage;
  auto* p = static_cast<unsigned char*>(rte_malloc(nullptr, len, kPage));
  if (p == nullptr) return false;
  std::memset(p, 0xa5, len);
  rte_free(p);
  // The freed element is merged back into the heap; its bytes stay mapped.
  for (size_t i = 0; i < len; i += kPage) {
    if (p[i] != 0) return false;
  }
  return true;
}

}  // namespace physpool::bench
