/*
 * execenv-agent: the command line and the event loop. One thread polls
 * every session (a connection, or stdin/stdout), parses its frames,
 * forks one child per channel (the exec supervisor or a file-operation
 * worker) and relays the child's pipes as flow-controlled streams.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "agent-exec.h"
#include "agent-root.h"

enum {
  F_HELLO = 1, F_OPEN, F_DATA, F_EOF, F_WINDOW, F_SIGNAL, F_KILL, F_END, F_PING, F_PONG, F_SHUTDOWN, F_ERROR
};

#define HEADER 9
#define MAX_PAYLOAD (1u << 20)
#define INITIAL_WINDOW 262144u
/* What a channel's input may have in flight: granted at OPEN on top of INITIAL_WINDOW. Across a
   relay with a round trip of a millisecond or more (a daemon's exec websockets, a serial line),
   INITIAL_WINDOW alone caps input at a few hundred MB/s or less. */
#define INPUT_WINDOW (4u << 20)
#define CHUNK 65536
#define BULK_CHUNK (MAX_PAYLOAD - 1)
#define BULK_PIPE (1 << 20)
#define OUT_HIGH (1u << 20)       /* stop reading child pipes above this much unsent output */
#define READ_HIGH (4u << 20)      /* stop reading a session above this much unsent output */
#define STATUS_MAX 65536

/* Bytes at data..data+len; cap counts from data. Consumed bytes are skipped, not moved: the rest moves down only when room is needed. */
struct buf {
  char *data;
  size_t len, cap;
  char *base;
};

struct channel {
  struct channel *next;
  uint32_t id;
  int is_exec;
  pid_t pid;
  int reaped, killed;
  int in_fd;            /* the child's input pipe, -1 when closed or absent */
  struct buf in;        /* stream 0 bytes the pipe has not taken yet */
  int in_eof;
  uint64_t in_window;   /* bytes the client may still send on stream 0 */
  uint32_t grant_pending; /* the input grant of OPEN, sent at the round's end unless input has ended by then */
  int out_fd[3];        /* [1] output, [2] stderr; -1 when ended or absent */
  uint64_t out_window[3];
  int eof_pending[3];   /* an exec's output ended while its outcome had not: its EOF waits to leave with END */
  int status_fd;
  struct buf status;
};

struct session {
  struct session *next;
  int rfd, wfd;
  int hello, closing, dead;
  struct buf rbuf, wbuf;
  struct channel *channels;
};

static struct session *sessions;
static enum tree_mode tree;
static int sigfd = -1;
static int listener = -1;
static int watch_stdin;
static const char *socket_path;
static int root_mode;

/* ---- buffers --------------------------------------------------------- */

static void buf_reserve(struct buf *b, size_t more) {
  if (b->cap - b->len >= more) return;
  if (b->data != b->base) {
    memmove(b->base, b->data, b->len);
    b->cap += (size_t)(b->data - b->base);
    b->data = b->base;
    if (b->cap - b->len >= more) return;
  }
  size_t cap = b->cap ? b->cap : 4096;
  while (cap - b->len < more) cap *= 2;
  char *data = realloc(b->base, cap);
  if (!data) {
    fprintf(stderr, "execenv-agent: out of memory\n");
    exit(1);
  }
  b->base = b->data = data;
  b->cap = cap;
}

