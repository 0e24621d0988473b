/*
 * execenv-exec-server: runs the commands of one chroot environment.
 *
 * usage: execenv-exec-server ROOT PERSONALITY NETNS SOCKET OWNER
 *   PERSONALITY is "-" or "linux32"; NETNS is "-" or a network namespace
 *   file (a bind mount of /proc/PID/ns/net) the server joins once, so every
 *   command of the environment shares one network. The socket is private
 *   to the server's user, or given to uid OWNER unless OWNER is "-" (the
 *   SDK's own user, when the server runs through sudo).
 *
 * Starting a process from Node costs milliseconds; forking this small
 * server costs microseconds. So one server per environment listens on the
 * unix socket SOCKET, prints "ready" on stdout, and exits when its stdin
 * reaches end of file (the SDK closed the environment, or died).
 *
 * Each connection is one command. The client sends frames of
 * [type:1][length:4, big endian][payload]:
 *   'R' first and once: CWD\0UID\0GID\0GROUPS\0N\0NAME=VALUE\0 (N times) ARGV...\0
 *       GROUPS is a comma-separated list of supplementary gids, "" for none;
 *       the N entries are the command's whole environment.
 *   'I' bytes for the command's stdin;  'E' end of stdin.
 * and reads frames back:
 *   '1' stdout bytes;  '2' stderr bytes;
 *   'X' last: "exit N" or "signal N", or "error MESSAGE" when the command
 *       never started.
 * Closing the connection early kills the command and everything it started.
 *
 * Per connection the server forks a supervisor, which enters a new mount
 * and pid namespace and forks the init: PID 1 of that namespace, with /proc
 * of its own. The init forks the command (a PID 1 ignores signals it has no
 * handler for, so the command must not be one), forwards termination
 * signals, reaps orphans and exits with the command, which tears the whole
 * namespace down. The supervisor relays stdio between pipes (so commands
 * that open /dev/stdin behave as under any shell) and the connection.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_REQUEST (16 << 20)
#define CHUNK 65536

static const char *root_dir;
static int linux32;

/* ---- framing -------------------------------------------------------- */

