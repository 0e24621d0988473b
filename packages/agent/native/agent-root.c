/*
 * execenv-agent: --root and --netns. The agent becomes PID 1 of a new pid
 * namespace whose root is DIR. Every mount is prepared detached (new mount
 * API) while the host is visible, and attached only after pivot_root has
 * made the host unreachable, so no path in the image can redirect a mount
 * onto the host.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <linux/magic.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "agent-root.h"

/* Syscall numbers are the same on every architecture since 5.2 (the unified table). */
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsconfig
#define SYS_fsconfig 431
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif
#ifndef SYS_pivot_root
#define SYS_pivot_root 155
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 0x00000001
#endif
#ifndef FSMOUNT_CLOEXEC
#define FSMOUNT_CLOEXEC 0x00000001
#endif
#ifndef FSCONFIG_SET_FLAG
#define FSCONFIG_SET_FLAG 0
#define FSCONFIG_SET_STRING 1
#define FSCONFIG_CMD_CREATE 6
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#endif
#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif
#ifndef MOUNT_ATTR_NOSUID
#define MOUNT_ATTR_NOSUID 0x00000002
#define MOUNT_ATTR_NODEV 0x00000004
#define MOUNT_ATTR_NOEXEC 0x00000008
#endif

static void warn(const char *what, const char *path) {
  fprintf(stderr, "execenv-agent: warning: %s %s: %s\n", what, path, strerror(errno));
}

/* ---- --netns --------------------------------------------------------- */

int root_join_netns(const char *file) {
  int fd = open(file, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
    fprintf(stderr, "execenv-agent: cannot join network namespace %s: %s\n", file, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  close(fd);
  return 0;
}

/* ---- the process outside --------------------------------------------- */

static int stopping;

static void stop_init(pid_t init) {
  stopping = 1;
  kill(init, SIGKILL);
}

/* Waits for the init; relays its readiness; kills it on end of stdin or SIGTERM. */
static void wait_outside(pid_t init, int ready_fd, int watch_stdin, const char *socket_path) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigprocmask(SIG_BLOCK, &set, NULL);
  int sfd = signalfd(-1, &set, SFD_CLOEXEC);
  if (sfd < 0) {
    stop_init(init);
    _exit(1);
  }
  int status = 0;
  for (;;) {
    struct pollfd p[3] = {{sfd, POLLIN, 0}, {ready_fd, POLLIN, 0}, {watch_stdin ? 0 : -1, POLLIN, 0}};
    if (poll(p, 3, -1) < 0 && errno != EINTR) stop_init(init);
    if (p[1].revents) {
      char c;
      if (read(ready_fd, &c, 1) == 1) write_all(1, "ready\n", 6);
      close(ready_fd);
      ready_fd = -1;
    }
    if (p[2].revents) {
      char buf[256];
      ssize_t n = read(0, buf, sizeof buf);
      if (n <= 0) {
        stop_init(init);
        watch_stdin = 0;
      }
    }
    if (p[0].revents) {
      struct signalfd_siginfo si;
      if (read(sfd, &si, sizeof si) == sizeof si && si.ssi_signo != SIGCHLD) stop_init(init);
      if (waitpid(init, &status, WNOHANG) == init) break;
    }
  }
  if (socket_path) unlink(socket_path);
  _exit(stopping ? 0 : WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

void root_split(const char *socket_path, int *ready_fd) {
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0 || unshare(CLONE_NEWPID) != 0) {
    fprintf(stderr, "execenv-agent: cannot create a pid namespace: %s\n", strerror(errno));
    exit(1);
  }
  pid_t init = fork();
  if (init < 0) {
    fprintf(stderr, "execenv-agent: fork: %s\n", strerror(errno));
    exit(1);
  }
  if (init > 0) {
    close(ready[1]);
    wait_outside(init, ready[0], socket_path != NULL, socket_path);
  }
  close(ready[0]);
  *ready_fd = ready[1];
  /* The init's own mount namespace: pivot_root must not move the root of the process outside. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || unshare(CLONE_NEWNS) != 0 ||
      mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
    fprintf(stderr, "execenv-agent: cannot create a private mount namespace: %s\n", strerror(errno));
    exit(1);
  }
  if (!socket_path) {
    close(ready[1]);
    *ready_fd = -1;
  }
}

void root_ready(int ready_fd) {
  write_all(ready_fd, "r", 1);
  close(ready_fd);
}

/* ---- detached mounts ------------------------------------------------- */

struct prepared {
  const char *path; /* where it goes, inside the new root */
  int is_file;      /* a device node: its mount point is an empty file */
  int fd;
};

static int clone_tree(const char *path, int recursive) {
  int fd = (int)syscall(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0));
  if (fd < 0) warn("cannot clone", path);
  return fd;
}

/* A fresh filesystem instance; opts are "key=value" strings or bare flags, NULL-terminated. */
static int new_fs(const char *type, const char *const *opts, unsigned attrs) {
  int fs = (int)syscall(SYS_fsopen, type, FSOPEN_CLOEXEC);
  if (fs < 0) {
    warn("cannot open filesystem", type);
    return -1;
  }
  for (; *opts; opts++) {
    char key[64];
    const char *eq = strchr(*opts, '=');
    int rc;
    if (eq) {
      snprintf(key, sizeof key, "%.*s", (int)(eq - *opts), *opts);
      rc = (int)syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, key, eq + 1, 0);
    } else {
      rc = (int)syscall(SYS_fsconfig, fs, FSCONFIG_SET_FLAG, *opts, NULL, 0);
    }
    if (rc != 0) warn("cannot set option of", type);
  }
  int mnt = -1;
  if (syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) != 0)
    warn("cannot create filesystem", type);
  else if ((mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, attrs)) < 0)
    warn("cannot mount filesystem", type);
  close(fs);
  return mnt;
}

