/*
 * execenv-agent as a client on the host: moves a directory between a host
 * directory and an agent listening on a unix socket, so that the archive
 * goes from one process straight to the other and through nothing else.
 *
 *   --pull SOCKET SRC DEST  the agent's tar-out of SRC, extracted into the
 *                           host directory DEST by tar_in_host;
 *   --push SOCKET SRC DEST  tar_out of the host directory SRC, extracted by
 *                           the agent's tar-in into DEST.
 *
 * The outcome goes to stdout as an END payload (PROTOCOL.md, Outcomes):
 * exit status 0 with `ok entries=N bytes=N`, 1 with `error CODE MESSAGE`.
 * A broken connection or protocol is exit status 2 with a message on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "agent-tar.h"

enum { F_HELLO = 1, F_OPEN, F_DATA, F_EOF, F_WINDOW, F_KILL = 7, F_END = 8, F_ERROR = 0x0c };

#define HEADER 9
#define MAX_PAYLOAD (1u << 20)
#define INITIAL_WINDOW 262144u
/* Output the agent may have in flight on a pull, granted at OPEN: as much as the agent's own input window. */
#define PULL_WINDOW (4u << 20)
#define GRANT_STEP (1u << 20)
#define CHANNEL 1
#define STATUS_MAX 65536

struct frame {
  uint32_t len, channel;
  uint8_t type;
};

static void broken(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void broken(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("execenv-agent: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(2);
}

static void put32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

static uint32_t get32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int read_exact(int fd, void *buf, size_t n) {
  for (size_t got = 0; got < n;) {
    ssize_t k = read(fd, (char *)buf + got, n - got);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    got += (size_t)k;
  }
  return 0;
}

static void send_frame(int sock, uint8_t type, const void *payload, uint32_t len) {
  unsigned char h[HEADER];
  put32(h, len);
  put32(h + 4, type == F_HELLO ? 0 : CHANNEL);
  h[8] = type;
  if (write_all(sock, h, HEADER) != 0 || (len && write_all(sock, payload, len) != 0))
    broken("lost the connection to the agent: %s", strerror(errno));
}

static void send_window(int sock, uint8_t stream, uint32_t increment) {
  unsigned char p[5] = {stream};
  put32(p + 1, increment);
  send_frame(sock, F_WINDOW, p, sizeof p);
}

static void read_header(int sock, struct frame *f) {
  unsigned char h[HEADER];
  if (read_exact(sock, h, HEADER) != 0) broken("the agent closed the connection");
  f->len = get32(h), f->channel = get32(h + 4), f->type = h[8];
  if (f->len > MAX_PAYLOAD) broken("protocol error: a frame of %u bytes", f->len);
}

static char *read_payload(int sock, uint32_t len) {
  char *p = malloc(len + 1);
  if (!p || read_exact(sock, p, len) != 0) broken("the agent closed the connection");
  p[len] = '\0';
  return p;
}

/* Connects and shakes hands; the socket, or exits 2. */
static int connect_agent(const char *path) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof a.sun_path) broken("socket path too long: %s", path);
  strcpy(a.sun_path, path);
  int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock < 0 || connect(sock, (struct sockaddr *)&a, sizeof a) != 0)
    broken("cannot connect to %s: %s", path, strerror(errno));
  static const char hello[] = "execenv-agent 1";
  send_frame(sock, F_HELLO, hello, sizeof hello - 1);
  struct frame f;
  read_header(sock, &f);
  char *p = read_payload(sock, f.len);
  if (f.type == F_ERROR) broken("the agent refused the session: %s", p);
  if (f.type != F_HELLO || strncmp(p, hello, sizeof hello - 1) != 0) broken("protocol error: no HELLO from the agent");
  free(p);
  return sock;
}

