/* Small helpers every part of the agent uses: complete writes and END payloads. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

int write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

void end_ok(int status_fd, const char *const *fields) {
  int failed = write_all(status_fd, "ok", 3);
  for (; fields && *fields && !failed; fields++) failed = write_all(status_fd, *fields, strlen(*fields) + 1);
  _exit(failed ? 1 : 0);
}

void end_error(int status_fd, const char *code, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (write_all(status_fd, "error", 6) == 0 && write_all(status_fd, code, strlen(code) + 1) == 0)
    write_all(status_fd, msg, strlen(msg) + 1);
  _exit(1);
}
