/* SPDX-License-Identifier: Apache-2.0 */
/* The C API from a C program (compiled as C): NULL arguments, an
 * out-of-range run index, zero-initialised options meaning "any NUMA node",
 * an arena's zero-initialised options.
 * Run by ClientTest.CApiFromC against a real daemon.
 * usage: c_api_test ENDPOINT TOKEN NODE1_LOW NODE1_HIGH
 *   NODE1_LOW/HIGH: the IOVA range [low, high) of the daemon's NUMA node 1.
 * Prints "FAIL: ..." per failed check; exit 0 only if all passed. */
#include <physpool/physpool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

#define CHECK(cond)                                                       \
  do {                                                                    \
    if (!(cond)) {                                                        \
      printf("FAIL: line %d: %s (last error: \"%s\")\n", __LINE__, #cond, \
             physpool_last_error());                                      \
      failures++;                                                         \
    }                                                                     \
  } while (0)

static int error_has(const char* needle) {
  return strstr(physpool_last_error(), needle) != NULL;
}

static int zero_run(physpool_run r) {
  return r.iova == 0 && r.bytes == 0 && r.cpu == NULL;
}

int main(int argc, char** argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: c_api_test ENDPOINT TOKEN NODE1_LOW NODE1_HIGH\n");
    return 2;
  }
  const char* endpoint = argv[1];
  const char* token = argv[2];
  const uint64_t node1_low = strtoull(argv[3], NULL, 0);
  const uint64_t node1_high = strtoull(argv[4], NULL, 0);
  physpool_client* c = (physpool_client*)&failures; /* must become NULL */
  physpool_region* r = (physpool_region*)&failures;
  physpool_region* r2 = NULL;
  physpool_alloc_options o = {0};
  physpool_run run;
  size_t n;

  /* NULL arguments: INVALID_ARGUMENT naming the argument, or nothing. */
  CHECK(physpool_connect(endpoint, token, NULL) == 3);
  CHECK(error_has("physpool_connect: out is NULL"));
  physpool_disconnect(NULL);
  physpool_region_free(NULL);
  CHECK(physpool_region_run_count(NULL) == 0);
  CHECK(error_has("region is NULL"));
  CHECK(zero_run(physpool_region_run(NULL, 0)));
  CHECK(strcmp(physpool_region_lease_id(NULL), "") == 0);
  CHECK(physpool_region_revoked(NULL) == -1);

  CHECK(physpool_connect("unix:/nonexistent/physpool.sock", token, &c) == 14);
  CHECK(c == NULL);
  CHECK(physpool_connect(endpoint, token, &c) == 0);
  if (c == NULL) {
    printf("c_api_test: cannot connect, %d FAILURES\n", failures + 1);
    return 1;
  }
  CHECK(physpool_alloc(NULL, &o, NULL, NULL, &r) == 3);
  CHECK(error_has("physpool_alloc: client is NULL"));
  CHECK(r == NULL);
  CHECK(physpool_alloc(c, NULL, NULL, NULL, &r) == 3);
  CHECK(error_has("physpool_alloc: options is NULL"));
  CHECK(physpool_alloc(c, &o, NULL, NULL, NULL) == 3);
  CHECK(error_has("physpool_alloc: out is NULL"));

  /* Zero-initialised options: defaults, any NUMA node. */
  o.bytes = 3 * 65536;
  o.label = "c_api_test";
  CHECK(physpool_alloc(c, &o, NULL, NULL, &r) == 0);
  n = physpool_region_run_count(r);
  CHECK(n >= 1);
  if (r != NULL && n >= 1) {
    run = physpool_region_run(r, n - 1);
    CHECK(run.cpu != NULL && run.bytes > 0);
    memset(run.cpu, 0xab, run.bytes);
    /* Out of range: a zero run and a message, no crash or exception. */
    CHECK(zero_run(physpool_region_run(r, n)));
    CHECK(error_has("out of range"));
    CHECK(zero_run(physpool_region_run(r, (size_t)-1)));
    CHECK(physpool_region_revoked(r) == 0);
    CHECK(strncmp(physpool_region_lease_id(r), "l-", 2) == 0);
    /* Attach: the same lease mapped a second time, the same bytes; freeing
     * it only unmaps (the lease stays the first region's). */
    CHECK(physpool_attach(NULL, physpool_region_lease_id(r), &r2) == 3);
    CHECK(error_has("physpool_attach: client is NULL"));
    CHECK(physpool_attach(c, "l-0000000000000000", &r2) == 5);
    CHECK(r2 == NULL);
    CHECK(physpool_attach(c, physpool_region_lease_id(r), &r2) == 0);
    CHECK(physpool_region_run_count(r2) == n);
    if (r2 != NULL && physpool_region_run_count(r2) == n) {
      physpool_run again = physpool_region_run(r2, n - 1);
      CHECK(again.iova == run.iova && again.bytes == run.bytes);
      CHECK(again.cpu != run.cpu && memcmp(again.cpu, run.cpu, run.bytes) == 0);
    }
    physpool_region_free(r2);
    CHECK(physpool_attach(c, physpool_region_lease_id(r), &r2) == 0);
    physpool_region_free(r2);
  }
  physpool_region_free(r);

  /* numa_strict without use_numa_node: zero means "no node", so the
   * daemon refuses the strictness (with numa_node 0 meaning node 0, it
   * would have been served from node 0). */
  o.numa_strict = 1;
  CHECK(physpool_alloc(c, &o, NULL, NULL, &r) == 3);
  CHECK(r == NULL);
  /* A chosen node, strictly: served from node 1's memory. */
  o.use_numa_node = 1;
  o.numa_node = 1;
  CHECK(physpool_alloc(c, &o, NULL, NULL, &r) == 0);
  if (r != NULL) {
    run = physpool_region_run(r, 0);
    CHECK(run.iova >= node1_low && run.iova + run.bytes <= node1_high);
    physpool_region_free(r);
  }

  /* Arenas: zero-initialised options are the defaults (one page-aligned
   * run per buffer); an arena on NUMA node 1 places buffers there. */
  {
    physpool_arena_options ao = {0};
    physpool_buffer_options bo = {0};
    physpool_arena* arena = (physpool_arena*)&failures;
    physpool_buffer* b = (physpool_buffer*)&failures;
    CHECK(physpool_arena_create(c, &ao, NULL, NULL, &arena) == 3);
    CHECK(arena == NULL);
    CHECK(error_has("bytes must be > 0"));
    ao.region.bytes = 1 << 20;
    ao.region.use_numa_node = 1;
    ao.region.numa_node = 1;
    ao.region.numa_strict = 1;
    CHECK(physpool_arena_create(c, &ao, NULL, NULL, &arena) == 0);
    CHECK(physpool_buffer_alloc(arena, &bo, &b) == 3); /* bytes 0 */
    CHECK(b == NULL);
    bo.bytes = 5000;
    CHECK(physpool_buffer_alloc(arena, &bo, &b) == 0);
    CHECK(physpool_buffer_run_count(b) == 1);
    run = physpool_buffer_run(b, 0);
    CHECK(run.bytes == 8192 && run.iova % 4096 == 0);
    CHECK(run.iova >= node1_low && run.iova + run.bytes <= node1_high);
    memset(run.cpu, 0x5a, run.bytes);
    CHECK(zero_run(physpool_buffer_run(b, 1)));
    CHECK(physpool_buffer_lost(b) == 0);
    CHECK(physpool_buffer_id(NULL) == 0);
    physpool_buffer_free(b);
    physpool_buffer_free(NULL);
    physpool_arena_destroy(arena);
    physpool_arena_destroy(NULL);
  }
  physpool_disconnect(c);

  if (failures) {
    printf("c_api_test: %d FAILURES\n", failures);
  } else {
    printf("c_api_test: PASS\n");
  }
  return failures ? 1 : 0;
}
