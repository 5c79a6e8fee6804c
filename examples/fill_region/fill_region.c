/* SPDX-License-Identifier: Apache-2.0 */
/* Leases a DMA region, fills it through its CPU mapping, prints the IOVAs a
 * device would be programmed with, checks the bytes, releases it.
 * usage: fill_region [BYTES]   (PHYSPOOL_ENDPOINT / PHYSPOOL_TOKEN as needed)
 */
#include <physpool/physpool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char** argv) {
  physpool_client* client;
  int rc = physpool_connect(NULL, NULL, &client);
  if (rc != 0) {
    fprintf(stderr, "connect: %s (code %d)\n", physpool_last_error(), rc);
    return 1;
  }
  physpool_alloc_options o;
  memset(&o, 0, sizeof o);
  o.bytes = argc > 1 ? strtoull(argv[1], NULL, 0) : (1u << 20);
  o.alignment = 1u << 16;
  o.label = "fill_region example";
  physpool_region* region;
  rc = physpool_alloc(client, &o, NULL, NULL, &region);
  if (rc != 0) {
    fprintf(stderr, "alloc: %s (code %d)\n", physpool_last_error(), rc);
    physpool_disconnect(client);
    return 1;
  }
  printf("lease %s\n", physpool_region_lease_id(region));
  int ok = 1;
  for (size_t i = 0; i < physpool_region_run_count(region); i++) {
    physpool_run run = physpool_region_run(region, i);
    memset(run.cpu, 0x5a, run.bytes);
    const unsigned char* p = run.cpu;
    for (uint64_t k = 0; k < run.bytes; k++) ok &= p[k] == 0x5a;
    printf("run %zu: iova 0x%llx bytes %llu\n", i, (unsigned long long)run.iova,
           (unsigned long long)run.bytes);
  }
  printf(ok ? "filled and verified\n" : "VERIFY FAILED\n");
  physpool_region_free(region);
  physpool_disconnect(client);
  return ok ? 0 : 1;
}