/* OPEN of `op` with one path argument on the transfer's channel. */
static void open_channel(int sock, const char *op, const char *path) {
  size_t a = strlen(op) + 1, b = strlen(path) + 1;
  if (a + b > MAX_PAYLOAD) broken("path too long: %s", path);
  char *p = malloc(a + b);
  if (!p) broken("out of memory");
  memcpy(p, op, a);
  memcpy(p + a, path, b);
  send_frame(sock, F_OPEN, p, (uint32_t)(a + b));
  free(p);
}

/* Forks `side` (tar_in_host or tar_out on the host) with its data on data_fd and its outcome on a pipe. */
static pid_t start_side(int is_pull, const char *path, int data_fd, int other_fd, int sock, int *status_fd) {
  int st[2];
  if (pipe2(st, O_CLOEXEC) != 0) broken("pipe: %s", strerror(errno));
  pid_t pid = fork();
  if (pid < 0) broken("fork: %s", strerror(errno));
  if (pid == 0) {
    close(st[0]);
    close(other_fd);
    close(sock);
    if (is_pull) host_tar_in(path, data_fd, st[1]);
    tar_out(path, 0, data_fd, st[1]);
  }
  close(st[1]);
  close(data_fd);
  *status_fd = st[0];
  return pid;
}

/* The outcome the forked side wrote, once it exited; its length in *len. */
static char *side_outcome(pid_t pid, int status_fd, size_t *len) {
  char *buf = malloc(STATUS_MAX);
  if (!buf) broken("out of memory");
  size_t n = 0;
  for (ssize_t k; n < STATUS_MAX && (k = read(status_fd, buf + n, STATUS_MAX - n)) != 0;) {
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) break;
    n += (size_t)k;
  }
  close(status_fd);
  int ws;
  while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
  }
  if (n == 0) {
    n = (size_t)snprintf(buf, STATUS_MAX, "error%cIO%cthe host side of the transfer died", 0, 0) + 1;
  }
  *len = n;
  return buf;
}

static int is_ok(const char *outcome) {
  return !strcmp(outcome, "ok");
}

static int finish(const char *outcome, size_t len) {
  if (write_all(1, outcome, len) != 0) return 2;
  return is_ok(outcome) ? 0 : 1;
}

/* Moves len bytes from the socket into fd: spliced where the kernel can, else copied. */
static int relay_in(int sock, int fd, uint32_t len, char *buf) {
  static int can_splice = 1;
  while (len > 0) {
    if (can_splice) {
      ssize_t k = splice(sock, NULL, fd, NULL, len, SPLICE_F_MOVE);
      if (k > 0) {
        len -= (uint32_t)k;
        continue;
      }
      if (k == 0) broken("the agent closed the connection");
      if (errno == EINTR) continue;
      if (errno != EINVAL && errno != ENOSYS) return -1;
      can_splice = 0;
    }
    uint32_t want = len < MAX_PAYLOAD ? len : MAX_PAYLOAD;
    if (read_exact(sock, buf, want) != 0) broken("the agent closed the connection");
    if (write_all(fd, buf, want) != 0) return -1;
    len -= want;
  }
  return 0;
}

static int pull(int sock, const char *src, const char *dest) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) broken("pipe: %s", strerror(errno));
  fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
  open_channel(sock, "tar-out", src);
  send_window(sock, 1, PULL_WINDOW - INITIAL_WINDOW);
  int status_fd;
  pid_t pid = start_side(1, dest, p[0], p[1], sock, &status_fd);
  char *buf = malloc(MAX_PAYLOAD);
  if (!buf) broken("out of memory");
  int out = p[1];
  uint32_t owed = 0;
  char *end = NULL;
  size_t end_len = 0;
  while (!end) {
    struct frame f;
    read_header(sock, &f);
    if (f.type == F_DATA && f.channel == CHANNEL && f.len >= 1) {
      unsigned char stream;
      if (read_exact(sock, &stream, 1) != 0) broken("the agent closed the connection");
      uint32_t n = f.len - 1;
      if (out < 0 || relay_in(sock, out, n, buf) != 0) {
        /* The extraction stopped reading (it failed): its outcome says why. */
        send_frame(sock, F_KILL, NULL, 0);
        if (out >= 0) close(out);
        out = -1;
        size_t len;
        char *outcome = side_outcome(pid, status_fd, &len);
        return finish(outcome, len);
      }
      owed += n;
      if (owed >= GRANT_STEP) send_window(sock, 1, owed), owed = 0;
      continue;
    }
    char *payload = read_payload(sock, f.len);
    if (f.type == F_ERROR) broken("the agent ended the session: %s", payload);
    if (f.type == F_EOF && out >= 0) close(out), out = -1;
    if (f.type == F_END) end = payload, end_len = f.len;
    else free(payload);
  }
  if (out >= 0) close(out);
  size_t len;
  char *outcome = side_outcome(pid, status_fd, &len);
  /* The source's failure is the cause; the extraction then only saw an archive cut short. */
  if (!is_ok(end)) return finish(end, end_len);
  return finish(outcome, len);
}