static void buf_append(struct buf *b, const void *p, size_t n) {
  buf_reserve(b, n);
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

static void buf_consume(struct buf *b, size_t n) {
  b->len -= n;
  if (b->len == 0) {
    b->cap += (size_t)(b->data - b->base);
    b->data = b->base;
  } else {
    b->data += n;
    b->cap -= n;
  }
}

static void buf_free(struct buf *b) {
  free(b->base);
  *b = (struct buf){0};
}

static uint32_t get_be32(const void *p) {
  const unsigned char *u = p;
  return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

static void put_be32(void *p, uint32_t v) {
  unsigned char *u = p;
  u[0] = (unsigned char)(v >> 24);
  u[1] = (unsigned char)(v >> 16);
  u[2] = (unsigned char)(v >> 8);
  u[3] = (unsigned char)v;
}

/* ---- sending --------------------------------------------------------- */

static void put_header(char *h, uint32_t len, uint32_t id, int type) {
  put_be32(h, len);
  put_be32(h + 4, id);
  h[8] = (char)type;
}

static void send_frame(struct session *s, uint32_t id, int type, const void *payload, size_t len) {
  if (s->dead) return;
  buf_reserve(&s->wbuf, HEADER + len);
  put_header(s->wbuf.data + s->wbuf.len, (uint32_t)len, id, type);
  if (len) memcpy(s->wbuf.data + s->wbuf.len + HEADER, payload, len);
  s->wbuf.len += HEADER + len;
}

static void send_stream(struct session *s, uint32_t id, int type, int stream) {
  char b = (char)stream;
  send_frame(s, id, type, &b, 1);
}

static void send_window(struct session *s, uint32_t id, uint32_t grant) {
  char p[5] = {0};
  put_be32(p + 1, grant);
  send_frame(s, id, F_WINDOW, p, sizeof p);
}

static void send_end_error(struct session *s, uint32_t id, const char *code, const char *msg) {
  struct buf b = {0};
  buf_append(&b, "error", 6);
  buf_append(&b, code, strlen(code) + 1);
  buf_append(&b, msg, strlen(msg) + 1);
  send_frame(s, id, F_END, b.data, b.len);
  buf_free(&b);
}

/* Writes what the session's stream takes now; a failed stream ends the session. */
static void flush_session(struct session *s) {
  while (!s->dead && s->wbuf.len > 0) {
    ssize_t n = write(s->wfd, s->wbuf.data, s->wbuf.len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      s->dead = 1;
      return;
    }
    buf_consume(&s->wbuf, (size_t)n);
  }
}

/* ---- channels -------------------------------------------------------- */

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

static struct channel *find_channel(struct session *s, uint32_t id) {
  for (struct channel *c = s->channels; c; c = c->next)
    if (c->id == id) return c;
  return NULL;
}

static void kill_channel(struct channel *c) {
  if (c->pid <= 0 || c->reaped || c->killed) return;
  c->killed = 1;
  if (c->is_exec)
    exec_kill(c->pid);
  else
    kill(c->pid, SIGTERM);
}

static void free_channel(struct channel *c) {
  if (c->is_exec && c->pid > 0) exec_release(c->pid, c->status.len > 0 && !c->killed && !c->reaped);
  close_fd(&c->in_fd);
  close_fd(&c->out_fd[1]);
  close_fd(&c->out_fd[2]);
  close_fd(&c->status_fd);
  buf_free(&c->in);
  buf_free(&c->status);
  free(c);
}

/* The session's stream ended or broke: kill every operation; the reaper collects the children. */
static void abort_session(struct session *s) {
  struct channel *c = s->channels;
  while (c) {
    struct channel *next = c->next;
    kill_channel(c);
    free_channel(c);
    c = next;
  }
  s->channels = NULL;
}

static void protocol_error(struct session *s, const char *msg) {
  if (s->closing) return;
  send_frame(s, 0, F_ERROR, msg, strlen(msg));
  s->closing = 1;
  abort_session(s);
}

/*
 * Sends END when every output pipe and the status pipe have ended, and the
 * child is reaped unless it reported an outcome: a child closes its status
 * pipe only when exiting, after emptying its tree, and the kernel's teardown
 * of its namespaces need not delay the answer.
 */
static int channel_finished(struct session *s, struct channel *c) {
  if (c->out_fd[1] >= 0 || c->out_fd[2] >= 0 || c->status_fd >= 0) return 0;
  if (!c->reaped && (c->status.len == 0 || c->killed)) return 0;
  if (c->status.len > 0) {
    send_frame(s, c->id, F_END, c->status.data, c->status.len);
  } else if (c->killed && c->is_exec) {
    send_frame(s, c->id, F_END, "signal\0" "9", 9);
  } else {
    send_end_error(s, c->id, "IO", c->killed ? "operation killed" : "worker died without reporting an outcome");
  }
  return 1;
}

static int make_pipe(int p[2]) {
  return pipe2(p, O_CLOEXEC);
}

/* Bulk transfers (files, archives) move in fewer, larger steps through a 1 MiB pipe; best effort. */
static void widen_pipe(int fd) {
  if (fd >= 0) fcntl(fd, F_SETPIPE_SZ, BULK_PIPE);
}

/* Forks the child of a channel; the loop keeps the ends it relays, non-blocking. */
static int start_child(struct channel *c, const char *op, char *const *args, int nargs, int streams) {
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, st[2] = {-1, -1};
  int ok = make_pipe(st) == 0;
  if (ok && (streams & OP_INPUT)) ok = make_pipe(in) == 0;
  if (ok && (streams & OP_OUTPUT)) ok = make_pipe(out) == 0;
  if (ok && c->is_exec) ok = make_pipe(err) == 0;
  if (ok && !c->is_exec) {
    widen_pipe(in[1]);
    widen_pipe(out[0]);
  }
  if (ok) {
    if (c->is_exec) {
      c->pid = exec_start(args, nargs, in[0], out[1], err[1], st[1]);
    } else {
      c->pid = fork();
      if (c->pid == 0) {
        int fds[4] = {in[0], out[1], FD_KEEP, st[1]};
        child_setup(fds, 4);
        run_file_op(op, args, nargs, in[0] >= 0 ? 0 : -1, out[1] >= 0 ? 1 : -1, 3);
      }
    }
    ok = c->pid > 0;
  }
  int saved = errno;
  close_fd(&in[0]);
  close_fd(&out[1]);
  close_fd(&err[1]);
  close_fd(&st[1]);
  c->in_fd = in[1];
  c->out_fd[1] = out[0];
  c->out_fd[2] = err[0];
  c->status_fd = st[0];
  int fds[] = {c->in_fd, c->out_fd[1], c->out_fd[2], c->status_fd};
  for (size_t i = 0; i < sizeof fds / sizeof *fds; i++)
    if (fds[i] >= 0) fcntl(fds[i], F_SETFL, O_NONBLOCK);
  errno = saved;
  return ok ? 0 : -1;
}

/* Splits NUL-terminated fields; returns their count or -1 when the payload does not end with NUL. */
static int split_fields(char *p, size_t len, char ***out) {
  if (len == 0 || p[len - 1] != '\0') return -1;
  int n = 0;
  for (size_t i = 0; i < len; i++) n += p[i] == '\0';
  char **fields = calloc((size_t)n + 1, sizeof *fields);
  if (!fields) return -1;
  for (int i = 0; i < n; i++) {
    fields[i] = p;
    p += strlen(p) + 1;
  }
  *out = fields;
  return n;
}

static void handle_open(struct session *s, uint32_t id, char *payload, size_t len) {
  if (id == 0 || find_channel(s, id)) return protocol_error(s, "OPEN of a channel id in use");
  char **fields;
  int n = split_fields(payload, len, &fields);
  if (n < 1) return protocol_error(s, "OPEN payload is not NUL-terminated fields");
  const char *op = fields[0];
  int is_exec = strcmp(op, "exec") == 0;
  int streams = is_exec ? OP_INPUT | OP_OUTPUT : file_op_streams(op);
  if (streams < 0) {
    char msg[300];
    snprintf(msg, sizeof msg, "unknown operation %.200s", op);
    send_end_error(s, id, "INVALID", msg);
    free(fields);
    return;
  }
  struct channel *c = calloc(1, sizeof *c);
  if (!c) exit(1);
  c->id = id;
  c->is_exec = is_exec;
  c->in_window = INITIAL_WINDOW;
  c->out_window[1] = c->out_window[2] = INITIAL_WINDOW;
  if (start_child(c, op, fields + 1, n - 1, streams) != 0) {
    char msg[300];
    snprintf(msg, sizeof msg, "cannot start %s: %s", op, strerror(errno));
    c->reaped = 1;
    free_channel(c);
    send_end_error(s, id, "IO", msg);
  } else {
    c->next = s->channels;
    s->channels = c;
    if (streams & OP_INPUT) {
      c->in_window += INPUT_WINDOW - INITIAL_WINDOW;
      c->grant_pending = INPUT_WINDOW - INITIAL_WINDOW;
    }
  }
  free(fields);
}

/* Writes pending stream-0 bytes into the child's pipe and grants the client what it took. */
static void feed_input(struct session *s, struct channel *c) {
  while (c->in_fd >= 0 && c->in.len > 0) {
    ssize_t n = write(c->in_fd, c->in.data, c->in.len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n < 0) { /* the child closed its input: what is left is dropped, but still granted */
      close_fd(&c->in_fd);
      n = (ssize_t)c->in.len;
    }
    buf_consume(&c->in, (size_t)n);
    c->in_window += (size_t)n;
    send_window(s, c->id, (uint32_t)n);
  }
  if (c->in_eof && c->in.len == 0) close_fd(&c->in_fd);
}

static void handle_data(struct session *s, struct channel *c, const char *p, size_t len) {
  if (len < 1 || p[0] != 0) return protocol_error(s, "DATA for a stream other than input");
  size_t n = len - 1;
  if (n > c->in_window) return protocol_error(s, "DATA beyond the input window");
  if (c->in_eof) return protocol_error(s, "DATA after EOF");
  c->in_window -= n;
  if (c->in_fd < 0) { /* no input pipe (any more): drop and grant back */
    c->in_window += n;
    if (n) send_window(s, c->id, (uint32_t)n);
    return;
  }
  buf_append(&c->in, p + 1, n);
  feed_input(s, c);
}

static void handle_channel_frame(struct session *s, int type, uint32_t id, char *p, size_t len) {
  struct channel *c = find_channel(s, id);
  if (!c) return; /* crossed our END on the wire */
  switch (type) {
  case F_DATA:
    return handle_data(s, c, p, len);
  case F_EOF:
    if (len != 1) return protocol_error(s, "malformed EOF");
    if (p[0] == 0) c->in_eof = 1;
    return feed_input(s, c);
  case F_WINDOW:
    if (len != 5 || (p[0] != 1 && p[0] != 2)) return protocol_error(s, "malformed WINDOW");
    c->out_window[(int)p[0]] += get_be32(p + 1);
    return;
  case F_SIGNAL:
    if (len != 1) return protocol_error(s, "malformed SIGNAL");
    if (c->is_exec && !c->reaped) exec_signal(c->pid, (unsigned char)p[0]);
    return;
  case F_KILL:
    return kill_channel(c);
  }
}

static void handle_hello(struct session *s, const char *p, size_t len) {
  static const char greeting[] = "execenv-agent 1";
  size_t g = sizeof greeting - 1;
  if (len < g || memcmp(p, greeting, g) != 0 || (len > g && p[g] != '\0'))
    return protocol_error(s, "unsupported protocol; this agent speaks execenv-agent 1");
  struct utsname u;
  if (uname(&u) != 0) strcpy(u.machine, "unknown");
  char reply[512];
  int n = snprintf(reply, sizeof reply, "%s%carch=%s%cpid=%d%ctree=%s%cversion=%s%c", greeting, 0, u.machine, 0,
                   (int)getpid(), 0, exec_tree_name(tree), 0, AGENT_VERSION, 0);
  send_frame(s, 0, F_HELLO, reply, (size_t)n);
  s->hello = 1;
}

static void shutdown_agent(void) __attribute__((noreturn));

static void handle_frame(struct session *s, int type, uint32_t id, char *p, size_t len) {
  if (!s->hello) {
    if (type != F_HELLO || id != 0) return protocol_error(s, "expected HELLO");
    return handle_hello(s, p, len);
  }
  switch (type) {
  case F_OPEN:
    return handle_open(s, id, p, len);
  case F_DATA:
  case F_EOF:
  case F_WINDOW:
  case F_SIGNAL:
  case F_KILL:
    if (id == 0) return protocol_error(s, "channel frame on channel 0");
    return handle_channel_frame(s, type, id, p, len);
  case F_PING:
    if (id != 0) return protocol_error(s, "PING on a channel");
    return send_frame(s, 0, F_PONG, p, len);
  case F_SHUTDOWN:
    shutdown_agent();
  default:
    return protocol_error(s, "unexpected frame type");
  }
}

/* Parses every complete frame buffered from the session's stream. */
static void parse_frames(struct session *s) {
  size_t pos = 0;
  while (!s->closing && s->rbuf.len - pos >= HEADER) {
    char *h = s->rbuf.data + pos;
    uint32_t len = get_be32(h);
    if (len > MAX_PAYLOAD) {
      protocol_error(s, "frame payload longer than 1 MiB");
      break;
    }
    if (s->rbuf.len - pos < HEADER + len) break;
    handle_frame(s, (unsigned char)h[8], get_be32(h + 4), h + HEADER, len);
    pos += HEADER + len;
  }
  buf_consume(&s->rbuf, pos);
}

static void read_session(struct session *s) {
  /* Room for a whole frame, whose header may already be here. */
  size_t want = CHUNK;
  if (s->rbuf.len >= HEADER) {
    uint32_t len = get_be32(s->rbuf.data);
    if (len <= MAX_PAYLOAD && HEADER + len > s->rbuf.len) want = HEADER + len - s->rbuf.len;
    if (want < CHUNK) want = CHUNK;
  }
  buf_reserve(&s->rbuf, want);
  ssize_t n = read(s->rfd, s->rbuf.data + s->rbuf.len, s->rbuf.cap - s->rbuf.len);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n <= 0) {
    s->dead = 1;
    return;
  }
  s->rbuf.len += (size_t)n;
  parse_frames(s);
}

/*
 * A command's output and its outcome end within a fraction of a millisecond
 * of each other, on separate pipes: an exec's EOF waits for the outcome (at
 * most EOF_HOLD_NS) so that the client is woken once, not once per pipe.
 */
#define EOF_HOLD_NS 2000000LL

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long eof_deadline; /* when held EOFs leave anyway; 0 when none is held */

static void end_output(struct session *s, struct channel *c, int stream) {
  if (c->is_exec && c->status_fd >= 0 && !c->killed) {
    c->eof_pending[stream] = 1;
    if (!eof_deadline) eof_deadline = now_ns() + EOF_HOLD_NS;
    return;
  }
  send_stream(s, c->id, F_EOF, stream);
}

/* Sends a channel's held EOFs once its outcome has arrived, or at the deadline. */
static void release_eofs(struct session *s, struct channel *c, int due) {
  for (int k = 1; k <= 2; k++)
    if (c->eof_pending[k] && (due || c->status_fd < 0 || c->killed)) {
      c->eof_pending[k] = 0;
      send_stream(s, c->id, F_EOF, k);
    }
}

/* Relays one read of a child's output pipe as DATA within the stream's window. */
static void read_output(struct session *s, struct channel *c, int stream) {
  size_t chunk = c->is_exec ? CHUNK : BULK_CHUNK;
  size_t room = c->out_window[stream] < chunk ? (size_t)c->out_window[stream] : chunk;
  if (room == 0 && !c->killed) return;
  char discard[4096];
  if (room == 0) { /* a killed channel drains what the client no longer wants */
    ssize_t n = read(c->out_fd[stream], discard, sizeof discard);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
      close_fd(&c->out_fd[stream]);
      send_stream(s, c->id, F_EOF, stream);
    }
    return;
  }
  buf_reserve(&s->wbuf, HEADER + 1 + room);
  char *frame = s->wbuf.data + s->wbuf.len;
  ssize_t n = read(c->out_fd[stream], frame + HEADER + 1, room);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    close_fd(&c->out_fd[stream]);
    end_output(s, c, stream);
    return;
  }
  put_header(frame, (uint32_t)n + 1, c->id, F_DATA);
  frame[HEADER] = (char)stream;
  s->wbuf.len += HEADER + 1 + (size_t)n;
  c->out_window[stream] -= (size_t)n;
}

