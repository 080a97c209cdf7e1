// A full disk, for tests (LD_PRELOAD): write() and fsync() on a file whose
// path contains $MTRANK_TEST_FULL_PATH fail with ENOSPC, as on a file system
// that has run out of space (fsync is where delayed allocation reports it).
// Everything else goes to libc. Used by tests/common/disk_full_test.sh.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int on_full_disk(int fd) {
  const char* match = getenv("MTRANK_TEST_FULL_PATH");
  if (!match || !*match || fd < 0) return 0;
  char link[64], path[PATH_MAX];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  const ssize_t len = readlink(link, path, sizeof path - 1);
  if (len <= 0) return 0;
  path[len] = '\0';
  return strstr(path, match) != NULL;
}

ssize_t write(int fd, const void* buf, size_t n) {
  static ssize_t (*real_write)(int, const void*, size_t);
  if (!real_write) real_write = (ssize_t(*)(int, const void*, size_t))dlsym(RTLD_NEXT, "write");
  if (on_full_disk(fd)) {
    errno = ENOSPC;
    return -1;
  }
  return real_write(fd, buf, n);
}

int fsync(int fd) {
  static int (*real_fsync)(int);
  if (!real_fsync) real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  if (on_full_disk(fd)) {
    errno = ENOSPC;
    return -1;
  }
  return real_fsync(fd);
}
