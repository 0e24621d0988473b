/*
 * execenv-agent: tar archives for the tar-out and tar-in file operations
 * (PROTOCOL.md): a pax writer that walks a tree through directory
 * descriptors, and a reader that checks every entry before it extracts it
 * and removes what it created when anything fails.
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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "agent-tar.h"
#include "agent.h"

#define BLOCK 512
/* Content up to this size is copied through the output buffer; larger goes by sendfile. */
#define SMALL_FILE (64 * 1024)
/*
 * Direct I/O (O_DIRECT) moves file content between the disk and the
 * agent's buffer without the page cache: in a guest under an emulated CPU
 * (TCG) the page cache copies dominate a bulk transfer, while the device
 * moves the data at the host's speed. Buffers, file offsets and lengths are
 * multiples of DIRECT_ALIGN; only files of at least DIRECT_MIN bytes use it.
 */
#define DIRECT_ALIGN 4096
#define DIRECT_MIN (64 * 1024)
/* Transfer unit of direct I/O: fewer, larger requests to the device. */
#define DIRECT_CHUNK (4 * 1024 * 1024)

/* The ustar header layout. */
struct ustar {
  char name[100], mode[8], uid[8], gid[8], size[12], mtime[12], chksum[8], typeflag, linkname[100];
  char magic[6], version[2], uname[32], gname[32], devmajor[8], devminor[8], prefix[155], pad[12];
};

/* A growable byte string. */
struct sbuf {
  char *p;
  size_t len, cap;
};

/* Ends a tar operation with its counts: `ok entries=N bytes=N`. */
static void end_counts(int status_fd, long long entries, long long bytes) __attribute__((noreturn));
static void end_counts(int status_fd, long long entries, long long bytes) {
  char e[48], b[48];
  snprintf(e, sizeof e, "entries=%lld", entries);
  snprintf(b, sizeof b, "bytes=%lld", bytes);
  const char *fields[] = {e, b, NULL};
  end_ok(status_fd, fields);
}

static int sb_add(struct sbuf *b, const void *data, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (b->len + n + 1 > cap) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, data, n);
  b->len += n;
  b->p[b->len] = '\0';
  return 0;
}

/* readlinkat of any length, malloc'd; NULL on failure. */
static char *link_target(int dirfd, const char *name) {
  for (size_t cap = 256;; cap *= 2) {
    char *buf = malloc(cap);
    if (!buf) return NULL;
    ssize_t n = readlinkat(dirfd, name, buf, cap);
    if (n >= 0 && (size_t)n < cap) {
      buf[n] = '\0';
      return buf;
    }
    free(buf);
    if (n < 0) return NULL;
  }
}

/* =========================== tar-out ===================================== */

/* First name archived for an inode with several links. */
struct link_seen {
  dev_t dev;
  ino_t ino;
  char *name;
  struct link_seen *next;
};

struct tar_writer {
  int fd, status_fd, direct;
  char *buf;
  char *direct_buf; /* DIRECT_ALIGN-aligned, DIRECT_CHUNK bytes, allocated on first use */
  size_t len;
  long long entries, bytes;
  struct link_seen *links[1024];
};

static void out_flush(struct tar_writer *w) {
  if (w->len && write_all(w->fd, w->buf, w->len) != 0) end_errno(w->status_fd, "tar output", errno);
  w->len = 0;
}

static void out_put(struct tar_writer *w, const void *data, size_t n) {
  const char *p = data;
  while (n > 0) {
    if (w->len == FILE_IO_CHUNK) out_flush(w);
    size_t room = FILE_IO_CHUNK - w->len, k = n < room ? n : room;
    memcpy(w->buf + w->len, p, k);
    w->len += k;
    p += k;
    n -= k;
  }
}

static void out_zeros(struct tar_writer *w, size_t n) {
  static const char zeros[BLOCK];
  while (n > 0) {
    size_t k = n < BLOCK ? n : BLOCK;
    out_put(w, zeros, k);
    n -= k;
  }
}

/* Writes v in octal into a field of width w (w-1 digits and a NUL); 0, or -1 when it does not fit. */
static int put_octal(char *f, size_t w, unsigned long long v) {
  if (w - 1 < 22 && v >> (3 * (w - 1))) return -1;
  snprintf(f, w, "%0*llo", (int)(w - 1), v);
  return 0;
}

/* Writes v in octal, or else in GNU/POSIX base-256; returns non-zero when a pax record is needed. */
static int put_number(char *f, size_t w, unsigned long long v) {
  if (put_octal(f, w, v) == 0) return 0;
  memset(f, 0, w);
  f[0] = (char)0x80;
  for (size_t i = w - 1; i > 0 && v; i--, v >>= 8) f[i] = (char)(v & 0xff);
  return 1;
}

/* Appends one "LEN key=value\n" pax record. */
static int pax_record(struct sbuf *b, const char *key, const char *value, size_t vlen) {
  size_t base = strlen(key) + vlen + 3, len = base;
  char num[24];
  for (;;) {
    size_t digits = (size_t)snprintf(num, sizeof num, "%zu", len);
    if (base + digits == len) break;
    len = base + digits;
  }
  return sb_add(b, num, strlen(num)) || sb_add(b, " ", 1) || sb_add(b, key, strlen(key)) || sb_add(b, "=", 1) ||
         sb_add(b, value, vlen) || sb_add(b, "\n", 1);
}

static int pax_number(struct sbuf *b, const char *key, long long v) {
  char num[32];
  snprintf(num, sizeof num, "%lld", v);
  return pax_record(b, key, num, strlen(num));
}

/* Splits name into ustar name/prefix fields; 0, or -1 when it needs a pax path. */
static int split_name(struct ustar *h, const char *name) {
  size_t len = strlen(name);
  if (len <= sizeof h->name) {
    memcpy(h->name, name, len);
    return 0;
  }
  for (size_t i = len - 1; i > 0; i--) {
    if (name[i] != '/' || i > sizeof h->prefix) continue;
    if (len - i - 1 > sizeof h->name) return -1;
    if (len - i - 1 == 0) continue;
    memcpy(h->prefix, name, i);
    memcpy(h->name, name + i + 1, len - i - 1);
    return 0;
  }
  return -1;
}

static void finish_header(struct ustar *h) {
  memcpy(h->magic, "ustar", 6);
  memcpy(h->version, "00", 2);
  memset(h->chksum, ' ', sizeof h->chksum);
  unsigned sum = 0;
  const unsigned char *p = (const unsigned char *)h;
  for (size_t i = 0; i < BLOCK; i++) sum += p[i];
  snprintf(h->chksum, sizeof h->chksum, "%06o", sum);
  h->chksum[7] = ' ';
}

/* Collects the extended attributes of an open file as SCHILY.xattr records. */
static int xattr_records(struct sbuf *pax, int fd) {
  ssize_t n = flistxattr(fd, NULL, 0);
  if (n <= 0) return 0; /* none, or not supported here */
  char *names = malloc((size_t)n);
  if (!names) return -1;
  n = flistxattr(fd, names, (size_t)n);
  for (char *name = names; n > 0 && name < names + n; name += strlen(name) + 1) {
    ssize_t vlen = fgetxattr(fd, name, NULL, 0);
    if (vlen < 0) continue;
    char *value = malloc((size_t)vlen + 1);
    if (!value) break;
    vlen = fgetxattr(fd, name, value, (size_t)vlen);
    char key[300];
    snprintf(key, sizeof key, "SCHILY.xattr.%s", name);
    int rc = vlen < 0 ? 0 : pax_record(pax, key, value, (size_t)vlen);
    free(value);
    if (rc) break;
  }
  free(names);
  return 0;
}