/* Reads until the pipe is empty: an outcome and the end of the pipe usually arrive together, and are answered in one turn. */
static void read_status(struct channel *c) {
  for (;;) {
    buf_reserve(&c->status, 4096);
    ssize_t n = read(c->status_fd, c->status.data + c->status.len, c->status.cap - c->status.len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0 || c->status.len + (size_t)n > STATUS_MAX) {
      close_fd(&c->status_fd);
      return;
    }
    c->status.len += (size_t)n;
  }
}

/* ---- sessions and processes ------------------------------------------ */

static void add_session(int rfd, int wfd) {
  struct session *s = calloc(1, sizeof *s);
  if (!s) exit(1);
  s->rfd = rfd;
  s->wfd = wfd;
  fcntl(rfd, F_SETFL, fcntl(rfd, F_GETFL) | O_NONBLOCK);
  if (wfd != rfd) fcntl(wfd, F_SETFL, fcntl(wfd, F_GETFL) | O_NONBLOCK);
  s->next = sessions;
  sessions = s;
}

static void free_session(struct session *s) {
  abort_session(s);
  close(s->rfd);
  if (s->wfd != s->rfd) close(s->wfd);
  buf_free(&s->rbuf);
  buf_free(&s->wbuf);
  free(s);
}

static void mark_reaped(pid_t pid) {
  exec_reaped(pid);
  for (struct session *s = sessions; s; s = s->next)
    for (struct channel *c = s->channels; c; c = c->next)
      if (c->pid == pid) {
        c->reaped = 1;
        return;
      }
  /* Not ours: a child of a session that is gone, or an orphan of the agent as PID 1. */
}