static int push(int sock, const char *src, const char *dest) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) broken("pipe: %s", strerror(errno));
  fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
  int status_fd;
  pid_t pid = start_side(0, src, p[1], p[0], sock, &status_fd);
  open_channel(sock, "tar-in", dest);
  int in = p[0];
  uint64_t window = INITIAL_WINDOW;
  char *buf = malloc(HEADER + MAX_PAYLOAD);
  if (!buf) broken("out of memory");
  for (;;) {
    struct pollfd fds[2] = {{.fd = sock, .events = POLLIN}, {.fd = in, .events = POLLIN}};
    int nfds = in >= 0 && window > 0 ? 2 : 1;
    if (poll(fds, (nfds_t)nfds, -1) < 0) {
      if (errno == EINTR) continue;
      broken("poll: %s", strerror(errno));
    }
    if (nfds == 2 && fds[1].revents) {
      size_t want = window < MAX_PAYLOAD - 1 ? (size_t)window : MAX_PAYLOAD - 1;
      ssize_t k = read(in, buf + HEADER + 1, want);
      if (k < 0 && errno == EINTR) continue;
      if (k < 0) broken("reading the archive: %s", strerror(errno));
      if (k == 0) {
        close(in);
        in = -1;
        size_t len;
        char *outcome = side_outcome(pid, status_fd, &len);
        if (!is_ok(outcome)) {
          /* Packing failed on the host: the agent must not keep a partial tree. */
          send_frame(sock, F_KILL, NULL, 0);
          return finish(outcome, len);
        }
        free(outcome);
        pid = -1;
        unsigned char stream = 0;
        send_frame(sock, F_EOF, &stream, 1);
        continue;
      }
      put32((unsigned char *)buf, (uint32_t)k + 1);
      put32((unsigned char *)buf + 4, CHANNEL);
      buf[8] = F_DATA;
      buf[HEADER] = 0;
      if (write_all(sock, buf, HEADER + 1 + (size_t)k) != 0)
        broken("lost the connection to the agent: %s", strerror(errno));
      window -= (uint64_t)k;
    }
    if (!fds[0].revents) continue;
    struct frame f;
    read_header(sock, &f);
    char *payload = read_payload(sock, f.len);
    if (f.type == F_ERROR) broken("the agent ended the session: %s", payload);
    if (f.type == F_WINDOW && f.len == 5 && payload[0] == 0) window += get32((unsigned char *)payload + 1);
    if (f.type == F_END) {
      /* An early END is the extraction's refusal: the packing side is stopped, its outcome moot. */
      if (pid > 0) {
        kill(pid, SIGKILL);
        size_t len;
        free(side_outcome(pid, status_fd, &len));
      }
      return finish(payload, f.len);
    }
    free(payload);
  }
}

int client_main(const char *op, const char *socket_path, const char *src, const char *dest) {
  signal(SIGPIPE, SIG_IGN);
  umask(0);
  int sock = connect_agent(socket_path);
  return !strcmp(op, "--pull") ? pull(sock, src, dest) : push(sock, src, dest);
}
