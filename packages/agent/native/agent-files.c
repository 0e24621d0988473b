/*
 * execenv-agent: the file operations a forked worker runs (PROTOCOL.md,
 * Operations): dispatch, write, read, stat, readdir, mkdir and remove.
 * The tar operations live in agent-tar.c.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#ifndef _FILE_OFFSET_BITS
#define _FILE_OFFSET_BITS 64
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/sendfile.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent-tar.h"
#include "agent.h"

#ifndef O_TMPFILE
#define O_TMPFILE (020000000 | O_DIRECTORY)
#endif

/* SIGTERM arrives here (blocked, read through a signalfd) in operations that must clean up. */
static int term_fd = -1;
static int terminated;
/* A named temporary file of a write, removed when the write fails. */
static char *temp_name;

/* ---- shared helpers ------------------------------------------------------ */

/* Blocks SIGTERM and watches it through a signalfd, so no blocking call can miss it. */
static void catch_term(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  if (sigprocmask(SIG_BLOCK, &set, NULL) == 0) term_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

int term_requested(void) {
  if (terminated) return 1;
  if (term_fd < 0) return 0;
  struct signalfd_siginfo si;
  if (read(term_fd, &si, sizeof si) == (ssize_t)sizeof si) terminated = 1;
  return terminated;
}

int input_wait(int fd) {
  for (;;) {
    if (term_requested()) {
      errno = ECANCELED;
      return -1;
    }
    struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = term_fd, .events = POLLIN}};
    int n = poll(p, term_fd >= 0 ? 2 : 1, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (p[0].revents) return term_requested() ? (errno = ECANCELED, -1) : 0;
  }
}