static void reap_children(void) {
  pid_t pid;
  while ((pid = waitpid(-1, NULL, WNOHANG)) > 0) mark_reaped(pid);
}

/* Kills every operation, waits a little for workers to clean up, and exits. */
static void shutdown_agent(void) {
  exec_discard_standby();
  for (struct session *s = sessions; s; s = s->next) {
    flush_session(s); /* best effort: a reply queued before SHUTDOWN */
    abort_session(s);
  }
  if (listener >= 0 && socket_path && !root_mode) unlink(socket_path);
  alarm(10); /* a worker that does not finish its cleanup must not keep the agent alive */
  sigset_t alrm;
  sigemptyset(&alrm);
  sigaddset(&alrm, SIGALRM);
  sigprocmask(SIG_UNBLOCK, &alrm, NULL);
  while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {
  }
  exit(0);
}

static void handle_signals(void) {
  struct signalfd_siginfo si;
  while (read(sigfd, &si, sizeof si) == sizeof si) {
    if (si.ssi_signo == SIGCHLD) reap_children();
    if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) shutdown_agent();
  }
}

static void accept_session(void) {
  int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd >= 0) add_session(fd, fd);
}

static void watch_stdin_event(void) {
  char c[256];
  ssize_t n = read(0, c, sizeof c);
  if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) shutdown_agent();
}

