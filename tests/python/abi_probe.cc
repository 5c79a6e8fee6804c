// SPDX-License-Identifier: Apache-2.0
// Prints the size and each field's offset and size of the structures of
// physpool/physpool.h as the compiler lays them out, as JSON:
//   {"physpool_run": {"size": 24, "fields": {"iova": [0, 8], ...}}, ...}
// The Python package's test compares them with its ctypes mirror
// (python/physpool/_lib.py): a field laid out differently, or one added to
// the header (the size changes; list it here and there), fails.
#include <cstddef>
#include <cstdio>

#include "physpool/physpool.h"

namespace {

bool first_struct = true;
bool first_field = true;

void Begin(const char* name, size_t size) {
  std::printf("%s\"%s\": {\"size\": %zu, \"fields\": {",
              first_struct ? "{" : ", ", name, size);
  first_struct = false;
  first_field = true;
}

void Field(const char* name, size_t offset, size_t size) {
  std::printf("%s\"%s\": [%zu, %zu]", first_field ? "" : ", ", name, offset,
              size);
  first_field = false;
}

void End() { std::printf("}}"); }

}  // namespace

#define STRUCT(S) Begin(#S, sizeof(S))
#define FIELD(S, F) \
  Field(#F, offsetof(S, F), sizeof(static_cast<S*>(nullptr)->F))

int main() {
  STRUCT(physpool_run);
  FIELD(physpool_run, iova);
  FIELD(physpool_run, bytes);
  FIELD(physpool_run, cpu);
  End();

  STRUCT(physpool_alloc_options);
  FIELD(physpool_alloc_options, bytes);
  FIELD(physpool_alloc_options, alignment);
  FIELD(physpool_alloc_options, boundary);
  FIELD(physpool_alloc_options, max_segments);
  FIELD(physpool_alloc_options, low);
  FIELD(physpool_alloc_options, high);
  FIELD(physpool_alloc_options, use_numa_node);
  FIELD(physpool_alloc_options, numa_node);
  FIELD(physpool_alloc_options, numa_strict);
  FIELD(physpool_alloc_options, preemptible);
  FIELD(physpool_alloc_options, may_reclaim);
  FIELD(physpool_alloc_options, wait_timeout_ms);
  FIELD(physpool_alloc_options, ttl_seconds);
  FIELD(physpool_alloc_options, label);
  End();

  STRUCT(physpool_connect_options);
  FIELD(physpool_connect_options, endpoint);
  FIELD(physpool_connect_options, token);
  FIELD(physpool_connect_options, token_file);
  FIELD(physpool_connect_options, tls_ca);
  FIELD(physpool_connect_options, tls_cert);
  FIELD(physpool_connect_options, tls_key);
  FIELD(physpool_connect_options, fd_socket);
  FIELD(physpool_connect_options, timeout_ms);
  FIELD(physpool_connect_options, allocate_attempts);
  End();

  STRUCT(physpool_arena_options);
  FIELD(physpool_arena_options, region);
  FIELD(physpool_arena_options, max_bytes);
  FIELD(physpool_arena_options, idle_release_ms);
  FIELD(physpool_arena_options, next_fit);
  End();

  STRUCT(physpool_buffer_options);
  FIELD(physpool_buffer_options, bytes);
  FIELD(physpool_buffer_options, alignment);
  FIELD(physpool_buffer_options, boundary);
  FIELD(physpool_buffer_options, max_segments);
  End();

  std::printf("}\n");
  return 0;
}