/* One entry to archive. */
struct out_entry {
  const char *name, *link;
  char type;
  const struct stat *st;
  unsigned long long size;
  int fd; /* open regular file or directory, else -1 */
};

/* Writes the pax header (when needed) and the ustar header of an entry. */
static void write_headers(struct tar_writer *w, const struct out_entry *e) {
  struct ustar h;
  struct sbuf pax = {0};
  memset(&h, 0, sizeof h);
  int err = 0;
  if (split_name(&h, e->name) != 0) {
    memcpy(h.name, e->name, sizeof h.name);
    err |= pax_record(&pax, "path", e->name, strlen(e->name));
  }
  if (e->link) {
    size_t ll = strlen(e->link);
    memcpy(h.linkname, e->link, ll < sizeof h.linkname ? ll : sizeof h.linkname);
    if (ll > sizeof h.linkname) err |= pax_record(&pax, "linkpath", e->link, ll);
  }
  put_octal(h.mode, sizeof h.mode, e->st->st_mode & 07777);
  if (put_number(h.uid, sizeof h.uid, e->st->st_uid)) err |= pax_number(&pax, "uid", e->st->st_uid);
  if (put_number(h.gid, sizeof h.gid, e->st->st_gid)) err |= pax_number(&pax, "gid", e->st->st_gid);
  if (put_number(h.size, sizeof h.size, e->size)) err |= pax_number(&pax, "size", (long long)e->size);
  long long mtime = (long long)e->st->st_mtim.tv_sec;
  if (mtime < 0 || put_octal(h.mtime, sizeof h.mtime, (unsigned long long)mtime)) {
    put_octal(h.mtime, sizeof h.mtime, 0);
    err |= pax_number(&pax, "mtime", mtime);
  }
  h.typeflag = e->type;
  if (e->type == '3' || e->type == '4') {
    put_octal(h.devmajor, sizeof h.devmajor, major(e->st->st_rdev));
    put_octal(h.devminor, sizeof h.devminor, minor(e->st->st_rdev));
  }
  if (e->fd >= 0) err |= xattr_records(&pax, e->fd);
  if (err) end_errno(w->status_fd, e->name, ENOMEM);
  if (pax.len) {
    struct ustar x;
    memset(&x, 0, sizeof x);
    const char *base = strrchr(e->name, '/');
    snprintf(x.name, sizeof x.name, "PaxHeaders/%.80s", base ? base + 1 : e->name);
    put_octal(x.mode, sizeof x.mode, 0644);
    put_octal(x.uid, sizeof x.uid, 0);
    put_octal(x.gid, sizeof x.gid, 0);
    put_number(x.size, sizeof x.size, pax.len);
    memcpy(x.mtime, h.mtime, sizeof x.mtime);
    x.typeflag = 'x';
    finish_header(&x);
    out_put(w, &x, BLOCK);
    out_put(w, pax.p, pax.len);
    out_zeros(w, (BLOCK - pax.len % BLOCK) % BLOCK);
  }
  free(pax.p);
  finish_header(&h);
  out_put(w, &h, BLOCK);
}

/*
 * Turns direct I/O on for fd, with the aligned buffer in *buf allocated on
 * first use; returns fd's flags from before, or -1 where the buffer cannot
 * be had or fd's filesystem refuses direct I/O.
 */
static int begin_direct(char **buf, int fd) {
  if (!*buf && posix_memalign((void **)buf, DIRECT_ALIGN, DIRECT_CHUNK) != 0) return -1;
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_DIRECT) != 0) return -1;
  return flags;
}

/*
 * Copies up to size bytes of fd (at offset 0) to the output with direct
 * reads, once the output buffer is flushed; returns how many were written,
 * leaving fd's offset after them. Stops early (the caller goes on without
 * direct I/O) where the file or its filesystem does not allow direct reads.
 */
static unsigned long long content_direct(struct tar_writer *w, int fd, unsigned long long size, const char *name) {
  int flags = begin_direct(&w->direct_buf, fd);
  if (flags < 0) return 0;
  unsigned long long done = 0;
  while (done < size) {
    unsigned long long left = size - done;
    size_t want = left < DIRECT_CHUNK ? (size_t)((left + DIRECT_ALIGN - 1) & ~(unsigned long long)(DIRECT_ALIGN - 1))
                                      : DIRECT_CHUNK;
    ssize_t n = pread(fd, w->direct_buf, want, (off_t)done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EINVAL) break;
    if (n < 0) end_errno(w->status_fd, name, errno);
    if (n == 0) break;
    size_t k = (unsigned long long)n < left ? (size_t)n : (size_t)left;
    if (write_all(w->fd, w->direct_buf, k) != 0) end_errno(w->status_fd, "tar output", errno);
    done += k;
    if ((size_t)n % DIRECT_ALIGN) break; /* a short read ends direct I/O: the next offset is unaligned */
  }
  fcntl(fd, F_SETFL, flags);
  if (lseek(fd, (off_t)done, SEEK_SET) < 0) end_errno(w->status_fd, name, errno);
  return done;
}

/* Writes exactly size bytes of fd (zeros if it shrank meanwhile), padded to a block. */
static void write_content(struct tar_writer *w, int fd, unsigned long long size, const char *name) {
  unsigned long long done = 0;
  if (size <= SMALL_FILE) {
    while (done < size) {
      if (w->len == FILE_IO_CHUNK) out_flush(w);
      size_t room = FILE_IO_CHUNK - w->len;
      size_t want = size - done < room ? (size_t)(size - done) : room;
      ssize_t n = read(fd, w->buf + w->len, want);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) end_errno(w->status_fd, name, errno);
      if (n == 0) break;
      w->len += (size_t)n;
      done += (unsigned long long)n;
    }
  } else {
    out_flush(w);
    if (w->direct && size >= DIRECT_MIN) done = content_direct(w, fd, size, name);
    while (done < size) {
      size_t want = size - done < FILE_IO_CHUNK ? (size_t)(size - done) : FILE_IO_CHUNK;
      ssize_t n = sendfile(w->fd, fd, NULL, want);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EPIPE) end_errno(w->status_fd, name, errno);
      if (n < 0 && (errno == EINVAL || errno == ENOSYS)) {
        /* No sendfile for this pair: go through the buffer. */
        n = read(fd, w->buf, want);
        if (n > 0 && write_all(w->fd, w->buf, (size_t)n) != 0) end_errno(w->status_fd, "tar output", errno);
      }
      if (n < 0) end_errno(w->status_fd, name, errno);
      if (n == 0) break;
      done += (unsigned long long)n;
    }
  }
  out_zeros(w, (size_t)(size - done));
  out_zeros(w, (size_t)((BLOCK - size % BLOCK) % BLOCK));
  w->bytes += (long long)size;
}