/* ---- the loop -------------------------------------------------------- */

enum role { R_SIGNAL, R_LISTEN, R_STDIN, R_SREAD, R_SWRITE, R_IN, R_OUT1, R_OUT2, R_STATUS };

struct slot {
  enum role role;
  struct session *s;
  struct channel *c;
};

struct pollset {
  struct pollfd *p;
  struct slot *slot;
  size_t n, cap;
};

static void watch(struct pollset *ps, int fd, short events, enum role role, struct session *s, struct channel *c) {
  if (fd < 0 || !events) return;
  if (ps->n == ps->cap) {
    ps->cap = ps->cap ? ps->cap * 2 : 64;
    ps->p = realloc(ps->p, ps->cap * sizeof *ps->p);
    ps->slot = realloc(ps->slot, ps->cap * sizeof *ps->slot);
    if (!ps->p || !ps->slot) exit(1);
  }
  ps->p[ps->n] = (struct pollfd){fd, events, 0};
  ps->slot[ps->n] = (struct slot){role, s, c};
  ps->n++;
}

static void watch_session(struct pollset *ps, struct session *s) {
  if (!s->closing && s->wbuf.len < READ_HIGH) watch(ps, s->rfd, POLLIN, R_SREAD, s, NULL);
  if (s->wbuf.len > 0) watch(ps, s->wfd, POLLOUT, R_SWRITE, s, NULL);
  int output_room = s->wbuf.len < OUT_HIGH;
  for (struct channel *c = s->channels; c; c = c->next) {
    if (c->in.len > 0) watch(ps, c->in_fd, POLLOUT, R_IN, s, c);
    for (int k = 1; k <= 2; k++) {
      int wants = c->killed || (output_room && c->out_window[k] > 0);
      if (wants) watch(ps, c->out_fd[k], POLLIN, k == 1 ? R_OUT1 : R_OUT2, s, c);
    }
    watch(ps, c->status_fd, POLLIN, R_STATUS, s, c);
  }
}