static int write_all(int fd, const void *buf, size_t len) {
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

static int read_all(int fd, void *buf, size_t len) {
  char *p = buf;
  while (len > 0) {
    ssize_t n = read(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static int send_frame(int fd, char type, const void *data, size_t len) {
  unsigned char head[5] = {(unsigned char)type, (unsigned char)(len >> 24), (unsigned char)(len >> 16),
                           (unsigned char)(len >> 8), (unsigned char)len};
  struct iovec iov[2] = {{head, sizeof head}, {(void *)data, len}};
  ssize_t n;
  do n = writev(fd, iov, len ? 2 : 1);
  while (n < 0 && errno == EINTR);
  if (n < 0) return -1;
  size_t done = (size_t)n;
  if (done < sizeof head) {
    if (write_all(fd, head + done, sizeof head - done) != 0) return -1;
    done = sizeof head;
  }
  return write_all(fd, (const char *)data + (done - sizeof head), len - (done - sizeof head));
}

/* Sends "error MESSAGE" as the last frame and ends the supervisor. */
static void fail(int conn, const char *fmt, ...) {
  char msg[512] = "error ";
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg + 6, sizeof msg - 6, fmt, ap);
  va_end(ap);
  send_frame(conn, 'X', msg, strlen(msg));
  shutdown(conn, SHUT_WR);
  char drain[4096];
  while (read(conn, drain, sizeof drain) > 0) {
  }
  _exit(1);
}

/* ---- the request ---------------------------------------------------- */

struct request {
  char *cwd;
  uid_t uid;
  gid_t gid;
  gid_t groups[256];
  int ngroups;
  char **envp;
  char **argv;
};

static int parse_groups(const char *list, gid_t *out, int max) {
  int n = 0;
  const char *p = list;
  while (*p && n < max) {
    char *end;
    unsigned long v = strtoul(p, &end, 10);
    if (end == p) break;
    out[n++] = (gid_t)v;
    p = *end == ',' ? end + 1 : end;
  }
  return n;
}

/* Splits the NUL-terminated fields of an 'R' payload; returns 0 when well formed. */
static int parse_request(char *buf, size_t len, struct request *req) {
  if (len == 0 || buf[len - 1] != '\0') return -1;
  size_t count = 0;
  for (size_t i = 0; i < len; i++) count += buf[i] == '\0';
  char **fields = calloc(count + 2, sizeof *fields);
  if (!fields) return -1;
  char *p = buf;
  for (size_t i = 0; i < count; i++) {
    fields[i] = p;
    p += strlen(p) + 1;
  }
  if (count < 6) return -1;
  char *end;
  long nenv = strtol(fields[4], &end, 10);
  if (*end || nenv < 0 || (size_t)nenv > count - 6) return -1;
  req->cwd = fields[0];
  req->uid = (uid_t)strtoul(fields[1], NULL, 10);
  req->gid = (gid_t)strtoul(fields[2], NULL, 10);
  req->ngroups = parse_groups(fields[3], req->groups, 256);
  /* envp and argv each need a NULL after them: shift argv one slot right. */
  req->envp = fields + 5;
  memmove(fields + 6 + nenv, fields + 5 + nenv, (count - 5 - (size_t)nenv) * sizeof *fields);
  req->envp[nenv] = NULL;
  req->argv = fields + 6 + nenv;
  req->argv[count - 5 - (size_t)nenv] = NULL;
  return 0;
}

/* ---- inside the namespace ------------------------------------------- */

extern char **environ;

static void run_command(const struct request *req) {
  if (linux32 && personality(PER_LINUX32) == -1) {
    fprintf(stderr, "execenv: personality linux32: %s\n", strerror(errno));
    _exit(126);
  }
  if (chroot(root_dir) != 0) {
    fprintf(stderr, "execenv: chroot %s: %s\n", root_dir, strerror(errno));
    _exit(126);
  }
  if (chdir(req->cwd) != 0) {
    fprintf(stderr, "execenv: cannot change directory to %s: %s\n", req->cwd, strerror(errno));
    _exit(126);
  }
  /* In a user namespace with setgroups denied, dropping to no groups is already the state we have. */
  int groups_ok = setgroups((size_t)req->ngroups, req->groups) == 0 || (errno == EPERM && req->ngroups == 0);
  if (!groups_ok || setgid(req->gid) != 0 || setuid(req->uid) != 0) {
    fprintf(stderr, "execenv: cannot switch to uid %u gid %u: %s\n", req->uid, req->gid, strerror(errno));
    _exit(126);
  }
  signal(SIGPIPE, SIG_DFL);
  environ = req->envp;
  execvp(req->argv[0], req->argv);
  int err = errno;
  fprintf(stderr, "execenv: cannot execute %s: %s\n", req->argv[0], strerror(err));
  _exit(err == ENOENT ? 127 : 126);
}

static pid_t command;

static void forward(int sig) {
  if (command > 0) kill(command, sig);
}

/* PID 1 of the command's namespace; reports the command's wait status on status_fd. */
static void run_init(const struct request *req, int status_fd) {
  char proc[4096];
  snprintf(proc, sizeof proc, "%s/proc", root_dir);
  if (mount("proc", proc, "proc", MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL) != 0) {
    fprintf(stderr, "execenv: mount proc on %s: %s\n", proc, strerror(errno));
    _exit(125);
  }
  command = fork();
  if (command < 0) {
    fprintf(stderr, "execenv: fork: %s\n", strerror(errno));
    _exit(125);
  }
  if (command == 0) {
    close(status_fd);
    run_command(req);
  }
  static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
  for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++) signal(forwarded[i], forward);
  for (;;) {
    int status;
    pid_t pid = wait(&status);
    if (pid < 0 && errno == EINTR) continue;
    if (pid < 0) _exit(125);
    if (pid != command) continue;
    char line[32];
    int len = WIFSIGNALED(status) ? snprintf(line, sizeof line, "signal %d", WTERMSIG(status))
                                  : snprintf(line, sizeof line, "exit %d", WEXITSTATUS(status));
    _exit(write(status_fd, line, (size_t)len) == len ? 0 : 125);
  }
}

/* ---- the supervisor: one per connection ----------------------------- */

static pid_t init_pid;

static void kill_tree_and_exit(void) {
  if (init_pid > 0) {
    kill(init_pid, SIGKILL);
    waitpid(init_pid, NULL, 0);
  }
  _exit(0);
}

/* Relays stdio until the command is done, or kills it when the client goes away. */
static void relay(int conn, int in_fd, int out_fd, int err_fd, int status_fd) {
  static char out_buf[CHUNK], conn_buf[CHUNK];
  char status[64] = "";
  size_t status_len = 0;
  /* What arrived on the connection: conn_buf[conn_pos, conn_end). */
  size_t conn_pos = 0, conn_end = 0;
  /* The frame being parsed: its type and the payload bytes still to come. */
  char frame_type = 0;
  unsigned char head[5];
  size_t head_len = 0, frame_left = 0;
  int fds[3] = {out_fd, err_fd, status_fd};
  fcntl(in_fd, F_SETFL, O_NONBLOCK);

  while (fds[0] >= 0 || fds[1] >= 0 || fds[2] >= 0) {
    /* Parse what is buffered; stdin bytes wait until the pipe takes them. */
    while (conn_pos < conn_end) {
      if (frame_left == 0 && frame_type != 'I') {
        head[head_len++] = (unsigned char)conn_buf[conn_pos++];
        if (head_len < sizeof head) continue;
        head_len = 0;
        frame_type = (char)head[0];
        frame_left = (size_t)head[1] << 24 | (size_t)head[2] << 16 | (size_t)head[3] << 8 | head[4];
        if (frame_type == 'E') {
          if (in_fd >= 0) close(in_fd);
          in_fd = -1;
        } else if (frame_type != 'I') {
          kill_tree_and_exit();
        }
        if (frame_left == 0) frame_type = 0;
        continue;
      }
      size_t n = conn_end - conn_pos < frame_left ? conn_end - conn_pos : frame_left;
      if (in_fd >= 0) {
        ssize_t w = write(in_fd, conn_buf + conn_pos, n);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) break;
        if (w < 0) { /* the command closed its stdin: drop the rest */
          close(in_fd);
          in_fd = -1;
        } else {
          n = (size_t)w;
        }
      }
      conn_pos += n;
      frame_left -= n;
      if (frame_left == 0) frame_type = 0;
    }
    int stdin_blocked = conn_pos < conn_end;

    struct pollfd p[5];
    int np = 0;
    p[np++] = (struct pollfd){conn, (short)((stdin_blocked ? 0 : POLLIN) | POLLRDHUP), 0};
    int in_slot = -1;
    if (stdin_blocked && in_fd >= 0) {
      in_slot = np;
      p[np++] = (struct pollfd){in_fd, POLLOUT, 0};
    }
    int first_out = np;
    for (int i = 0; i < 3; i++) p[np++] = (struct pollfd){fds[i], POLLIN, 0};
    if (poll(p, (nfds_t)np, -1) < 0) {
      if (errno == EINTR) continue;
      kill_tree_and_exit();
    }
    if (p[0].revents & (POLLRDHUP | POLLHUP | POLLERR)) kill_tree_and_exit();
    if (p[0].revents & POLLIN) {
      if (conn_pos == conn_end) conn_pos = conn_end = 0;
      ssize_t n = read(conn, conn_buf + conn_end, sizeof conn_buf - conn_end);
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) kill_tree_and_exit();
      if (n > 0) conn_end += (size_t)n;
    }
    if (in_slot >= 0 && (p[in_slot].revents & (POLLERR | POLLHUP))) {
      close(in_fd);
      in_fd = -1;
    }
    for (int i = 0; i < 3; i++) {
      if (!p[first_out + i].revents) continue;
      char *buf = i == 2 ? status + status_len : out_buf;
      size_t room = i == 2 ? sizeof status - 1 - status_len : sizeof out_buf;
      ssize_t n = read(fds[i], buf, room);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || room == 0) {
        close(fds[i]);
        fds[i] = -1;
      } else if (i == 2) {
        status_len += (size_t)n;
      } else if (send_frame(conn, i == 0 ? '1' : '2', out_buf, (size_t)n) != 0) {
        kill_tree_and_exit();
      }
    }
  }
  waitpid(init_pid, NULL, 0);
  if (status_len == 0) fail(conn, "the command's init ended without reporting its status");
  send_frame(conn, 'X', status, status_len);
  /* Read until the client closes, so its stdin writes never fail before it has read the status. */
  shutdown(conn, SHUT_WR);
  while (read(conn, conn_buf, sizeof conn_buf) > 0) {
  }
  _exit(0);
}

