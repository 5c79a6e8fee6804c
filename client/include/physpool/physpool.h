/* SPDX-License-Identifier: Apache-2.0 */
/* physpool-client C API: lease DMA memory from physpoold from C.
 *
 *   physpool_client* c;
 *   if (physpool_connect(NULL, NULL, &c) != 0) fail(physpool_last_error());
 *   physpool_alloc_options o = {0};       // zero = defaults, any NUMA node
 *   o.bytes = 1 << 20;
 *   physpool_region* r;
 *   if (physpool_alloc(c, &o, NULL, NULL, &r) != 0)
 *     fail(physpool_last_error());
 *   for (size_t i = 0; i < physpool_region_run_count(r); i++) {
 *     physpool_run run = physpool_region_run(r, i);  // run.iova, run.cpu
 *   }
 *   physpool_region_free(r);  // releases the lease, unmaps
 *   physpool_disconnect(c);
 *
 * Functions returning int return 0 on success or a gRPC status code
 * (3 = INVALID_ARGUMENT, 8 = RESOURCE_EXHAUSTED, 14 = UNAVAILABLE, ...);
 * physpool_last_error() then describes the failure (per thread). A NULL
 * where an object is required is INVALID_ARGUMENT (3) with a message naming
 * the argument; functions that return something else say below what they
 * return for NULL. No function lets a C++ exception escape: an unexpected
 * one is INTERNAL (13). physpool_alloc retries like the C++ library (a
 * request id per call, retried on UNAVAILABLE/DEADLINE_EXCEEDED;
 * docs/client.md). Thread-safe.
 */
#ifndef PHYSPOOL_PHYSPOOL_H_
#define PHYSPOOL_PHYSPOOL_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct physpool_client physpool_client;
typedef struct physpool_region physpool_region;

typedef struct {
  uint64_t iova; /* what the device uses */
  uint64_t bytes;
  void* cpu; /* the same memory in this process */
} physpool_run;

/* All zero (`= {0}` or memset) means the defaults: page alignment, no
 * boundary, any number of runs, the whole IOVA range, any NUMA node, no
 * waiting, the daemon's TTL. */
typedef struct {
  uint64_t bytes;
  uint64_t alignment;    /* 0 = page size */
  uint64_t boundary;     /* 0 = none */
  uint32_t max_segments; /* 0 = any number of runs */
  uint64_t low, high;    /* IOVA window; high 0 = unbounded */
  int use_numa_node;     /* non-zero: prefer numa_node; 0: any node */
  int32_t numa_node;     /* the preferred node (with use_numa_node) */
  int numa_strict;       /* non-zero: only that node (needs use_numa_node) */
  int preemptible;
  int may_reclaim;
  uint32_t wait_timeout_ms; /* > 0: wait for memory this long */
  uint32_t ttl_seconds;     /* 0 = the daemon's default */
  const char* label;        /* may be NULL */
} physpool_alloc_options;

/* Called once if the daemon takes the region back; kind is "revoked",
 * "preempted", "expired" or "lost". Do not free the region from inside. */
typedef void (*physpool_revoked_fn)(const char* lease_id, const char* kind,
                                    const char* reason,
                                    int64_t deadline_unix_ms, void* user);

/* endpoint and token may be NULL: the defaults and PHYSPOOL_* variables.
 * out must not be NULL; *out is NULL on failure. */
int physpool_connect(const char* endpoint, const char* token,
                     physpool_client** out);
/* Every ClientOptions knob (NULL strings and zeros: the defaults, as
 * physpool_connect(NULL, NULL)). */
typedef struct {
  const char* endpoint;   /* "unix:/path" or "host:port" */
  const char* token;      /* bearer token */
  const char* token_file; /* a file holding it */
  const char* tls_ca;     /* TCP with TLS: the CA (PEM file) */
  const char* tls_cert;   /* with tls_key: a client certificate (mTLS) */
  const char* tls_key;
  const char* fd_socket;      /* the daemon's fd socket; NULL: as it says */
  uint32_t timeout_ms;        /* per call; 0 = 10000 */
  uint32_t allocate_attempts; /* 0 = 5 */
} physpool_connect_options;

/* physpool_connect with every option. options and out must not be NULL;
 * *out is NULL on failure. */
int physpool_connect_with(const physpool_connect_options* options,
                          physpool_client** out);
/* NULL: does nothing. */
void physpool_disconnect(physpool_client* client);
/* The tenant the daemon took the credentials for; "" for NULL. */
const char* physpool_client_tenant(const physpool_client* client);
/* The daemon's page size in bytes; 0 for NULL. */
uint64_t physpool_client_page_size(const physpool_client* client);

/* client, options and out must not be NULL (on_revoked and user may be);
 * *out is NULL on failure. */