static void dispatch(const struct pollfd *p, const struct slot *sl) {
  struct session *s = sl->s;
  if (s && (s->dead || (sl->c && s->closing))) return;
  switch (sl->role) {
  case R_SIGNAL:
    return handle_signals();
  case R_LISTEN:
    return accept_session();
  case R_STDIN:
    return watch_stdin_event();
  case R_SREAD:
    return read_session(s);
  case R_SWRITE:
    return flush_session(s);
  case R_IN:
    if (sl->c->in_fd == p->fd) feed_input(s, sl->c);
    return;
  case R_OUT1:
  case R_OUT2: {
    int k = sl->role == R_OUT1 ? 1 : 2;
    if (sl->c->out_fd[k] == p->fd) read_output(s, sl->c, k);
    return;
  }
  case R_STATUS:
    if (sl->c->status_fd == p->fd) read_status(sl->c);
    return;
  }
}

/* After events: sends ENDs, flushes output, closes sessions that are done. */
static int settle(void) {
  int stdio_gone = 0;
  int due = eof_deadline && now_ns() >= eof_deadline;
  int held = 0;
  for (struct session **sp = &sessions; *sp;) {
    struct session *s = *sp;
    for (struct channel **cp = &s->channels; *cp;) {
      struct channel *c = *cp;
      if (c->grant_pending) {
        if (!c->in_eof) send_window(s, c->id, c->grant_pending);
        c->grant_pending = 0;
      }
      release_eofs(s, c, due);
      held |= c->eof_pending[1] | c->eof_pending[2];
      if (!s->dead && channel_finished(s, c)) {
        *cp = c->next;
        free_channel(c);
      } else {
        cp = &c->next;
      }
    }
    flush_session(s);
    if (s->closing && s->wbuf.len == 0) s->dead = 1;
    if (s->dead) {
      stdio_gone |= s->rfd == 0;
      *sp = s->next;
      free_session(s);
    } else {
      sp = &s->next;
    }
  }
  if (!held) eof_deadline = 0;
  return stdio_gone;
}

