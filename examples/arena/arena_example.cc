// SPDX-License-Identifier: Apache-2.0
// An arena over one 8 MiB lease: a DMA buffer per job without an RPC.
//   PHYSPOOL_ENDPOINT=unix:/run/physpool/physpool.sock ./arena_example 64
// Allocates that many buffers of assorted sizes (some 64 KiB aligned, some
// that must not cross a 1 MiB boundary: a descriptor ring), fills each
// through its CPU pointer, checks none was overwritten by another, frees
// them. Prints one line per buffer and "arena: ok".
#include <physpool/client.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

int main(int argc, char** argv) {
  const int jobs = argc > 1 ? std::atoi(argv[1]) : 16;
  auto client = physpool::Client::Connect({});
  if (!client.ok()) {
    std::fprintf(stderr, "connect: %s\n", client.status().ToString().c_str());
    return 1;
  }
  physpool::ArenaOptions ao;
  ao.bytes = 8 << 20;
  ao.label = "arena-example";
  ao.max_bytes = 32 << 20;  // grow up to four leases
  ao.on_lost = [](const physpool::ArenaLoss& loss) {
    // Stop the device before returning: the memory goes right after.
    std::fprintf(stderr, "lease %s %s: %zu buffers lost\n",
                 loss.lease_id.c_str(), loss.kind.c_str(), loss.buffers.size());
  };
  auto arena = (*client)->CreateArena(ao);
  if (!arena.ok()) {
    std::fprintf(stderr, "arena: %s\n", arena.status().ToString().c_str());
    return 1;
  }
  std::vector<physpool::Buffer> buffers;
  for (int i = 0; i < jobs; ++i) {
    physpool::BufferOptions o;
    o.bytes = 4096u << (i % 8);              // 4 KiB .. 512 KiB
    if (i % 3 == 0) o.alignment = 64 << 10;  // 64 KiB aligned IOVA
    if (i % 5 == 0) o.boundary = 1 << 20;    // within one 1 MiB window
    auto b = (*arena)->Allocate(o);
    if (!b.ok()) {
      std::fprintf(stderr, "buffer %d: %s\n", i, b.status().ToString().c_str());
      return 1;
    }
    const physpool::Buffer::Run& run = b->runs()[0];
    std::printf("buffer %d: iova 0x%llx bytes %llu\n", i,
                static_cast<unsigned long long>(run.iova),
                static_cast<unsigned long long>(run.bytes));
    std::memset(run.cpu, i & 0xff, run.bytes);  // program_dma(run.iova, ...)
    buffers.push_back(*std::move(b));
  }
  for (size_t i = 0; i < buffers.size(); ++i) {
    const auto* p = static_cast<const unsigned char*>(buffers[i].runs()[0].cpu);
    for (uint64_t k = 0; k < buffers[i].bytes(); ++k) {
      if (p[k] != (i & 0xff)) {
        std::fprintf(stderr, "buffer %zu overwritten at byte %llu\n", i,
                     static_cast<unsigned long long>(k));
        return 1;
      }
    }
  }
  buffers.clear();  // ~Buffer frees; then ~Arena releases the lease
  std::printf("arena: ok\n");
  return 0;
}
