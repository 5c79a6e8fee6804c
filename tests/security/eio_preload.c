/* SPDX-License-Identifier: Apache-2.0 */
/* An LD_PRELOAD shim for the attack suite: reads of one file fail with EIO.
 *
 *   PHYSPOOL_EIO_PATH=/path/to/file PHYSPOOL_EIO_AFTER_BYTES=N
 *
 * pread/pread64/read of a descriptor of that file at or beyond offset N
 * return -1 with errno EIO, as a failing disk would; everything else is
 * passed on. Used to show that physpoold refuses a store it cannot read
 * whole (store_test.py) through the real binary and the real SQLite. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static int Faulty(int fd, off_t offset) {
  const char* path = getenv("PHYSPOOL_EIO_PATH");
  const char* after = getenv("PHYSPOOL_EIO_AFTER_BYTES");
  if (path == NULL || after == NULL) return 0;
  if (offset < (off_t)strtoll(after, NULL, 10)) return 0;
  char link[64], target[PATH_MAX];
  snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  const ssize_t n = readlink(link, target, sizeof(target) - 1);
  if (n <= 0) return 0;
  target[n] = '\0';
  return strcmp(target, path) == 0;
}

ssize_t pread64(int fd, void* buf, size_t count, off_t offset) {
  static ssize_t (*real)(int, void*, size_t, off_t);
  if (real == NULL) real = dlsym(RTLD_NEXT, "pread64");
  if (Faulty(fd, offset)) {
    errno = EIO;
    return -1;
  }
  return real(fd, buf, count, offset);
}

ssize_t pread(int fd, void* buf, size_t count, off_t offset) {
  static ssize_t (*real)(int, void*, size_t, off_t);
  if (real == NULL) real = dlsym(RTLD_NEXT, "pread");
  if (Faulty(fd, offset)) {
    errno = EIO;
    return -1;
  }
  return real(fd, buf, count, offset);
}

ssize_t read(int fd, void* buf, size_t count) {
  static ssize_t (*real)(int, void*, size_t);
  if (real == NULL) real = dlsym(RTLD_NEXT, "read");
  if (Faulty(fd, lseek(fd, 0, SEEK_CUR))) {
    errno = EIO;
    return -1;
  }
  return real(fd, buf, count);
}