static void serve(void) {
  struct pollset ps = {0};
  for (;;) {
    ps.n = 0;
    watch(&ps, sigfd, POLLIN, R_SIGNAL, NULL, NULL);
    if (listener >= 0) watch(&ps, listener, POLLIN, R_LISTEN, NULL, NULL);
    if (watch_stdin) watch(&ps, 0, POLLIN, R_STDIN, NULL, NULL);
    for (struct session *s = sessions; s; s = s->next) watch_session(&ps, s);
    exec_prepare();
    int timeout = -1;
    if (eof_deadline) {
      long long left = eof_deadline - now_ns();
      timeout = left <= 0 ? 0 : (int)((left + 999999) / 1000000);
    }
    if (poll(ps.p, ps.n, timeout) < 0) {
      if (errno == EINTR) continue;
      perror("execenv-agent: poll");
      shutdown_agent();
    }
    for (size_t i = 0; i < ps.n; i++)
      if (ps.p[i].revents) dispatch(&ps.p[i], &ps.slot[i]);
    if (settle() && listener < 0) shutdown_agent();
  }
}

/* ---- start-up -------------------------------------------------------- */

static int listen_on(const char *path, const char *owner) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof addr.sun_path) {
    fprintf(stderr, "execenv-agent: socket path too long: %s\n", path);
    return -1;
  }
  strcpy(addr.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  mode_t before = umask(077); /* only the owner may connect */
  int bound = fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0;
  umask(before);
  if (!bound || listen(fd, 128) != 0) {
    fprintf(stderr, "execenv-agent: cannot listen on %s: %s\n", path, strerror(errno));
    return -1;
  }
  if (owner && chown(path, (uid_t)strtoul(owner, NULL, 10), (gid_t)-1) != 0) {
    fprintf(stderr, "execenv-agent: cannot give %s to uid %s: %s\n", path, owner, strerror(errno));
    return -1;
  }
  return fd;
}