/* The first name of an inode with several links, or NULL after remembering `name` as it. */
static const char *earlier_link(struct tar_writer *w, const struct stat *st, const char *name) {
  size_t slot = ((size_t)st->st_ino * 31 + (size_t)st->st_dev) % (sizeof w->links / sizeof *w->links);
  for (struct link_seen *l = w->links[slot]; l; l = l->next)
    if (l->dev == st->st_dev && l->ino == st->st_ino) return l->name;
  struct link_seen *l = malloc(sizeof *l);
  if (!l || !(l->name = strdup(name))) end_errno(w->status_fd, name, ENOMEM);
  l->dev = st->st_dev;
  l->ino = st->st_ino;
  l->next = w->links[slot];
  w->links[slot] = l;
  return NULL;
}

static char entry_type(mode_t m) {
  if (S_ISREG(m)) return '0';
  if (S_ISLNK(m)) return '2';
  if (S_ISCHR(m)) return '3';
  if (S_ISBLK(m)) return '4';
  if (S_ISDIR(m)) return '5';
  if (S_ISFIFO(m)) return '6';
  return 0; /* sockets are not archived */
}

static void walk_dir(struct tar_writer *w, int dfd, const char *rel);

/* Archives one entry; fd is the open file or directory (else -1), link a symlink's target. */
static void emit(struct tar_writer *w, const char *name, const struct stat *st, int fd, const char *link) {
  struct out_entry e = {name, link, entry_type(st->st_mode), st, 0, fd};
  if (!e.type) return;
  if (e.type != '5' && st->st_nlink > 1) {
    const char *first = earlier_link(w, st, name);
    if (first) {
      struct out_entry h = {name, first, '1', st, 0, -1};
      write_headers(w, &h);
      w->entries++;
      return;
    }
  }
  if (e.type == '0') e.size = (unsigned long long)st->st_size;
  write_headers(w, &e);
  w->entries++;
  if (e.type == '0') write_content(w, fd, e.size, name);
  if (e.type == '5') walk_dir(w, fd, strcmp(name, ".") ? name : "");
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted names of a directory (NULL-terminated, malloc'd). */
static char **sorted_names(struct tar_writer *w, int dfd, const char *rel) {
  int dup_fd = dup(dfd);
  DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
  if (!d) end_errno(w->status_fd, *rel ? rel : ".", errno);
  size_t n = 0, cap = 16;
  char **names = malloc(cap * sizeof *names);
  struct dirent *de;
  while (names && (errno = 0, de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    if (n + 1 == cap) {
      char **more = realloc(names, (cap *= 2) * sizeof *names);
      if (!more) end_errno(w->status_fd, rel, ENOMEM);
      names = more;
    }
    if (!(names[n++] = strdup(de->d_name))) end_errno(w->status_fd, rel, ENOMEM);
  }
  if (!names || errno) end_errno(w->status_fd, *rel ? rel : ".", names ? errno : ENOMEM);
  closedir(d);
  names[n] = NULL;
  qsort(names, n, sizeof *names, by_name);
  return names;
}

/* Archives what a directory holds, sorted, never following a symlink. */
static void walk_dir(struct tar_writer *w, int dfd, const char *rel) {
  char **names = sorted_names(w, dfd, rel);
  for (char **n = names; *n; n++) {
    char *path = malloc(strlen(rel) + strlen(*n) + 2);
    if (!path) end_errno(w->status_fd, rel, ENOMEM);
    sprintf(path, "%s%s%s", rel, *rel ? "/" : "", *n);
    struct stat st;
    if (fstatat(dfd, *n, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT) end_errno(w->status_fd, path, errno);
    } else if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
      int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0);
      int fd = openat(dfd, *n, flags);
      if (fd < 0 && errno != ENOENT) end_errno(w->status_fd, path, errno);
      if (fd >= 0 && fstat(fd, &st) != 0) end_errno(w->status_fd, path, errno);
      if (fd >= 0 && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) emit(w, path, &st, fd, NULL);
      if (fd >= 0) close(fd);
    } else if (S_ISLNK(st.st_mode)) {
      char *target = link_target(dfd, *n);
      if (!target && errno != ENOENT) end_errno(w->status_fd, path, errno);
      if (target) emit(w, path, &st, -1, target);
      free(target);
    } else {
      emit(w, path, &st, -1, NULL);
    }
    free(path);
    free(*n);
  }
  free(names);
}

/* Lets a deep tree use as many descriptors as permitted: the walk holds one per level. */
static void raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

void tar_out(const char *path, int direct, int out_fd, int status_fd) {
  struct tar_writer *w = calloc(1, sizeof *w);
  if (!w || !(w->buf = malloc(FILE_IO_CHUNK))) end_errno(status_fd, path, ENOMEM);
  w->fd = out_fd;
  w->status_fd = status_fd;
  w->direct = direct;
  raise_fd_limit();
  fcntl(out_fd, F_SETPIPE_SZ, FILE_IO_CHUNK); /* fewer wakeups of the relay; best effort */
  struct stat st;
  if (stat(path, &st) != 0) end_errno(status_fd, path, errno);
  int fd = -1;
  if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    struct stat again;
    if (fd < 0 || fstat(fd, &again) != 0) end_errno(status_fd, path, errno);
    if (again.st_dev != st.st_dev || again.st_ino != st.st_ino) end_error(status_fd, "IO", "%s changed while opened", path);
    st = again;
  }
  if (S_ISDIR(st.st_mode)) {
    emit(w, ".", &st, fd, NULL);
  } else {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && path[start - 1] != '/') start--;
    char *base = strndup(path + start, len - start);
    if (!base) end_errno(status_fd, path, ENOMEM);
    st.st_nlink = 1; /* a single file is never a hardlink to itself */
    emit(w, base, &st, fd, NULL);
  }
  out_zeros(w, 2 * BLOCK);
  out_flush(w);
  end_counts(status_fd, w->entries, w->bytes);
}

void tar_out_file(const char *path, const char *archive, int status_fd) {
  int fd = open(archive, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) end_errno(status_fd, archive, errno);
  tar_out(path, 1, fd, status_fd);
}

/* =========================== tar-in ====================================== */

/* What an archive name became, for the checks of later entries. */
enum kind { K_NONE, K_DIR, K_FILE, K_SYMLINK };

struct seen {
  char *name;
  enum kind kind;
  struct seen *next;
};

struct xattr {
  char *name, *value;
  size_t len;
};

/* Values of pax records (an `x` header for one entry, or `g` for all). */
struct pax {
  char *path, *link;
  int bad_path, bad_link; /* a NUL inside */
  int has_size, has_uid, has_gid, has_mtime;
  unsigned long long size, uid, gid;
  long long mtime;
  long mtime_ns;
  struct xattr *xattrs;
  size_t nxattrs;
};

struct in_entry {
  char *name, *link; /* normalised name, raw link target */
  int bad_name, bad_link;
  char type;
  mode_t mode;
  unsigned long long size, uid, gid;
  long long mtime;
  long mtime_ns;
  unsigned devmajor, devminor;
  struct xattr *xattrs;
  size_t nxattrs;
};

struct dir_attr {
  char *name;
  mode_t mode;
  uid_t uid;
  gid_t gid;
  long long mtime;
  long mtime_ns;
  size_t depth, order;
};