static void supervise(int conn) {
  signal(SIGCHLD, SIG_DFL);
  signal(SIGPIPE, SIG_IGN);
  unsigned char head[5];
  if (read_all(conn, head, sizeof head) != 0) _exit(1);
  size_t len = (size_t)head[1] << 24 | (size_t)head[2] << 16 | (size_t)head[3] << 8 | head[4];
  if (head[0] != 'R' || len > MAX_REQUEST) fail(conn, "malformed request");
  char *buf = malloc(len + 1);
  if (!buf || read_all(conn, buf, len) != 0) _exit(1);
  struct request req;
  if (parse_request(buf, len, &req) != 0 || !req.argv[0]) fail(conn, "malformed request");

  if (unshare(CLONE_NEWNS | CLONE_NEWPID) != 0) fail(conn, "unshare: %s", strerror(errno));
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) fail(conn, "make mounts private: %s", strerror(errno));
  int in[2], out[2], err[2], status[2];
  if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) || pipe2(status, O_CLOEXEC))
    fail(conn, "pipe: %s", strerror(errno));
  init_pid = fork();
  if (init_pid < 0) fail(conn, "fork: %s", strerror(errno));
  if (init_pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0) _exit(125);
    /* The init must not hold the supervisor's ends: the command would never see end of file on stdin. */
    int others[] = {in[0], in[1], out[0], out[1], err[0], err[1], status[0], conn};
    for (size_t i = 0; i < sizeof others / sizeof *others; i++) close(others[i]);
    run_init(&req, status[1]);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  close(status[1]);
  relay(conn, in[1], out[0], err[0], status[0]);
}