ssize_t input_read(int fd, void *buf, size_t len) {
  for (;;) {
    if (input_wait(fd) < 0) return -1;
    ssize_t n = read(fd, buf, len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    return n;
  }
}

int parse_number(const char *s, int base, unsigned long long *out) {
  if (!s || !*s) return -1;
  unsigned long long v = 0;
  for (; *s; s++) {
    int d = *s - '0';
    if (d < 0 || d >= base) return -1;
    if (v > (ULLONG_MAX - (unsigned)d) / (unsigned)base) return -1;
    v = v * (unsigned)base + (unsigned)d;
  }
  *out = v;
  return 0;
}

void end_errno(int status_fd, const char *what, int e) {
  const char *code = "IO";
  if (e == ENOENT || e == ENOTDIR) code = "NOT_FOUND";
  if (e == ECANCELED) end_error(status_fd, "IO", "operation killed");
  if (e == EPIPE) end_error(status_fd, "IO", "output closed by the client");
  end_error(status_fd, code, "%s: %s", what, strerror(e));
}

/* Opens `name` below dirfd as a directory without following a symlink. */
static int open_dir_at(int dirfd, const char *name) {
  return openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* One level of a removal walk: the name of the directory entered and its identity. */
struct level {
  char *name;
  dev_t dev;
  ino_t ino;
};

/*
 * Empties the directory open as fd of everything but subdirectories and
 * returns the name of one subdirectory (malloc'd), NULL when none is left
 * (errno 0) or on failure (errno set).
 */
static char *clear_files(int fd) {
  int dup_fd = dup(fd);
  DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
  if (!d) {
    if (dup_fd >= 0) close(dup_fd);
    return NULL;
  }
  char *sub = NULL;
  int err = 0;
  struct dirent *de;
  while (!sub && !err && (errno = 0, de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    int is_dir = de->d_type == DT_DIR;
    if (de->d_type == DT_UNKNOWN) {
      struct stat st;
      if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) is_dir = S_ISDIR(st.st_mode);
    }
    if (is_dir) {
      if (!(sub = strdup(de->d_name))) err = errno;
    } else if (unlinkat(fd, de->d_name, 0) != 0 && errno != ENOENT) {
      err = errno;
    }
  }
  if (!sub && !err) err = errno;
  closedir(d);
  errno = err;
  return sub;
}

/* Grows the stack of levels by one; 0 or -1. */
static int push_level(struct level **stack, size_t *depth, size_t *cap, char *name, int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return -1;
  if (*depth == *cap) {
    size_t ncap = *cap ? *cap * 2 : 64;
    struct level *n = realloc(*stack, ncap * sizeof *n);
    if (!n) return -1;
    *stack = n;
    *cap = ncap;
  }
  (*stack)[(*depth)++] = (struct level){name, st.st_dev, st.st_ino};
  return 0;
}

/*
 * Removes the directory `name` below dirfd and its whole tree. Holds one
 * directory descriptor at a time, whatever the depth: it goes down closing
 * the parent and comes back up through "..", checking each parent is the
 * directory it left.
 */
static int remove_tree(int dirfd, const char *name) {
  struct level *stack = NULL;
  size_t depth = 0, cap = 0;
  int fd = open_dir_at(dirfd, name), rc = -1;
  if (fd < 0) return errno == ENOENT ? 0 : -1;
  char *top = strdup(name);
  if (!top || push_level(&stack, &depth, &cap, top, fd) != 0) goto out;
  for (;;) {
    char *sub = clear_files(fd);
    if (!sub && errno) goto out;
    if (sub) {
      int nfd = open_dir_at(fd, sub);
      if (nfd < 0) {
        int e = errno;
        /* Replaced by a non-directory meanwhile: remove that instead. */
        if ((e == ENOTDIR || e == ELOOP) && unlinkat(fd, sub, 0) == 0) {
          free(sub);
          continue;
        }
        free(sub);
        errno = e;
        if (e == ENOENT) continue;
        goto out;
      }
      if (push_level(&stack, &depth, &cap, sub, nfd) != 0) {
        free(sub);
        close(nfd);
        goto out;
      }
      close(fd);
      fd = nfd;
      continue;
    }
    if (depth == 1) {
      close(fd);
      fd = -1;
      rc = unlinkat(dirfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT ? 0 : -1;
      goto out;
    }
    int pfd = openat(fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0) goto out;
    close(fd);
    fd = pfd;
    struct stat st;
    struct level *parent = &stack[depth - 2];
    if (fstat(fd, &st) != 0) goto out;
    if (st.st_dev != parent->dev || st.st_ino != parent->ino) {
      errno = ESTALE; /* the tree moved while being removed */
      goto out;
    }
    depth--;
    if (unlinkat(fd, stack[depth].name, AT_REMOVEDIR) != 0 && errno != ENOENT) goto out;
    free(stack[depth].name);
  }
out:;
  int e = errno;
  if (fd >= 0) close(fd);
  for (size_t i = 0; i < depth; i++) free(stack[i].name);
  free(stack);
  errno = e;
  return rc;
}

int remove_at(int dirfd, const char *name) {
  struct stat st;
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return errno == ENOENT ? 0 : -1;
  if (S_ISDIR(st.st_mode)) return remove_tree(dirfd, name);
  return unlinkat(dirfd, name, 0) == 0 || errno == ENOENT ? 0 : -1;
}

/* ---- paths ------------------------------------------------------------- */

/* The malloc'd parent directory of an absolute path; NULL for "/" or a relative path. */
static char *dir_name(const char *path) {
  if (path[0] != '/') return NULL;
  size_t len = strlen(path);
  while (len > 1 && path[len - 1] == '/') len--;
  if (len == 1) return NULL;
  while (len > 0 && path[len - 1] != '/') len--;
  while (len > 1 && path[len - 1] == '/') len--;
  return strndup(path, len);
}

/* The last component of an absolute path as its own malloc'd string. */
static char *base_name(const char *path) {
  size_t len = strlen(path);
  while (len > 1 && path[len - 1] == '/') len--;
  size_t start = len;
  while (start > 0 && path[start - 1] != '/') start--;
  return strndup(path + start, len - start);
}

/* mkdir -p of every missing directory of `path` with `mode`; created ones are owned by us (root). */
static int make_dirs(const char *path, mode_t mode) {
  char *p = strdup(path);
  if (!p) return -1;
  int rc = 0;
  for (char *s = p + 1;; s++) {
    if (*s != '/' && *s != '\0') continue;
    char c = *s;
    *s = '\0';
    if (mkdir(p, mode) != 0) {
      struct stat st;
      if (errno != EEXIST || stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
        if (errno == EEXIST) errno = ENOTDIR;
        rc = -1;
        break;
      }
    } else if (chmod(p, mode) != 0) {
      rc = -1;
      break;
    }
    *s = c;
    if (c == '\0') break;
    while (s[1] == '/') s++;
    if (s[1] == '\0') break;
  }
  int e = errno;
  free(p);
  errno = e;
  return rc;
}

/* Follows a final symlink chain (as the kernel would); returns the malloc'd path of what it names. */
static char *follow_final(const char *path) {
  char *cur = strdup(path);
  for (int hops = 0; cur && hops < 40; hops++) {
    struct stat st;
    if (lstat(cur, &st) != 0 || !S_ISLNK(st.st_mode)) return cur;
    char target[PATH_MAX];
    ssize_t n = readlink(cur, target, sizeof target - 1);
    if (n < 0) return cur;
    target[n] = '\0';
    char *next;
    if (target[0] == '/') {
      next = strdup(target);
    } else {
      char *dir = dir_name(cur);
      if (!dir) return cur;
      size_t dl = strlen(dir);
      next = malloc(dl + (size_t)n + 2);
      if (next) sprintf(next, "%s%s%s", dir, dir[dl - 1] == '/' ? "" : "/", target);
      free(dir);
    }
    free(cur);
    cur = next;
  }
  if (cur) errno = ELOOP;
  free(cur);
  return NULL;
}

/* ---- write --------------------------------------------------------------- */

/* A random ".execenv-XXXXXX" name. */
static void temp_file_name(char out[32]) {
  static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  unsigned char r[6];
  if (getrandom(r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long v = (unsigned long)ts.tv_nsec ^ ((unsigned long)getpid() << 16);
    for (size_t i = 0; i < sizeof r; i++) r[i] = (unsigned char)(v >> (i * 5));
  }
  strcpy(out, ".execenv-");
  for (size_t i = 0; i < sizeof r; i++) out[9 + i] = chars[r[i] % (sizeof chars - 1)];
  out[15] = '\0';
}

/* Creates a named temporary file in dirfd (remembered in temp_name for removal); fd or -1. */
static int create_named_temp(int dirfd, const char *dir) {
  for (int tries = 0; tries < 100; tries++) {
    char name[32];
    temp_file_name(name);
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) continue;
    if (fd >= 0) {
      free(temp_name);
      temp_name = malloc(strlen(dir) + strlen(name) + 2);
      if (temp_name) sprintf(temp_name, "%s/%s", dir, name);
      if (!temp_name) {
        unlinkat(dirfd, name, 0);
        close(fd);
        return -1;
      }
    }
    return fd;
  }
  errno = EEXIST;
  return -1;
}

/* Removes the named temporary file, if any. */
static void drop_temp(void) {
  if (temp_name) unlink(temp_name);
  free(temp_name);
  temp_name = NULL;
}

/* Copies in_fd to fd until end of input: splice from the pipe when possible, else read/write. */
static int copy_input(int in_fd, int fd) {
  int use_splice = 1;
  static char *buf;
  for (;;) {
    if (input_wait(in_fd) < 0) return -1;
    if (use_splice) {
      ssize_t n = splice(in_fd, NULL, fd, NULL, FILE_IO_CHUNK, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n == 0) return 0;
      if (n > 0) continue;
      if (errno == EINTR || errno == EAGAIN) continue;
      if (errno != EINVAL && errno != ENOSYS) return -1;
      use_splice = 0;
    }
    if (!buf && !(buf = malloc(FILE_IO_CHUNK))) return -1;
    ssize_t n = read(in_fd, buf, FILE_IO_CHUNK);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return (int)n;
    if (write_all(fd, buf, (size_t)n) != 0) return -1;
  }
}

/* Links the anonymous file fd into dirfd under a fresh temporary name (temp_name); 0 or -1. */
static int link_tmpfile(int fd, int dirfd, const char *dir) {
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  for (int tries = 0; tries < 100; tries++) {
    char name[32];
    temp_file_name(name);
    int rc = linkat(fd, "", dirfd, name, AT_EMPTY_PATH);
    if (rc != 0 && errno != EEXIST) rc = linkat(AT_FDCWD, proc, dirfd, name, AT_SYMLINK_FOLLOW);
    if (rc != 0 && errno == EEXIST) continue;
    if (rc != 0) return -1;
    temp_name = malloc(strlen(dir) + strlen(name) + 2);
    if (!temp_name) {
      unlinkat(dirfd, name, 0);
      return -1;
    }
    sprintf(temp_name, "%s/%s", dir, name);
    return 0;
  }
  errno = EEXIST;
  return -1;
}

/* When an anonymous file cannot be linked (no /proc, no privilege): copy it into a named one. */
static int named_copy(int fd, int dirfd, const char *dir) {
  int nfd = create_named_temp(dirfd, dir);
  if (nfd < 0) return -1;
  off_t off = 0;
  struct stat st;
  int rc = fstat(fd, &st);
  static char buf[65536];
  while (rc == 0 && off < st.st_size) {
    ssize_t n = pread(fd, buf, sizeof buf, off);
    if (n <= 0 || write_all(nfd, buf, (size_t)n) != 0) rc = -1;
    off += n > 0 ? n : 0;
  }
  if (rc == 0 && (fchown(nfd, st.st_uid, st.st_gid) != 0 || fchmod(nfd, st.st_mode & 07777) != 0)) rc = -1;
  int e = errno;
  close(nfd);
  errno = e;
  return rc;
}

struct write_req {
  const char *path;
  mode_t mode;
  uid_t uid;
  gid_t gid;
};

/* Runs a write once the target, its directory and the request are known. */
static void write_into(int in_fd, int status_fd, const struct write_req *w, const char *dir, const char *base) {
  int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) end_errno(status_fd, dir, errno);
  int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
  int anonymous = fd >= 0;
  if (fd < 0) fd = create_named_temp(dirfd, dir);
  if (fd < 0) end_errno(status_fd, dir, errno);
  const char *step = w->path;
  int rc = copy_input(in_fd, fd);
  if (rc == 0 && geteuid() == 0 && (step = "chown", fchown(fd, w->uid, w->gid) != 0)) rc = -1;
  if (rc == 0 && (step = "chmod", fchmod(fd, w->mode) != 0)) rc = -1;
  if (rc == 0 && term_requested()) rc = -1, errno = ECANCELED;
  if (rc == 0 && anonymous && (step = "link", link_tmpfile(fd, dirfd, dir) != 0))
    rc = named_copy(fd, dirfd, dir);
  if (rc == 0 && term_requested()) rc = -1, errno = ECANCELED;
  if (rc == 0 && (step = "rename", renameat(dirfd, strrchr(temp_name, '/') + 1, dirfd, base) != 0)) rc = -1;
  int e = errno;
  close(fd);
  if (rc != 0) {
    drop_temp();
    if (e == EISDIR) end_error(status_fd, "CONFLICT", "%s is a directory", w->path);
    end_errno(status_fd, step, e);
  }
  free(temp_name);
  temp_name = NULL;
  end_ok(status_fd, NULL);
}

static void op_write(char *const *args, int nargs, int in_fd, int status_fd) {
  unsigned long long mode, uid, gid;
  if (nargs != 4 || parse_number(args[1], 8, &mode) || mode > 07777 || parse_number(args[2], 10, &uid) ||
      parse_number(args[3], 10, &gid) || uid > UINT32_MAX || gid > UINT32_MAX || args[0][0] != '/')
    end_error(status_fd, "INVALID", "write takes an absolute path, an octal mode, a uid and a gid");
  struct write_req w = {args[0], (mode_t)mode, (uid_t)uid, (gid_t)gid};
  char *target = follow_final(args[0]);
  if (!target) end_errno(status_fd, args[0], errno);
  struct stat st;
  if (stat(target, &st) == 0 && S_ISDIR(st.st_mode)) end_error(status_fd, "CONFLICT", "%s is a directory", args[0]);
  char *dir = dir_name(target);
  if (!dir) end_error(status_fd, "CONFLICT", "%s is a directory", args[0]);
  char *name = base_name(target);
  if (!name) end_errno(status_fd, args[0], errno);
  if (make_dirs(dir, 0755) != 0) end_errno(status_fd, dir, errno);
  write_into(in_fd, status_fd, &w, dir, name);
}

/* ---- read ---------------------------------------------------------------- */

/* Sends count bytes (all when count < 0) of fd to out_fd; returns bytes sent or -1. */
static long long send_content(int fd, int out_fd, long long count) {
  long long sent = 0;
  int use_sendfile = 1;
  static char *buf;
  while (count < 0 || sent < count) {
    size_t want = FILE_IO_CHUNK;
    if (count >= 0 && (unsigned long long)(count - sent) < want) want = (size_t)(count - sent);
    ssize_t n;
    if (use_sendfile) {
      n = sendfile(out_fd, fd, NULL, want);
      if (n < 0 && (errno == EINVAL || errno == ENOSYS)) {
        use_sendfile = 0;
        continue;
      }
    } else {
      if (!buf && !(buf = malloc(FILE_IO_CHUNK))) return -1;
      n = read(fd, buf, want);
      if (n > 0 && write_all(out_fd, buf, (size_t)n) != 0) return -1;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (n == 0) break;
    sent += n;
  }
  return sent;
}

static void op_read(char *const *args, int nargs, int out_fd, int status_fd) {
  if (nargs != 1 || args[0][0] != '/') end_error(status_fd, "INVALID", "read takes an absolute path");
  int fd = open(args[0], O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0 && errno == EISDIR) end_error(status_fd, "INVALID", "%s is a directory", args[0]);
  if (fd < 0) end_errno(status_fd, args[0], errno);
  struct stat st;
  if (fstat(fd, &st) != 0) end_errno(status_fd, args[0], errno);
  if (S_ISDIR(st.st_mode)) end_error(status_fd, "INVALID", "%s is a directory", args[0]);
  int flags = fcntl(fd, F_GETFL);
  if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  fcntl(out_fd, F_SETPIPE_SZ, FILE_IO_CHUNK); /* a larger pipe means fewer wakeups; best effort */
  long long n = send_content(fd, out_fd, -1);
  if (n < 0) end_errno(status_fd, args[0], errno);
  char mode[32], size[48];
  snprintf(mode, sizeof mode, "mode=%o", (unsigned)(st.st_mode & 07777));
  snprintf(size, sizeof size, "size=%lld", n);
  const char *fields[] = {mode, size, NULL};
  end_ok(status_fd, fields);
}

/* ---- stat ---------------------------------------------------------------- */

/* readlink of any length, malloc'd; NULL on failure. */
static char *read_link_at(int dirfd, const char *name, size_t hint) {
  for (size_t cap = hint + 2 > 256 ? hint + 2 : 256;; cap *= 2) {
    char *buf = malloc(cap);
    if (!buf) return NULL;
    ssize_t n = readlinkat(dirfd, name, buf, cap);
    if (n < 0) {
      free(buf);
      return NULL;
    }
    if ((size_t)n < cap) {
      buf[n] = '\0';
      return buf;
    }
    free(buf);
  }
}

static const char *type_name(mode_t m) {
  if (S_ISREG(m)) return "file";
  if (S_ISDIR(m)) return "directory";
  if (S_ISLNK(m)) return "symlink";
  return "other";
}

static void op_stat(char *const *args, int nargs, int status_fd) {
  if (nargs != 2 || args[0][0] != '/' || (strcmp(args[1], "0") && strcmp(args[1], "1")))
    end_error(status_fd, "INVALID", "stat takes an absolute path and follow (0 or 1)");
  struct stat st;
  int rc = args[1][0] == '1' ? stat(args[0], &st) : lstat(args[0], &st);
  if (rc != 0) end_errno(status_fd, args[0], errno);
  char type[32], mode[32], uid[32], gid[32], size[48], mtime[64], *target = NULL;
  snprintf(type, sizeof type, "type=%s", type_name(st.st_mode));
  snprintf(mode, sizeof mode, "mode=%o", (unsigned)(st.st_mode & 07777));
  snprintf(uid, sizeof uid, "uid=%u", (unsigned)st.st_uid);
  snprintf(gid, sizeof gid, "gid=%u", (unsigned)st.st_gid);
  snprintf(size, sizeof size, "size=%lld", (long long)st.st_size);
  snprintf(mtime, sizeof mtime, "mtime=%lld.%09ld", (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec);
  if (S_ISLNK(st.st_mode)) {
    char *t = read_link_at(AT_FDCWD, args[0], (size_t)st.st_size);
    if (!t || !(target = malloc(strlen(t) + 8))) end_errno(status_fd, args[0], errno);
    sprintf(target, "target=%s", t);
  }
  const char *fields[] = {type, mode, uid, gid, size, mtime, target, NULL};
  end_ok(status_fd, fields);
}

/* ---- readdir ------------------------------------------------------------- */

static void op_readdir(char *const *args, int nargs, int out_fd, int status_fd) {
  if (nargs != 1 || args[0][0] != '/') end_error(status_fd, "INVALID", "readdir takes an absolute path");
  int fd = open(args[0], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 && errno == ENOTDIR) {
    struct stat st;
    if (stat(args[0], &st) == 0) end_error(status_fd, "INVALID", "%s is not a directory", args[0]);
  }
  if (fd < 0) end_errno(status_fd, args[0], errno);
  DIR *d = fdopendir(fd);
  if (!d) end_errno(status_fd, args[0], errno);
  size_t cap = 256 * 1024, len = 0;
  char *buf = malloc(cap);
  if (!buf) end_errno(status_fd, args[0], errno);
  struct dirent *de;
  while ((errno = 0, de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    size_t n = strlen(de->d_name) + 1;
    if (len + n > cap) {
      if (write_all(out_fd, buf, len) != 0) end_errno(status_fd, args[0], errno);
      len = 0;
    }
    memcpy(buf + len, de->d_name, n);
    len += n;
  }
  if (errno) end_errno(status_fd, args[0], errno);
  if (len && write_all(out_fd, buf, len) != 0) end_errno(status_fd, args[0], errno);
  end_ok(status_fd, NULL);
}

/* ---- mkdir, remove ------------------------------------------------------- */

static void op_mkdir(char *const *args, int nargs, int status_fd) {
  unsigned long long mode;
  if (nargs != 2 || args[0][0] != '/' || parse_number(args[1], 8, &mode) || mode > 07777)
    end_error(status_fd, "INVALID", "mkdir takes an absolute path and an octal mode");
  struct stat st;
  if (stat(args[0], &st) == 0) {
    if (S_ISDIR(st.st_mode)) end_ok(status_fd, NULL);
    end_error(status_fd, "CONFLICT", "%s exists and is not a directory", args[0]);
  }
  char *dir = dir_name(args[0]);
  if (dir && make_dirs(dir, 0755) != 0) {
    if (errno == ENOTDIR) end_error(status_fd, "CONFLICT", "a parent of %s is not a directory", args[0]);
    end_errno(status_fd, dir, errno);
  }
  if (mkdir(args[0], (mode_t)mode) != 0 && errno != EEXIST) end_errno(status_fd, args[0], errno);
  if (chmod(args[0], (mode_t)mode) != 0) end_errno(status_fd, args[0], errno);
  end_ok(status_fd, NULL);
}

static void op_remove(char *const *args, int nargs, int status_fd) {
  if (nargs != 1 || args[0][0] != '/') end_error(status_fd, "INVALID", "remove takes an absolute path");
  char *dir = dir_name(args[0]);
  char *name = base_name(args[0]);
  if (!dir || !name || !strcmp(name, ".") || !strcmp(name, ".."))
    end_error(status_fd, "INVALID", "cannot remove %s", args[0]);
  int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0 && (errno == ENOENT || errno == ENOTDIR)) end_ok(status_fd, NULL);
  if (dirfd < 0) end_errno(status_fd, dir, errno);
  if (remove_at(dirfd, name) != 0) end_error(status_fd, "IO", "%s: %s", args[0], strerror(errno));
  end_ok(status_fd, NULL);
}

/* ---- dispatch ------------------------------------------------------------ */

void host_tar_in(const char *dest, int in_fd, int status_fd) {
  signal(SIGPIPE, SIG_IGN);
  catch_term();
  tar_in_host(dest, in_fd, status_fd);
}

int file_op_streams(const char *op) {
  if (!strcmp(op, "write") || !strcmp(op, "tar-in")) return OP_INPUT;
  if (!strcmp(op, "read") || !strcmp(op, "readdir") || !strcmp(op, "tar-out")) return OP_OUTPUT;
  if (!strcmp(op, "stat") || !strcmp(op, "mkdir") || !strcmp(op, "remove") || !strcmp(op, "tar-in-file") ||
      !strcmp(op, "tar-out-file"))
    return 0;
  return -1;
}

void run_file_op(const char *op, char *const *args, int nargs, int in_fd, int out_fd, int status_fd) {
  signal(SIGPIPE, SIG_IGN); /* a vanished client shows as EPIPE */
  umask(0);
  int streams = file_op_streams(op);
  if (streams < 0) end_error(status_fd, "INVALID", "unknown operation %s", op);
  if (((streams & OP_INPUT) && in_fd < 0) || ((streams & OP_OUTPUT) && out_fd < 0))
    end_error(status_fd, "IO", "%s started without its streams", op);
  if ((streams & OP_INPUT) || !strcmp(op, "tar-in-file")) catch_term();
  if (!strcmp(op, "write")) op_write(args, nargs, in_fd, status_fd);
  if (!strcmp(op, "read")) op_read(args, nargs, out_fd, status_fd);
  if (!strcmp(op, "stat")) op_stat(args, nargs, status_fd);
  if (!strcmp(op, "readdir")) op_readdir(args, nargs, out_fd, status_fd);
  if (!strcmp(op, "mkdir")) op_mkdir(args, nargs, status_fd);
  if (!strcmp(op, "remove")) op_remove(args, nargs, status_fd);
  if (!strcmp(op, "tar-in-file")) {
    if (nargs != 2 || args[0][0] != '/' || args[1][0] != '/')
      end_error(status_fd, "INVALID", "tar-in-file takes an absolute destination and an absolute archive path");
    tar_in_file(args[0], args[1], status_fd);
  }
  if (!strcmp(op, "tar-out-file")) {
    if (nargs != 2 || args[0][0] != '/' || args[1][0] != '/')
      end_error(status_fd, "INVALID", "tar-out-file takes an absolute path and an absolute archive path");
    tar_out_file(args[0], args[1], status_fd);
  }
  if (!strcmp(op, "tar-out") && nargs == 2 && args[0][0] == '/' && !strcmp(args[1], "direct"))
    tar_out(args[0], 1, out_fd, status_fd);
  if (nargs != 1 || args[0][0] != '/') end_error(status_fd, "INVALID", "%s takes an absolute path", op);
  if (!strcmp(op, "tar-out")) tar_out(args[0], 0, out_fd, status_fd);
  tar_in(args[0], in_fd, status_fd);
}