struct tar_reader {
  int fd, status_fd, can_splice, root;
  int host; /* extracting into a host directory (tar_in_host) */
  int from_file; /* fd is a regular file: file content may be read at its offset, with direct I/O */
  char *buf;
  char *direct_buf; /* DIRECT_ALIGN-aligned, DIRECT_CHUNK bytes, allocated on first use */
  size_t pos, len;
  const char *dest;
  int dest_fd;
  char *dest_created; /* topmost directory mkdir -p made for destDir */
  char *parent_name;  /* the cached parent of the last entry */
  int parent_fd;
  char **created;
  size_t ncreated, capcreated;
  struct dir_attr *dirs;
  size_t ndirs, capdirs;
  struct seen *seen[4096];
  long long entries, bytes;
};

static void cleanup(struct tar_reader *r);

static void fail(struct tar_reader *r, const char *code, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));
static void fail(struct tar_reader *r, const char *code, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  cleanup(r);
  end_error(r->status_fd, code, "%s", msg);
}

static void fail_errno(struct tar_reader *r, const char *what, int e) __attribute__((noreturn));
static void fail_errno(struct tar_reader *r, const char *what, int e) {
  if (e == ECANCELED) fail(r, "IO", "operation killed");
  fail(r, "IO", "%s: %s", what, strerror(e));
}

/* ---- input ---- */

/* Makes at least n bytes (n <= buffer size) available; 0, 1 at end of input, or fails. */
static int in_fill(struct tar_reader *r, size_t n) {
  if (r->len - r->pos >= n) return 0;
  memmove(r->buf, r->buf + r->pos, r->len - r->pos);
  r->len -= r->pos;
  r->pos = 0;
  while (r->len < n) {
    ssize_t k = input_read(r->fd, r->buf + r->len, FILE_IO_CHUNK - r->len);
    if (k < 0) fail_errno(r, "tar input", errno);
    if (k == 0) return 1;
    r->len += (size_t)k;
  }
  return 0;
}

static void in_need(struct tar_reader *r, size_t n) {
  if (in_fill(r, n)) fail(r, "INVALID", "the archive ends in the middle of an entry");
}

/* Copies n bytes of input to fd, or skips them when fd < 0. */
static void in_copy(struct tar_reader *r, int fd, unsigned long long n, const char *name) {
  while (n > 0 && r->pos < r->len) {
    size_t k = r->len - r->pos < n ? r->len - r->pos : (size_t)n;
    if (fd >= 0 && write_all(fd, r->buf + r->pos, k) != 0) fail_errno(r, name, errno);
    r->pos += k;
    n -= k;
  }
  while (n > 0) {
    size_t want = n < FILE_IO_CHUNK ? (size_t)n : FILE_IO_CHUNK;
    if (fd >= 0 && r->can_splice) {
      if (input_wait(r->fd) < 0) fail_errno(r, "tar input", errno);
      ssize_t k = splice(r->fd, NULL, fd, NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (k > 0) {
        n -= (unsigned long long)k;
        continue;
      }
      if (k == 0) fail(r, "INVALID", "the archive ends in the middle of %s", name);
      if (errno == EINTR || errno == EAGAIN) continue;
      if (errno != EINVAL && errno != ENOSYS) fail_errno(r, name, errno);
      r->can_splice = 0;
    }
    in_need(r, 1);
    size_t k = r->len - r->pos < want ? r->len - r->pos : want;
    if (fd >= 0 && write_all(fd, r->buf + r->pos, k) != 0) fail_errno(r, name, errno);
    r->pos += k;
    n -= k;
  }
}

static void in_skip_padding(struct tar_reader *r, unsigned long long size) {
  in_copy(r, -1, (BLOCK - size % BLOCK) % BLOCK, "padding");
}

/* Reads n bytes of entry data (a pax header, a long name) into a malloc'd, NUL-terminated buffer. */
static char *in_data(struct tar_reader *r, unsigned long long n) {
  if (n > 64 * 1024 * 1024) fail(r, "INVALID", "a tar metadata entry of %llu bytes", n);
  char *p = malloc((size_t)n + 1);
  if (!p) fail_errno(r, "tar input", ENOMEM);
  size_t done = 0;
  while (done < n) {
    in_need(r, 1);
    size_t k = r->len - r->pos < n - done ? r->len - r->pos : (size_t)(n - done);
    memcpy(p + done, r->buf + r->pos, k);
    r->pos += k;
    done += k;
  }
  p[n] = '\0';
  in_skip_padding(r, n);
  return p;
}

/* ---- header fields ---- */

/* An octal or base-256 number field; -1 when malformed. */
static int field_number(const char *f, size_t w, long long *out) {
  const unsigned char *u = (const unsigned char *)f;
  if (u[0] & 0x80) {
    int negative = u[0] == 0xff;
    unsigned long long v = negative ? ~0ULL : 0;
    for (size_t i = 0; i < w; i++) {
      unsigned b = i == 0 ? (u[0] & 0x7f) | (negative ? 0x80 : 0) : u[i];
      if (!negative && (v >> 55)) return -1;
      v = (v << 8) | b;
    }
    *out = (long long)v;
    return 0;
  }
  size_t i = 0;
  while (i < w && (f[i] == ' ' || f[i] == '\0')) {
    if (f[i] == '\0' && i + 1 < w && f[i + 1] == '\0') break;
    i++;
  }
  unsigned long long v = 0;
  for (; i < w && f[i] >= '0' && f[i] <= '7'; i++) {
    if (v >> 60) return -1;
    v = v * 8 + (unsigned)(f[i] - '0');
  }
  if (i < w && f[i] != ' ' && f[i] != '\0') return -1;
  *out = (long long)v;
  return 0;
}

static int checksum_ok(const struct ustar *h) {
  long long stored;
  if (field_number(h->chksum, sizeof h->chksum, &stored) != 0) return 0;
  const unsigned char *p = (const unsigned char *)h;
  long long usum = 0, ssum = 0;
  for (size_t i = 0; i < BLOCK; i++) {
    int in_sum = i >= offsetof(struct ustar, chksum) && i < offsetof(struct ustar, chksum) + sizeof h->chksum;
    usum += in_sum ? ' ' : p[i];
    ssum += in_sum ? ' ' : (signed char)p[i];
  }
  return stored == usum || stored == ssum;
}

/* A pax decimal time "S[.NNN]" into seconds and nanoseconds. */
static int pax_time(const char *s, long long *sec, long *nsec) {
  int negative = *s == '-';
  if (negative) s++;
  unsigned long long v = 0;
  if (*s < '0' || *s > '9') return -1;
  for (; *s >= '0' && *s <= '9'; s++) v = v * 10 + (unsigned)(*s - '0');
  long ns = 0;
  if (*s == '.') {
    int digits = 0;
    for (s++; *s >= '0' && *s <= '9'; s++, digits++)
      if (digits < 9) ns = ns * 10 + (*s - '0');
    for (; digits < 9; digits++) ns *= 10;
  }
  if (*s) return -1;
  *sec = negative ? -(long long)v : (long long)v;
  *nsec = negative ? 0 : ns;
  return 0;
}

static void pax_free(struct pax *p) {
  free(p->path);
  free(p->link);
  for (size_t i = 0; i < p->nxattrs; i++) {
    free(p->xattrs[i].name);
    free(p->xattrs[i].value);
  }
  free(p->xattrs);
  memset(p, 0, sizeof *p);
}

/* Applies one record's key and value (vlen bytes, maybe with NULs) to p. */
static int pax_apply(struct pax *p, const char *key, const char *value, size_t vlen) {
  int has_nul = strlen(value) != vlen;
  if (!strcmp(key, "path") || !strcmp(key, "linkpath")) {
    int is_path = key[0] == 'p';
    char **slot = is_path ? &p->path : &p->link;
    free(*slot);
    if (!(*slot = strdup(value))) return -1;
    *(is_path ? &p->bad_path : &p->bad_link) = has_nul;
    return 0;
  }
  if (!strncmp(key, "SCHILY.xattr.", 13)) {
    struct xattr *x = realloc(p->xattrs, (p->nxattrs + 1) * sizeof *x);
    if (!x) return -1;
    p->xattrs = x;
    x = &x[p->nxattrs];
    if (!(x->name = strdup(key + 13)) || !(x->value = malloc(vlen + 1))) return -1;
    memcpy(x->value, value, vlen);
    x->len = vlen;
    p->nxattrs++;
    return 0;
  }
  if (has_nul) return -1;
  if (!strcmp(key, "size")) return p->has_size = 1, parse_number(value, 10, &p->size);
  if (!strcmp(key, "uid")) return p->has_uid = 1, parse_number(value, 10, &p->uid);
  if (!strcmp(key, "gid")) return p->has_gid = 1, parse_number(value, 10, &p->gid);
  if (!strcmp(key, "mtime")) return p->has_mtime = 1, pax_time(value, &p->mtime, &p->mtime_ns);
  return 0; /* other keys (atime, ctime, uname, charset...) are not needed */
}

/* Parses "LEN key=value\n" records; -1 when malformed. */
static int pax_parse(struct pax *p, char *data, size_t n) {
  size_t off = 0;
  while (off < n) {
    if (data[off] == '\0') break; /* trailing padding some writers leave */
    size_t len = 0, i = off;
    while (i < n && data[i] >= '0' && data[i] <= '9') len = len * 10 + (size_t)(data[i++] - '0');
    if (i >= n || data[i] != ' ' || len < 5 || len > n - off || data[off + len - 1] != '\n') return -1;
    char *key = data + i + 1, *end = data + off + len - 1;
    char *eq = memchr(key, '=', (size_t)(end - key));
    if (!eq) return -1;
    *eq = '\0';
    *end = '\0';
    if (pax_apply(p, key, eq + 1, (size_t)(end - eq - 1)) != 0) return -1;
    off += len;
  }
  return 0;
}

/* ---- names ---- */

/*
 * Normalises an archive name: drops empty and "." components; NULL (UNSAFE)
 * for an absolute name or a ".." component. "" names the destination.
 */
static char *normalise(const char *name) {
  if (name[0] == '/') return NULL;
  char *out = malloc(strlen(name) + 1);
  if (!out) return NULL;
  size_t len = 0;
  for (const char *p = name; *p;) {
    const char *end = strchr(p, '/');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n == 2 && p[0] == '.' && p[1] == '.') {
      free(out);
      return NULL;
    }
    if (n && !(n == 1 && p[0] == '.')) {
      if (len) out[len++] = '/';
      memcpy(out + len, p, n);
      len += n;
    }
    p += n;
    while (*p == '/') p++;
  }
  out[len] = '\0';
  return out;
}