int physpool_alloc(physpool_client* client,
                   const physpool_alloc_options* options,
                   physpool_revoked_fn on_revoked, void* user,
                   physpool_region** out);
/* Maps a lease that exists already (Client::Attach): e.g. the one the DRA
 * driver allocated for this pod's claim. lease_id NULL or "": the
 * PHYSPOOL_LEASE variable. physpool_region_free then only unmaps (the
 * lease's owner renews and releases it). client and out must not be NULL;
 * *out is NULL on failure. */
int physpool_attach(physpool_client* client, const char* lease_id,
                    physpool_region** out);
/* The number of runs; 0 for NULL (and physpool_last_error says so). */
size_t physpool_region_run_count(const physpool_region* region);
/* Run i (0 <= i < physpool_region_run_count). For a NULL region or an i out
 * of range: a run of all zeros (cpu NULL, bytes 0), and physpool_last_error
 * says which. */
physpool_run physpool_region_run(const physpool_region* region, size_t i);
/* The lease id, valid while the region lives; "" for NULL. */
const char* physpool_region_lease_id(const physpool_region* region);
/* The lease's bytes (whole pages); 0 for NULL. */
uint64_t physpool_region_bytes(const physpool_region* region);
/* The request id it was allocated with (32 hex digits); "" for NULL. */
const char* physpool_region_request_id(const physpool_region* region);
/* 1 once the daemon took the region back, else 0; -1 for NULL. */
int physpool_region_revoked(const physpool_region* region);
/* Releases the lease and unmaps the memory (a region of physpool_attach:
 * unmaps only). NULL: does nothing. */
void physpool_region_free(physpool_region* region);

/* --- Arenas (docs/client.md, "Arenas"; physpool::Arena in C++) ---------
 * An arena leases a region once and places buffers in it inside this
 * process: a buffer costs no RPC, and its alignment and boundary hold in
 * IOVA space as the daemon's do. Thread-safe. */
typedef struct physpool_arena physpool_arena;
typedef struct physpool_buffer physpool_buffer;

/* All zero means: no growth, idle growth regions released after 5 s,
 * best-fit placement. */
typedef struct {
  physpool_alloc_options region; /* each lease (region.bytes > 0) */
  uint64_t max_bytes;       /* growth up to this many leased bytes; 0 = none */
  uint32_t idle_release_ms; /* 0 = 5000 */
  int next_fit;             /* non-zero: next fit instead of best fit */
} physpool_arena_options;

/* All zero except bytes means: page alignment, no boundary, one run. */
typedef struct {
  uint64_t bytes;
  uint64_t alignment;    /* 0 = page size (of the IOVA) */
  uint64_t boundary;     /* 0 = none */
  uint32_t max_segments; /* 0 = 1 run; UINT32_MAX = any number */
} physpool_buffer_options;

/* Called when one of the arena's leases is taken back, with the ids
 * (physpool_buffer_id) of the `count` live buffers it hit; their memory is
 * unmapped when it returns. Do not destroy the arena from inside. */
typedef void (*physpool_arena_lost_fn)(const char* lease_id, const char* kind,
                                       const char* reason,
                                       int64_t deadline_unix_ms,
                                       const uint64_t* buffers, size_t count,
                                       void* user);

/* client, options and out must not be NULL (on_lost and user may be);
 * *out is NULL on failure. */
int physpool_arena_create(physpool_client* client,
                          const physpool_arena_options* options,
                          physpool_arena_lost_fn on_lost, void* user,
                          physpool_arena** out);
/* Releases the arena's leases. With live buffers: an error, reported on
 * stderr; the leases stay until the last buffer is freed. NULL: nothing. */
void physpool_arena_destroy(physpool_arena* arena);
/* arena, options and out must not be NULL; *out is NULL on failure. */
int physpool_buffer_alloc(physpool_arena* arena,
                          const physpool_buffer_options* options,
                          physpool_buffer** out);
/* The number of runs; 0 for NULL (and physpool_last_error says so). */
size_t physpool_buffer_run_count(const physpool_buffer* buffer);
/* Run i, as physpool_region_run. */
physpool_run physpool_buffer_run(const physpool_buffer* buffer, size_t i);
/* Unique within its arena; 0 for NULL. */
uint64_t physpool_buffer_id(const physpool_buffer* buffer);
/* 1 once its lease was taken back (its memory is gone), else 0; -1 for
 * NULL. */
int physpool_buffer_lost(const physpool_buffer* buffer);
/* Returns the buffer to its arena. NULL: does nothing. */
void physpool_buffer_free(physpool_buffer* buffer);

/* The last failure's message on this thread ("" if none yet). */
const char* physpool_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* PHYSPOOL_PHYSPOOL_H_ */
