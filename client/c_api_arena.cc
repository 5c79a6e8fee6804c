// SPDX-License-Identifier: Apache-2.0
// The C API's arenas (physpool/physpool.h, "Arenas") over physpool::Arena.
// Every body runs inside Guarded (client/c_api_util.h).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/c_api_util.h"
#include "physpool/client.h"
#include "physpool/physpool.h"

struct physpool_arena {
  std::unique_ptr<physpool::Arena> arena;
};
struct physpool_buffer {
  physpool::Buffer buffer;
};

using namespace physpool::c_api;  // NOLINT: the helpers of this file

extern "C" {

int physpool_arena_create(physpool_client* client,
                          const physpool_arena_options* options,
                          physpool_arena_lost_fn on_lost, void* user,
                          physpool_arena** out) {
  return Guarded("physpool_arena_create", kInternal, [&] {
    if (out == nullptr) return NullArgument("physpool_arena_create", "out");
    *out = nullptr;
    if (client == nullptr) {
      return NullArgument("physpool_arena_create", "client");
    }
    if (options == nullptr) {
      return NullArgument("physpool_arena_create", "options");
    }
    physpool::ArenaOptions o;
    static_cast<physpool::AllocateOptions&>(o) = FromC(options->region);
    o.max_bytes = options->max_bytes;
    if (options->idle_release_ms != 0) {
      o.idle_release = std::chrono::milliseconds(options->idle_release_ms);
    }
    o.best_fit = options->next_fit == 0;
    if (on_lost != nullptr) {
      o.on_lost = [on_lost, user](const physpool::ArenaLoss& l) {
        on_lost(l.lease_id.c_str(), l.kind.c_str(), l.reason.c_str(),
                l.deadline_unix_ms, l.buffers.data(), l.buffers.size(), user);
      };
    }
    auto a = client->client->CreateArena(std::move(o));
    if (!a.ok()) return Fail(a.status());
    *out = new physpool_arena{*std::move(a)};
    return 0;
  });
}

void physpool_arena_destroy(physpool_arena* arena) {
  Guarded("physpool_arena_destroy", 0, [&] {
    delete arena;
    return 0;
  });
}

int physpool_buffer_alloc(physpool_arena* arena,
                          const physpool_buffer_options* options,
                          physpool_buffer** out) {
  return Guarded("physpool_buffer_alloc", kInternal, [&] {
    if (out == nullptr) return NullArgument("physpool_buffer_alloc", "out");
    *out = nullptr;
    if (arena == nullptr) return NullArgument("physpool_buffer_alloc", "arena");
    if (options == nullptr) {
      return NullArgument("physpool_buffer_alloc", "options");
    }
    physpool::BufferOptions o;
    o.bytes = options->bytes;
    o.alignment = options->alignment;
    o.boundary = options->boundary;
    o.max_segments = options->max_segments == 0 ? 1
                     : options->max_segments == UINT32_MAX
                         ? 0
                         : options->max_segments;
    auto b = arena->arena->Allocate(o);
    if (!b.ok()) return Fail(b.status());
    *out = new physpool_buffer{*std::move(b)};
    return 0;
  });
}

size_t physpool_buffer_run_count(const physpool_buffer* buffer) {
  return Guarded("physpool_buffer_run_count", size_t{0}, [&] {
    if (buffer == nullptr) {
      NullArgument("physpool_buffer_run_count", "buffer");
      return size_t{0};
    }
    return buffer->buffer.runs().size();
  });
}

physpool_run physpool_buffer_run(const physpool_buffer* buffer, size_t i) {
  const physpool_run none = {0, 0, nullptr};
  return Guarded("physpool_buffer_run", none, [&] {
    if (buffer == nullptr) {
      NullArgument("physpool_buffer_run", "buffer");
      return none;
    }
    const auto runs = buffer->buffer.runs();
    if (i >= runs.size()) {
      last_error =
          absl::StrCat("physpool_buffer_run: run ", i,
                       " is out of range (the buffer has ", runs.size(), ")");
      return none;
    }
    return physpool_run{runs[i].iova, runs[i].bytes, runs[i].cpu};
  });
}

uint64_t physpool_buffer_id(const physpool_buffer* buffer) {
  return Guarded("physpool_buffer_id", uint64_t{0}, [&] {
    if (buffer == nullptr) {
      NullArgument("physpool_buffer_id", "buffer");
      return uint64_t{0};
    }
    return buffer->buffer.id();
  });
}

int physpool_buffer_lost(const physpool_buffer* buffer) {
  return Guarded("physpool_buffer_lost", -1, [&] {
    if (buffer == nullptr) {
      NullArgument("physpool_buffer_lost", "buffer");
      return -1;
    }
    return buffer->buffer.lost() ? 1 : 0;
  });
}

void physpool_buffer_free(physpool_buffer* buffer) {
  Guarded("physpool_buffer_free", 0, [&] {
    delete buffer;
    return 0;
  });
}

}  // extern "C"