static size_t name_hash(const char *s, size_t len) {
  size_t h = 2166136261u;
  for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
  return h % 4096;
}

static enum kind seen_get(struct tar_reader *r, const char *name, size_t len) {
  for (struct seen *s = r->seen[name_hash(name, len)]; s; s = s->next)
    if (strlen(s->name) == len && !memcmp(s->name, name, len)) return s->kind;
  return K_NONE;
}

static void seen_set(struct tar_reader *r, const char *name, enum kind kind) {
  size_t slot = name_hash(name, strlen(name));
  for (struct seen *s = r->seen[slot]; s; s = s->next)
    if (!strcmp(s->name, name)) {
      s->kind = kind;
      return;
    }
  struct seen *s = malloc(sizeof *s);
  if (!s || !(s->name = strdup(name))) fail_errno(r, name, ENOMEM);
  s->kind = kind;
  s->next = r->seen[slot];
  r->seen[slot] = s;
}

/* Whether a relative symlink target, from the directory of `name`, climbs above the destination. */
static int climbs_out(const char *name, const char *target) {
  long depth = 0;
  for (const char *p = name; *p; p++) depth += *p == '/';
  for (const char *p = target; *p;) {
    const char *end = strchr(p, '/');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n == 2 && p[0] == '.' && p[1] == '.') {
      if (--depth < 0) return 1;
    } else if (n && !(n == 1 && p[0] == '.')) {
      depth++;
    }
    p += n;
    while (*p == '/') p++;
  }
  return 0;
}

/* The rules of PROTOCOL.md tar-in, checked before anything is written for the entry. */
static void check_entry(struct tar_reader *r, struct in_entry *e, const char *raw) {
  if (e->bad_name || !e->name) fail(r, "UNSAFE_PATH", "unsafe entry name %s", raw);
  if (!*e->name && e->type != '5') fail(r, "UNSAFE_PATH", "%s may only be a directory", raw);
  for (const char *p = e->name; (p = strchr(p, '/')); p++)
    if (seen_get(r, e->name, (size_t)(p - e->name)) == K_SYMLINK)
      fail(r, "UNSAFE_PATH", "%s lies below a symlink of the archive", e->name);
  enum kind before = seen_get(r, e->name, strlen(e->name));
  if (e->type == '5' && before != K_NONE && before != K_DIR)
    fail(r, "CONFLICT", "directory %s follows a non-directory of that name", e->name);
  if (e->type != '5' && before == K_DIR) fail(r, "CONFLICT", "%s would replace a directory", e->name);
  if (e->type == '1' || e->type == '2') {
    if (e->bad_link || !e->link || !*e->link) fail(r, "UNSAFE_PATH", "bad link target for %s", e->name);
  }
  if (e->type == '1') {
    char *target = normalise(e->link);
    enum kind k = target && *target ? seen_get(r, target, strlen(target)) : K_NONE;
    if (k == K_NONE || k == K_DIR) {
      free(target);
      fail(r, "UNSAFE_PATH", "hardlink %s names no earlier entry (%s)", e->name, e->link);
    }
    free(e->link);
    e->link = target;
  }
  if (e->type == '2' && e->link[0] != '/' && climbs_out(e->name, e->link))
    fail(r, "UNSAFE_PATH", "symlink %s -> %s leaves the destination", e->name, e->link);
}

/* ---- the destination tree ---- */

static void track_created(struct tar_reader *r, const char *name) {
  if (r->ncreated == r->capcreated) {
    size_t cap = r->capcreated ? r->capcreated * 2 : 64;
    char **n = realloc(r->created, cap * sizeof *n);
    if (!n) fail_errno(r, name, ENOMEM);
    r->created = n;
    r->capcreated = cap;
  }
  if (!(r->created[r->ncreated] = strdup(name))) fail_errno(r, name, ENOMEM);
  r->ncreated++;
}

/*
 * Opens the directory `dir` (a normalised name, "" for the destination) as
 * an O_PATH descriptor, walking from the destination without following
 * symlinks, except existing ones of the environment (they resolve inside
 * it). With `create`, missing directories are made (0755) and tracked.
 * Returns -1 with errno set; ENOTDIR when a component is not a directory.
 */