/* ---- the server ----------------------------------------------------- */

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: execenv-exec-server ROOT PERSONALITY NETNS SOCKET OWNER\n");
    return 2;
  }
  root_dir = argv[1];
  linux32 = strcmp(argv[2], "linux32") == 0;
  if (strcmp(argv[3], "-") != 0) {
    int fd = open(argv[3], O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
      fprintf(stderr, "execenv: cannot join network namespace %s: %s\n", argv[3], strerror(errno));
      return 1;
    }
    close(fd);
  }
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(argv[4]) >= sizeof addr.sun_path) {
    fprintf(stderr, "execenv: socket path too long: %s\n", argv[4]);
    return 1;
  }
  strcpy(addr.sun_path, argv[4]);
  int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  mode_t umask_before = umask(077); /* only the owner may connect */
  int bound = listener >= 0 && bind(listener, (struct sockaddr *)&addr, sizeof addr) == 0;
  umask(umask_before);
  if (!bound || listen(listener, 64) != 0) {
    fprintf(stderr, "execenv: cannot listen on %s: %s\n", argv[4], strerror(errno));
    return 1;
  }
  if (strcmp(argv[5], "-") != 0 && chown(argv[4], (uid_t)strtoul(argv[5], NULL, 10), (gid_t)-1) != 0) {
    fprintf(stderr, "execenv: cannot give %s to uid %s: %s\n", argv[4], argv[5], strerror(errno));
    return 1;
  }
  signal(SIGCHLD, SIG_IGN); /* supervisors are reaped by the kernel */
  signal(SIGPIPE, SIG_IGN);
  if (write_all(1, "ready\n", 6) != 0) return 1;
  struct pollfd p[2] = {{0, POLLIN, 0}, {listener, POLLIN, 0}};
  for (;;) {
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    if (p[0].revents) {
      char c[256];
      ssize_t n = read(0, c, sizeof c);
      if (n <= 0) break;
    }
    if (p[1].revents & POLLIN) {
      int conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
      if (conn < 0) continue;
      pid_t pid = fork();
      if (pid == 0) {
        close(listener);
        supervise(conn);
      }
      close(conn);
    }
  }
  unlink(argv[4]);
  return 0;
}