/* Creates the mount point (inside the new root) and attaches fd there. */
static void attach(const struct prepared *m) {
  if (m->fd < 0) return;
  if (m->is_file) {
    int fd = open(m->path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd >= 0) close(fd);
  } else if (mkdir(m->path, 0755) != 0 && errno != EEXIST) {
    warn("cannot create mount point", m->path);
  }
  if (syscall(SYS_move_mount, m->fd, "", AT_FDCWD, m->path, MOVE_MOUNT_F_EMPTY_PATH) != 0) warn("cannot mount", m->path);
  close(m->fd);
}

/* mkdir -p inside the new root; symlinks on the way resolve there too. */
static int make_dirs(const char *path) {
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return errno = ENAMETOOLONG, -1;
  for (char *p = buf + 1;; p++) {
    if (*p != '/' && *p != '\0') continue;
    char c = *p;
    *p = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
    if (c == '\0') return 0;
    *p = c;
  }
}

/* Clones a bind's source while the host is visible, read-only when asked. */
static int prepare_bind(const struct root_bind *b, int *is_file) {
  struct stat st;
  if (stat(b->source, &st) != 0) {
    fprintf(stderr, "execenv-agent: cannot bind %s: %s\n", b->source, strerror(errno));
    return -1;
  }
  *is_file = !S_ISDIR(st.st_mode);
  int fd = (int)syscall(SYS_open_tree, AT_FDCWD, b->source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
  if (fd < 0) {
    fprintf(stderr, "execenv-agent: cannot bind %s: %s\n", b->source, strerror(errno));
    return -1;
  }
  struct {
    unsigned long long set, clr, propagation, userns;
  } attr = {MOUNT_ATTR_RDONLY, 0, 0, 0};
  if (b->read_only && syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0) {
    fprintf(stderr, "execenv-agent: cannot make the bind of %s read-only: %s\n", b->source, strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

/* Attaches a prepared bind at its target inside the new root, creating the mount point. */
static int attach_bind(const struct root_bind *b, int fd, int is_file) {
  char parent[4096];
  snprintf(parent, sizeof parent, "%s", b->target);
  char *slash = strrchr(parent, '/');
  if (slash && slash != parent) *slash = '\0';
  int ok = make_dirs(is_file ? parent : b->target) == 0;
  if (ok && is_file) {
    int f = open(b->target, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    ok = f >= 0;
    if (ok) close(f);
  }
  if (!ok || syscall(SYS_move_mount, fd, "", AT_FDCWD, b->target, MOVE_MOUNT_F_EMPTY_PATH) != 0) {
    fprintf(stderr, "execenv-agent: cannot bind %s on %s: %s\n", b->source, b->target, strerror(errno));
    close(fd);
    return -1;
  }
  close(fd);
  return 0;
}

static void make_link(const char *target, const char *path) {
  if (symlink(target, path) != 0 && errno != EEXIST) warn("cannot create", path);
}

/* Whether / is the initramfs, which pivot_root cannot move (a VM's agent started from its initramfs). */
static int root_is_initramfs(void) {
  struct statfs fs;
  return statfs("/", &fs) == 0 && (fs.f_type == RAMFS_MAGIC || fs.f_type == TMPFS_MAGIC);
}

static int pivot(const char *dir) {
  /* pivot_root needs the new root to be a mount point. */
  if (mount(dir, dir, NULL, MS_BIND | MS_REC, NULL) != 0 || chdir(dir) != 0) goto fail;
  if (syscall(SYS_pivot_root, ".", ".") == 0) {
    if (umount2(".", MNT_DETACH) != 0 || chdir("/") != 0) goto fail;
    return 0;
  }
  /* The initramfs stays underneath, as switch_root leaves it: move the new root over it. */
  if (errno != EINVAL || !root_is_initramfs() || mount(".", "/", NULL, MS_MOVE, NULL) != 0 || chroot(".") != 0 ||
      chdir("/") != 0)
    goto fail;
  return 0;
fail:
  fprintf(stderr, "execenv-agent: cannot pivot into %s: %s\n", dir, strerror(errno));
  return -1;
}

int root_pivot(const char *dir, const struct root_bind *binds, size_t nbinds) {
  static const char *const proc_opts[] = {NULL};
  static const char *const dev_opts[] = {"mode=755", "size=65536k", NULL};
  static const char *const shm_opts[] = {"mode=1777", NULL};
  static const char *const pts_opts[] = {"newinstance", "ptmxmode=0666", "mode=620", NULL};
  static const char *const nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
  enum { NNODES = sizeof nodes / sizeof *nodes };
  /* Order matters: /dev before what lies in it. */
  struct prepared m[4 + NNODES + 2];
  size_t n = 0;
  m[n++] = (struct prepared){"/proc", 0, new_fs("proc", proc_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC)};
  m[n++] = (struct prepared){"/sys", 0, clone_tree("/sys", 1)};
  m[n++] = (struct prepared){"/dev", 0, new_fs("tmpfs", dev_opts, MOUNT_ATTR_NOSUID)};
  char host_paths[NNODES][32], inner_paths[NNODES][32];
  for (size_t i = 0; i < NNODES; i++) {
    snprintf(host_paths[i], sizeof host_paths[i], "/dev/%s", nodes[i]);
    snprintf(inner_paths[i], sizeof inner_paths[i], "/dev/%s", nodes[i]);
    m[n++] = (struct prepared){inner_paths[i], 1, clone_tree(host_paths[i], 0)};
  }
  m[n++] = (struct prepared){"/dev/pts", 0, new_fs("devpts", pts_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)};
  m[n++] = (struct prepared){"/dev/shm", 0, new_fs("tmpfs", shm_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)};
  int bind_fds[nbinds ? nbinds : 1], bind_files[nbinds ? nbinds : 1];
  for (size_t i = 0; i < nbinds; i++)
    if ((bind_fds[i] = prepare_bind(&binds[i], &bind_files[i])) < 0) return -1;
  if (pivot(dir) != 0) return -1;
  for (size_t i = 0; i < n; i++) attach(&m[i]);
  for (size_t i = 0; i < nbinds; i++)
    if (attach_bind(&binds[i], bind_fds[i], bind_files[i]) != 0) return -1;
  make_link("pts/ptmx", "/dev/ptmx");
  make_link("/proc/self/fd", "/dev/fd");
  make_link("/proc/self/fd/0", "/dev/stdin");
  make_link("/proc/self/fd/1", "/dev/stdout");
  make_link("/proc/self/fd/2", "/dev/stderr");
  return 0;
}