static int walk_to(struct tar_reader *r, const char *dir, int create) {
  int fd = openat(r->dest_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  char *copy = strdup(dir);
  if (fd < 0 || !copy) {
    free(copy);
    return -1;
  }
  for (char *p = copy; fd >= 0 && *p;) {
    char *slash = strchr(p, '/');
    if (slash) *slash = '\0';
    int nfd = openat(fd, p, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (nfd < 0 && errno == ENOENT && create) {
      int made = mkdirat(fd, p, 0755) == 0;
      if (made) track_created(r, copy);
      if (made || errno == EEXIST) {
        nfd = openat(fd, p, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      }
    }
    struct stat st;
    if (nfd < 0 && !r->host && (errno == ENOTDIR || errno == ELOOP) && fstatat(fd, p, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISLNK(st.st_mode))
      nfd = openat(fd, p, O_PATH | O_DIRECTORY | O_CLOEXEC);
    int e = errno;
    close(fd);
    errno = e;
    fd = nfd;
    if (!slash) break;
    *slash = '/';
    p = slash + 1;
  }
  int e = errno;
  free(copy);
  errno = e;
  return fd;
}

/* The parent directory of a normalised name (cached across entries) and its last component. */
static int parent_of(struct tar_reader *r, const char *name, const char **base) {
  const char *slash = strrchr(name, '/');
  *base = slash ? slash + 1 : name;
  size_t len = slash ? (size_t)(slash - name) : 0;
  if (r->parent_name && strlen(r->parent_name) == len && !memcmp(r->parent_name, name, len)) return r->parent_fd;
  if (r->parent_fd >= 0) close(r->parent_fd);
  free(r->parent_name);
  r->parent_fd = -1;
  r->parent_name = strndup(name, len);
  if (!r->parent_name) fail_errno(r, name, ENOMEM);
  r->parent_fd = walk_to(r, r->parent_name, 1);
  if (r->parent_fd < 0) {
    int e = errno;
    free(r->parent_name);
    r->parent_name = NULL;
    if (e == ENOTDIR) fail(r, "CONFLICT", "a parent of %s is not a directory", name);
    fail_errno(r, name, e);
  }
  return r->parent_fd;
}

/* Removes what this tar-in created, newest first, and a destDir it made. */
static void cleanup(struct tar_reader *r) {
  if (r->parent_fd >= 0) close(r->parent_fd);
  r->parent_fd = -1;
  free(r->parent_name);
  r->parent_name = NULL;
  while (r->ncreated > 0) {
    char *name = r->created[--r->ncreated];
    const char *slash = strrchr(name, '/');
    char *dir = strndup(name, slash ? (size_t)(slash - name) : 0);
    int fd = dir && r->dest_fd >= 0 ? walk_to(r, dir, 0) : -1;
    if (fd >= 0) remove_at(fd, slash ? slash + 1 : name);
    if (fd >= 0) close(fd);
    free(dir);
    free(name);
  }
  if (r->dest_created) {
    char *copy = strdup(r->dest_created);
    char *slash = copy ? strrchr(copy, '/') : NULL;
    if (slash) {
      *slash = '\0';
      int fd = open(slash == copy ? "/" : copy, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (fd >= 0) remove_at(fd, slash + 1);
      if (fd >= 0) close(fd);
    }
    free(copy);
  }
}

static int ignorable(int e) {
  return e == EPERM || e == ENOTSUP || e == EOPNOTSUPP || e == EINVAL || e == EACCES;
}

static void set_xattrs(struct tar_reader *r, int fd, const struct in_entry *e) {
  if (r->host) return;
  for (size_t i = 0; i < e->nxattrs; i++)
    if (fsetxattr(fd, e->xattrs[i].name, e->xattrs[i].value, e->xattrs[i].len, 0) != 0 && !ignorable(errno))
      fail_errno(r, e->name, errno);
}

/* Owner (when root), then mode, then mtime of a new non-directory below pfd. */
static void set_attrs_at(struct tar_reader *r, int pfd, const char *base, const struct in_entry *e) {
  if (r->root && fchownat(pfd, base, (uid_t)e->uid, (gid_t)e->gid, AT_SYMLINK_NOFOLLOW) != 0 && !ignorable(errno))
    fail_errno(r, e->name, errno);
  if (e->type != '2' && fchmodat(pfd, base, e->mode, 0) != 0) fail_errno(r, e->name, errno);
  struct timespec ts[2] = {{0, UTIME_OMIT}, {(time_t)e->mtime, e->mtime_ns}};
  if (utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW) != 0 && !ignorable(errno)) fail_errno(r, e->name, errno);
}

/* Reads exactly n bytes of the archive file at offset into buf; fails on a short archive. */
static void archive_pread(struct tar_reader *r, char *buf, size_t n, off_t offset, const char *name) {
  size_t got = 0;
  while (got < n) {
    if (term_requested()) fail_errno(r, "tar-in", ECANCELED);
    ssize_t k = pread(r->fd, buf + got, n - got, offset + (off_t)got);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) fail_errno(r, "tar input", errno);
    if (k == 0) fail(r, "INVALID", "the archive ends in the middle of %s", name);
    got += (size_t)k;
  }
}

/*
 * Copies a file entry's n bytes from the archive file to the new file fd
 * with direct writes of whole DIRECT_ALIGN blocks (the last, partial one
 * through the page cache), and leaves the reader after the content. 0 when
 * done; -1, with nothing consumed, when fd's filesystem refuses direct I/O.
 */
static int copy_direct(struct tar_reader *r, int fd, unsigned long long n, const char *name) {
  int flags = begin_direct(&r->direct_buf, fd);
  if (flags < 0) return -1;
  off_t end = lseek(r->fd, 0, SEEK_CUR);
  if (end < 0) fail_errno(r, "tar input", errno);
  off_t start = end - (off_t)(r->len - r->pos);
  unsigned long long whole = n & ~(unsigned long long)(DIRECT_ALIGN - 1), done = 0;
  while (done < n) {
    unsigned long long left = (done < whole ? whole : n) - done;
    size_t k = left < DIRECT_CHUNK ? (size_t)left : DIRECT_CHUNK;
    if (done == whole && fcntl(fd, F_SETFL, flags) != 0) fail_errno(r, name, errno);
    archive_pread(r, r->direct_buf, k, start + (off_t)done, name);
    ssize_t w = pwrite(fd, r->direct_buf, k, (off_t)done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EINVAL && done == 0) {
      fcntl(fd, F_SETFL, flags);
      return -1;
    }
    if (w < 0) fail_errno(r, name, errno);
    done += (unsigned long long)w;
    if ((size_t)w != k && done < whole) fcntl(fd, F_SETFL, flags), whole = done; /* the rest through the page cache */
  }
  r->pos = r->len = 0;
  if (lseek(r->fd, start + (off_t)n, SEEK_SET) < 0) fail_errno(r, "tar input", errno);
  return 0;
}

static void extract_file(struct tar_reader *r, int pfd, const char *base, struct in_entry *e) {
  int fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) fail_errno(r, e->name, errno);
  if (!(r->from_file && e->size >= DIRECT_MIN && copy_direct(r, fd, e->size, e->name) == 0))
    in_copy(r, fd, e->size, e->name);
  in_skip_padding(r, e->size);
  r->bytes += (long long)e->size;
  if (r->root && fchown(fd, (uid_t)e->uid, (gid_t)e->gid) != 0 && !ignorable(errno)) fail_errno(r, e->name, errno);
  if (fchmod(fd, e->mode) != 0) fail_errno(r, e->name, errno);
  set_xattrs(r, fd, e);
  struct timespec ts[2] = {{0, UTIME_OMIT}, {(time_t)e->mtime, e->mtime_ns}};
  if (futimens(fd, ts) != 0) fail_errno(r, e->name, errno);
  if (close(fd) != 0) fail_errno(r, e->name, errno);
}

static void remember_dir(struct tar_reader *r, const struct in_entry *e) {
  if (r->ndirs == r->capdirs) {
    size_t cap = r->capdirs ? r->capdirs * 2 : 64;
    struct dir_attr *d = realloc(r->dirs, cap * sizeof *d);
    if (!d) fail_errno(r, e->name, ENOMEM);
    r->dirs = d;
    r->capdirs = cap;
  }
  size_t depth = *e->name ? 1 : 0;
  for (const char *p = e->name; *p; p++) depth += *p == '/';
  struct dir_attr *d = &r->dirs[r->ndirs];
  *d = (struct dir_attr){strdup(e->name), e->mode, (uid_t)e->uid, (gid_t)e->gid, e->mtime, e->mtime_ns, depth, r->ndirs};
  if (!d->name) fail_errno(r, e->name, ENOMEM);
  r->ndirs++;
}

/* Opens a directory entry itself for reading (to set its attributes). */
static int open_entry_dir(struct tar_reader *r, const char *name) {
  if (!*name) return openat(r->dest_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  const char *base;
  int pfd = parent_of(r, name, &base);
  return openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

static void extract_dir(struct tar_reader *r, int pfd, const char *base, struct in_entry *e) {
  struct stat st;
  if (*e->name && (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode))) {
    if (unlinkat(pfd, base, 0) != 0 && errno != ENOENT) fail_errno(r, e->name, errno);
    track_created(r, e->name);
    if (mkdirat(pfd, base, 0700) != 0) fail_errno(r, e->name, errno);
  }
  remember_dir(r, e);
  if (e->nxattrs) {
    int fd = open_entry_dir(r, e->name);
    if (fd < 0) fail_errno(r, e->name, errno);
    set_xattrs(r, fd, e);
    close(fd);
  }
}

/* Creates one checked entry. */
static void extract(struct tar_reader *r, struct in_entry *e) {
  if (e->type == '5') {
    const char *base = "";
    int pfd = *e->name ? parent_of(r, e->name, &base) : -1;
    extract_dir(r, pfd, base, e);
    return;
  }
  if (r->host && e->type != '0' && e->type != '1' && e->type != '2') return;
  const char *base;
  int pfd = parent_of(r, e->name, &base);
  struct stat st;
  if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISDIR(st.st_mode)) fail(r, "CONFLICT", "%s would replace a directory", e->name);
    if (unlinkat(pfd, base, 0) != 0 && errno != ENOENT) fail_errno(r, e->name, errno);
  }
  track_created(r, e->name);
  if (e->type == '0') return extract_file(r, pfd, base, e);
  if (e->type == '1') {
    char *slash = strrchr(e->link, '/');
    char *dir = strndup(e->link, slash ? (size_t)(slash - e->link) : 0);
    int tfd = dir ? walk_to(r, dir, 0) : -1;
    free(dir);
    int linked = tfd >= 0 ? linkat(tfd, slash ? slash + 1 : e->link, pfd, base, 0) : -1;
    int err = errno;
    if (tfd >= 0) close(tfd);
    /* A host extraction drops devices and fifos, and links to them with them. */
    if (linked != 0 && !(r->host && err == ENOENT)) fail_errno(r, e->name, err);
    return;
  }
  if (e->type == '2') {
    if (symlinkat(e->link, pfd, base) != 0) fail_errno(r, e->name, errno);
  } else {
    mode_t type = e->type == '3' ? S_IFCHR : e->type == '4' ? S_IFBLK : S_IFIFO;
    dev_t dev = e->type == '6' ? 0 : makedev(e->devmajor, e->devminor);
    if (mknodat(pfd, base, type | 0600, dev) != 0) {
      if (errno == EPERM && type != S_IFIFO) return; /* devices need privilege: skipped where not permitted */
      fail_errno(r, e->name, errno);
    }
  }
  set_attrs_at(r, pfd, base, e);
}

static int deepest_first(const void *a, const void *b) {
  const struct dir_attr *x = a, *y = b;
  if (x->depth != y->depth) return x->depth < y->depth ? 1 : -1;
  return x->order < y->order ? -1 : x->order > y->order;
}

/* Owners, modes and mtimes of directories, deepest first, once nothing more goes into them. */
static void finish_dirs(struct tar_reader *r) {
  qsort(r->dirs, r->ndirs, sizeof *r->dirs, deepest_first);
  for (size_t i = 0; i < r->ndirs; i++) {
    struct dir_attr *d = &r->dirs[i];
    int fd = open_entry_dir(r, d->name);
    if (fd < 0) fail_errno(r, *d->name ? d->name : ".", errno);
    if (r->root && fchown(fd, d->uid, d->gid) != 0 && !ignorable(errno)) fail_errno(r, d->name, errno);
    if (fchmod(fd, d->mode) != 0) fail_errno(r, d->name, errno);
    struct timespec ts[2] = {{0, UTIME_OMIT}, {(time_t)d->mtime, d->mtime_ns}};
    if (futimens(fd, ts) != 0) fail_errno(r, d->name, errno);
    close(fd);
  }
}

/* ---- the archive ---- */

static void copy_xattrs(struct tar_reader *r, struct in_entry *e, const struct pax *p) {
  if (!p->nxattrs) return;
  struct xattr *x = realloc(e->xattrs, (e->nxattrs + p->nxattrs) * sizeof *x);
  if (!x) fail_errno(r, "xattrs", ENOMEM);
  memcpy(x + e->nxattrs, p->xattrs, p->nxattrs * sizeof *x);
  e->xattrs = x;
  e->nxattrs += p->nxattrs;
}

/* Builds an entry from its header and the pending pax and GNU long-name values. */
static char *entry_from(struct tar_reader *r, struct in_entry *e, const struct ustar *h, const struct pax *g,
                        const struct pax *x, char *long_name, char *long_link) {
  long long v;
  memset(e, 0, sizeof *e);
  e->type = h->typeflag;
  if (e->type == '\0' || e->type == '7') e->type = '0';
  if (e->type == 'D') e->type = '5';
  char raw[257];
  if (!memcmp(h->magic, "ustar\0", 6) && h->prefix[0])
    snprintf(raw, sizeof raw, "%.155s/%.100s", h->prefix, h->name);
  else
    snprintf(raw, sizeof raw, "%.100s", h->name);
  char *name = x->path ? x->path : long_name ? long_name : raw;
  e->bad_name = x->path ? x->bad_path : 0;
  if (e->type == '0' && *name && name[strlen(name) - 1] == '/') e->type = '5'; /* old-style directory */
  char link[101];
  snprintf(link, sizeof link, "%.100s", h->linkname);
  e->link = strdup(x->link ? x->link : long_link ? long_link : link);
  e->bad_link = x->link ? x->bad_link : 0;
  e->name = normalise(name);
  if (field_number(h->mode, sizeof h->mode, &v)) fail(r, "INVALID", "bad mode in %s", name);
  e->mode = (mode_t)(v & 07777);
  if (field_number(h->size, sizeof h->size, &v) || v < 0) fail(r, "INVALID", "bad size in %s", name);
  e->size = x->has_size ? x->size : g->has_size ? g->size : (unsigned long long)v;
  if (field_number(h->uid, sizeof h->uid, &v) || v < 0) fail(r, "INVALID", "bad uid in %s", name);
  e->uid = x->has_uid ? x->uid : g->has_uid ? g->uid : (unsigned long long)v;
  if (field_number(h->gid, sizeof h->gid, &v) || v < 0) fail(r, "INVALID", "bad gid in %s", name);
  e->gid = x->has_gid ? x->gid : g->has_gid ? g->gid : (unsigned long long)v;
  if (e->uid > UINT32_MAX || e->gid > UINT32_MAX) fail(r, "INVALID", "owner of %s out of range", name);
  if (field_number(h->mtime, sizeof h->mtime, &e->mtime)) fail(r, "INVALID", "bad mtime in %s", name);
  if (g->has_mtime) e->mtime = g->mtime, e->mtime_ns = g->mtime_ns;
  if (x->has_mtime) e->mtime = x->mtime, e->mtime_ns = x->mtime_ns;
  if (field_number(h->devmajor, sizeof h->devmajor, &v) == 0) e->devmajor = (unsigned)v;
  if (field_number(h->devminor, sizeof h->devminor, &v) == 0) e->devminor = (unsigned)v;
  copy_xattrs(r, e, g);
  copy_xattrs(r, e, x);
  if (!e->link) fail_errno(r, name, ENOMEM);
  return strdup(name);
}

/* Reads the rest of the input, so the sender's trailing padding never meets a closed pipe. */
static void drain(struct tar_reader *r) {
  r->pos = r->len = 0;
  while (in_fill(r, FILE_IO_CHUNK) == 0) r->pos = r->len = 0;
}

static void read_archive(struct tar_reader *r) {
  struct pax global = {0}, ext = {0};
  char *long_name = NULL, *long_link = NULL;
  for (;;) {
    if (term_requested()) fail_errno(r, "tar-in", ECANCELED);
    if (in_fill(r, BLOCK)) {
      if (r->len - r->pos) fail(r, "INVALID", "the archive ends in the middle of a header");
      return; /* end of input without the end-of-archive blocks: accepted, like GNU tar */
    }
    struct ustar h;
    memcpy(&h, r->buf + r->pos, BLOCK);
    r->pos += BLOCK;
    static const char zero[BLOCK];
    if (!memcmp(&h, zero, BLOCK)) return drain(r);
    if (!checksum_ok(&h)) fail(r, "INVALID", "bad tar header checksum");
    long long size;
    if (field_number(h.size, sizeof h.size, &size) || size < 0) fail(r, "INVALID", "bad size field");
    if (h.typeflag == 'x' || h.typeflag == 'g') {
      char *data = in_data(r, (unsigned long long)size);
      struct pax *p = h.typeflag == 'x' ? &ext : &global;
      if (pax_parse(p, data, (size_t)size) != 0) fail(r, "INVALID", "malformed pax header");
      free(data);
      continue;
    }
    if (h.typeflag == 'L' || h.typeflag == 'K') {
      char *data = in_data(r, (unsigned long long)size);
      size_t n = (size_t)size;
      while (n > 0 && data[n - 1] == '\0') n--;
      if (memchr(data, '\0', n)) fail(r, "UNSAFE_PATH", "a long name with a NUL byte");
      char **slot = h.typeflag == 'L' ? &long_name : &long_link;
      free(*slot);
      *slot = data;
      continue;
    }
    if (h.typeflag == 'V') {
      in_copy(r, -1, (unsigned long long)size, "volume label");
      in_skip_padding(r, (unsigned long long)size);
      continue;
    }
    if (h.typeflag && !strchr("01234567D", h.typeflag))
      fail(r, "INVALID", "unsupported tar entry type '%c'", h.typeflag);
    struct in_entry e;
    char *raw = entry_from(r, &e, &h, &global, &ext, long_name, long_link);
    check_entry(r, &e, raw ? raw : "?");
    seen_set(r, e.name, e.type == '5' ? K_DIR : e.type == '2' ? K_SYMLINK
                        : e.type == '1' ? seen_get(r, e.link, strlen(e.link)) : K_FILE);
    extract(r, &e);
    if (e.type != '0') {
      unsigned long long data = h.typeflag == 'D' ? e.size : 0;
      in_copy(r, -1, data, e.name);
      in_skip_padding(r, data);
    }
    r->entries++;
    free(raw);
    free(e.name);
    free(e.link);
    free(e.xattrs); /* the strings belong to the pax values freed below */
    pax_free(&ext);
    free(long_name);
    free(long_link);
    long_name = long_link = NULL;
  }
}

/* mkdir -p destDir, remembering the topmost directory it made. */
static void make_dest(struct tar_reader *r) {
  char *p = strdup(r->dest);
  if (!p) fail_errno(r, r->dest, ENOMEM);
  for (char *s = p + 1;; s++) {
    if (*s != '/' && *s != '\0') continue;
    char c = *s;
    *s = '\0';
    if (mkdir(p, 0755) == 0) {
      if (!r->dest_created && !(r->dest_created = strdup(p))) fail_errno(r, p, ENOMEM);
    } else if (errno != EEXIST) {
      fail_errno(r, p, errno);
    }
    *s = c;
    if (!c) break;
  }
  free(p);
  r->dest_fd = open(r->dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (r->dest_fd < 0 && errno == ENOTDIR) fail(r, "INVALID", "%s is not a directory", r->dest);
  if (r->dest_fd < 0) fail_errno(r, r->dest, errno);
}

/* Extracts the archive read from fd (the input pipe, or a regular file when from_file) into dest. */
static void extract_archive(const char *dest, int fd, int from_file, int host, int status_fd) __attribute__((noreturn));
static void extract_archive(const char *dest, int fd, int from_file, int host, int status_fd) {
  struct tar_reader *r = calloc(1, sizeof *r);
  if (!r || !(r->buf = malloc(FILE_IO_CHUNK))) end_errno(status_fd, dest, ENOMEM);
  r->fd = fd;
  r->status_fd = status_fd;
  r->from_file = from_file;
  r->host = host;
  r->can_splice = !from_file;
  r->root = geteuid() == 0;
  r->dest = dest;
  r->dest_fd = r->parent_fd = -1;
  make_dest(r);
  read_archive(r);
  finish_dirs(r);
  end_counts(status_fd, r->entries, r->bytes);
}

void tar_in(const char *dest, int in_fd, int status_fd) {
  extract_archive(dest, in_fd, 0, 0, status_fd);
}

void tar_in_host(const char *dest, int in_fd, int status_fd) {
  extract_archive(dest, in_fd, 0, 1, status_fd);
}

void tar_in_file(const char *dest, const char *archive, int status_fd) {
  int fd = open(archive, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) end_errno(status_fd, archive, errno);
  struct stat st;
  if (fstat(fd, &st) != 0) end_errno(status_fd, archive, errno);
  if (!S_ISREG(st.st_mode)) end_error(status_fd, "INVALID", "%s is not a regular file", archive);
  extract_archive(dest, fd, 1, 0, status_fd);
}