static int setup_signals(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIG_EXEC_FORWARD);
  sigaddset(&set, SIG_EXEC_KILLTREE);
  if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) return -1;
  sigdelset(&set, SIG_EXEC_FORWARD);
  sigdelset(&set, SIG_EXEC_KILLTREE);
  sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  signal(SIGPIPE, SIG_IGN);
  return sigfd < 0 ? -1 : 0;
}

static void usage(void) {
  fprintf(stderr,
          "usage: execenv-agent --version\n"
          "       execenv-agent [--root DIR [--bind|--bind-ro SOURCE TARGET]...] [--netns FILE]\n"
          "                     [--personality linux32]\n"
          "                     (--listen SOCKET [--socket-owner UID] | --stdio)\n"
          "       execenv-agent (--pull|--push) SOCKET SRC DEST\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *root = NULL, *netns = NULL, *owner = NULL;
  int stdio = 0;
  struct root_bind binds[64];
  size_t nbinds = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *next = i + 1 < argc ? argv[i + 1] : NULL;
    if ((strcmp(a, "--pull") == 0 || strcmp(a, "--push") == 0) && i == 1) {
      if (argc != 5 || argv[3][0] != '/' || argv[4][0] != '/') usage();
      return client_main(a, argv[2], argv[3], argv[4]);
    }
    if (strcmp(a, "--version") == 0) {
      struct utsname u;
      if (uname(&u) != 0) strcpy(u.machine, "unknown");
      printf("execenv-agent %s protocol %d %s\n", AGENT_VERSION, AGENT_PROTOCOL, u.machine);
      return 0;
    } else if (strcmp(a, "--stdio") == 0) {
      stdio = 1;
    } else if (!next) {
      usage();
    } else if (strcmp(a, "--listen") == 0) {
      socket_path = argv[++i];
    } else if (strcmp(a, "--socket-owner") == 0) {
      owner = argv[++i];
    } else if (strcmp(a, "--bind") == 0 || strcmp(a, "--bind-ro") == 0) {
      if (i + 2 >= argc || nbinds == sizeof binds / sizeof *binds) usage();
      binds[nbinds++] = (struct root_bind){argv[i + 1], argv[i + 2], a[6] == '-'};
      i += 2;
    } else if (strcmp(a, "--root") == 0) {
      root = argv[++i];
    } else if (strcmp(a, "--netns") == 0) {
      netns = argv[++i];
    } else if (strcmp(a, "--personality") == 0) {
      if (strcmp(argv[++i], "linux32") != 0) usage();
      exec_set_linux32(1);
    } else {
      usage();
    }
  }
  if (stdio == !!socket_path || (owner && !socket_path) || (nbinds && !root)) usage();
  if (netns && root_join_netns(netns) != 0) return 1;
  int ready_fd = -1;
  if (root) {
    root_mode = 1;
    root_split(socket_path, &ready_fd);
  }
  if (socket_path && (listener = listen_on(socket_path, owner)) < 0) return 1;
  if (root && root_pivot(root, binds, nbinds) != 0) return 1;
  if (setup_signals() != 0) {
    perror("execenv-agent: signals");
    return 1;
  }
  tree = exec_probe_tree();
  if (stdio) {
    add_session(0, 1);
  } else if (ready_fd >= 0) {
    root_ready(ready_fd);
  } else if (write_all(1, "ready\n", 6) != 0) {
    return 1;
  }
  watch_stdin = listener >= 0;
  serve();
}
