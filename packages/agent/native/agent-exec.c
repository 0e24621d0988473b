/*
 * execenv-agent: the supervisor of one command (PROTOCOL.md, exec).
 *
 * tree=pidns: the loop clones the supervisor straight into fresh pid and
 * mount namespaces, so it is the namespace's init: it mounts a /proc of its
 * own, forks the command, forwards termination signals, reaps orphans and
 * exits with the command; SIGKILL to it empties the namespace.
 *
 * tree=subreaper: the supervisor is a child subreaper, the command leads
 * its own process group; when the command ends or a kill is asked, the
 * supervisor kills the group and every descendant it can find in
 * /proc/<pid>/task/<tid>/children, reaping, until it has no child left.
 *
 * Either way the supervisor writes the END payload to fd 3 and exits.
 *
 * Standby: once a session has run a command, the loop keeps one supervisor
 * started ahead of need (namespaces made, /proc mounted) that waits on a
 * socketpair for its request: the OPEN arguments and the four descriptors.
 * An exec then costs one message instead of a clone and two mounts on its
 * way; a standby that cannot take the request is discarded and a supervisor
 * is started as before. The loop's namespaces do not change once it serves,
 * so a supervisor started early sees what one started late would.
 *
 * Reuse: a supervisor whose command ended with its namespace emptied and its
 * mount table as it was made is as good as a fresh one. It says so with one
 * byte on its socketpair, written before the outcome's pipe closes, and the
 * loop puts it back among the idle supervisors once the channel has ended:
 * a run of commands costs no clone, no mounts and no namespace teardown
 * each. A command that changed mounts, was killed or left the supervisor
 * unsure ends it instead, as before.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "agent-exec.h"

#define STATUS_FD 3
#define MAX_GROUPS 256

static enum tree_mode tree;
static int linux32;

struct request {
  const char *cwd;
  uid_t uid;
  gid_t gid;
  gid_t groups[MAX_GROUPS];
  int ngroups;
  char **envp;
  char **argv;
};

/* ---- descriptors and signals of a forked child ----------------------- */

static void close_from(int first) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, (unsigned)first, ~0U, 0) == 0) return;
#endif
  long max = sysconf(_SC_OPEN_MAX);
  if (max < 0 || max > 65536) max = 65536;
  for (int fd = first; fd < max; fd++) close(fd);
}

void child_setup(const int *fds, int n) {
  int tmp[8];
  /* Move sources out of the way first: a source may sit on another target's number. */
  for (int i = 0; i < n; i++) {
    tmp[i] = fds[i] >= 0 ? fcntl(fds[i], F_DUPFD_CLOEXEC, 64) : fds[i];
    if (fds[i] >= 0 && tmp[i] < 0) _exit(125);
  }
  for (int i = 0; i < n; i++) {
    if (tmp[i] == FD_KEEP) continue;
    if (tmp[i] < 0) {
      close(i);
    } else if (dup2(tmp[i], i) < 0) {
      _exit(125);
    }
  }
  close_from(n);
  /* The supervisor's own signals stay blocked until it has handlers for them. */
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIG_EXEC_FORWARD);
  sigaddset(&mask, SIG_EXEC_KILLTREE);
  signal(SIGCHLD, SIG_DFL);
  sigprocmask(SIG_SETMASK, &mask, NULL);
}

/* ---- the request ----------------------------------------------------- */

static int parse_groups(const char *list, gid_t *out) {
  int n = 0;
  const char *p = list;
  while (*p) {
    char *end;
    unsigned long v = strtoul(p, &end, 10);
    if (end == p || n == MAX_GROUPS || (*end && *end != ',')) return -1;
    out[n++] = (gid_t)v;
    p = *end ? end + 1 : end;
  }
  return n;
}

static int parse_id(const char *s, unsigned *out) {
  char *end;
  unsigned long v = strtoul(s, &end, 10);
  if (!*s || *end) return -1;
  *out = (unsigned)v;
  return 0;
}

/* args: cwd uid gid groups N env... argv...; returns 0 when well formed. */
static int parse_request(char *const *args, int nargs, struct request *req) {
  if (nargs < 6) return -1;
  char *end;
  long nenv = strtol(args[4], &end, 10);
  if (!*args[4] || *end || nenv < 0 || nenv > nargs - 6) return -1;
  unsigned uid, gid;
  if (parse_id(args[1], &uid) || parse_id(args[2], &gid)) return -1;
  req->cwd = args[0];
  req->uid = uid;
  req->gid = gid;
  req->ngroups = parse_groups(args[3], req->groups);
  if (req->ngroups < 0) return -1;
  int nargv = nargs - 5 - (int)nenv;
  req->envp = calloc((size_t)nenv + 1, sizeof *req->envp);
  req->argv = calloc((size_t)nargv + 1, sizeof *req->argv);
  if (!req->envp || !req->argv) return -1;
  memcpy(req->envp, args + 5, (size_t)nenv * sizeof *args);
  memcpy(req->argv, args + 5 + nenv, (size_t)nargv * sizeof *args);
  return 0;
}

/* ---- the command ----------------------------------------------------- */

extern char **environ;

/* Writes an END error payload on fd and exits: the command never ran. */
static void report_error(int fd, const char *code, const char *what, const char *arg) {
  end_error(fd, code, "%s%s: %s", what, arg, strerror(errno));
}

static void run_command(const struct request *req, int report_fd) {
  if (setsid() < 0) report_error(report_fd, "IO", "setsid", "");
  if (linux32 && personality(PER_LINUX32) == -1) report_error(report_fd, "IO", "personality linux32", "");
  if (chdir(req->cwd) != 0)
    report_error(report_fd, errno == ENOENT ? "NOT_FOUND" : "IO", "cannot change directory to ", req->cwd);
  /* In a user namespace with setgroups denied, having no groups is the state we already have. */
  /* The stdio pipes are the agent's (root, 0600): hand them over so the command can reopen /dev/stdout. */
  if (req->uid != 0 || req->gid != 0)
    for (int fd = 0; fd <= 2; fd++) (void)fchown(fd, req->uid, req->gid);
  if (setgroups((size_t)req->ngroups, req->groups) != 0 && !(errno == EPERM && req->ngroups == 0))
    report_error(report_fd, "IO", "setgroups", "");
  if (setgid(req->gid) != 0) report_error(report_fd, "IO", "setgid", "");
  if (setuid(req->uid) != 0) report_error(report_fd, "IO", "setuid", "");
  signal(SIGPIPE, SIG_DFL);
  environ = req->envp;
  execvp(req->argv[0], req->argv);
  int err = errno;
  dprintf(2, "execenv: cannot execute %s: %s\n", req->argv[0], strerror(err));
  _exit(err == ENOENT ? 127 : 126);
}

/* ---- the supervisor -------------------------------------------------- */

static volatile pid_t command;

static void on_forward(int sig) {
  if (command > 0) kill(command, sig);
}

static void on_queued(int sig, siginfo_t *info, void *ctx) {
  (void)sig;
  (void)ctx;
  if (command > 0) kill(command, info->si_value.sival_int);
}

/* A KILL was asked: the loop waits for this supervisor to exit, so it must not serve again. */
static volatile sig_atomic_t kill_asked;

static void on_killtree(int sig) {
  (void)sig;
  kill_asked = 1;
  if (command > 0) {
    kill(-command, SIGKILL);
    kill(command, SIGKILL);
  }
}

static void install_handlers(void) {
  static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
  struct sigaction sa = {0};
  sa.sa_flags = SA_RESTART;
  sa.sa_handler = on_forward;
  for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++) sigaction(forwarded[i], &sa, NULL);
  sa.sa_handler = on_killtree;
  sigaction(SIG_EXEC_KILLTREE, &sa, NULL);
  sa.sa_flags = SA_RESTART | SA_SIGINFO;
  sa.sa_sigaction = on_queued;
  sigaction(SIG_EXEC_FORWARD, &sa, NULL);
}

/* SIGKILLs every descendant of pid listed in /proc; returns how many it signalled. */
static int kill_descendants(pid_t pid, int depth) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
  DIR *tasks = opendir(path);
  if (!tasks) return 0;
  int found = 0;
  struct dirent *t;
  while ((t = readdir(tasks))) {
    if (t->d_name[0] == '.') continue;
    char children[300];
    snprintf(children, sizeof children, "/proc/%d/task/%s/children", (int)pid, t->d_name);
    FILE *f = fopen(children, "re");
    if (!f) continue;
    int child;
    while (fscanf(f, "%d", &child) == 1) {
      kill(child, SIGKILL);
      found++;
      if (depth < 64) found += kill_descendants(child, depth + 1);
    }
    fclose(f);
  }
  closedir(tasks);
  return found;
}

/* Kills the command's group and every descendant, reaping, until no child is left. */
static void empty_tree(pid_t group) {
  kill(-group, SIGKILL);
  for (;;) {
    /* As subreaper every live descendant is below a child: none left means the tree is empty. */
    if (waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD) return;
    kill_descendants(getpid(), 0);
    int reaped = 0;
    pid_t pid;
    while ((pid = waitpid(-1, NULL, WNOHANG)) > 0) reaped++;
    if (pid < 0 && errno == ECHILD) return;
    if (!reaped) nanosleep(&(struct timespec){0, 1000000}, NULL);
  }
}

/* As PID 1 of the command's namespace: kills everything else in it and reaps it. */
static void kill_namespace(void) {
  kill(-1, SIGKILL);
  while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {
  }
}

static void write_outcome(int status) {
  char line[32];
  int len = WIFSIGNALED(status) ? snprintf(line, sizeof line, "signal%c%d", 0, WTERMSIG(status))
                                : snprintf(line, sizeof line, "exit%c%d", 0, WEXITSTATUS(status));
  write_all(STATUS_FD, line, (size_t)len + 1);
}

/* Forwards what the command reported before exec (an END error) to the status pipe; 1 when it did. */
static int relay_report(int report_fd) {
  char buf[1200];
  size_t len = 0;
  ssize_t n;
  while ((n = read(report_fd, buf + len, sizeof buf - len)) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    len += (size_t)n;
    if (len == sizeof buf) break;
  }
  close(report_fd);
  if (len == 0) return 0;
  write_all(STATUS_FD, buf, len);
  return 1;
}

/* The byte a supervisor writes on its socketpair when it may take another request. */
#define SUPERVISOR_READY 'R'

/* Whether this supervisor's mount table is still the one it made: a command's mount, unmount or pivot_root shows as POLLPRI. */
static int mounts_unchanged(int mounts_fd) {
  if (mounts_fd < 0) return 1;
  struct pollfd p = {mounts_fd, POLLPRI, 0};
  return poll(&p, 1, 0) == 0;
}

/*
 * Runs one request to its end and writes its outcome. With ready_sock >= 0
 * (a standby) and the supervisor fit to serve again, it writes
 * SUPERVISOR_READY there before closing the outcome's pipe and returns;
 * otherwise it exits.
 */
static void supervise(char *const *args, int nargs, int ready_sock, int mounts_fd) {
  struct request req;
  if (parse_request(args, nargs, &req) != 0 || !req.argv[0]) end_error(STATUS_FD, "INVALID", "malformed exec arguments");
  if (fcntl(STATUS_FD, F_SETFD, FD_CLOEXEC) != 0) _exit(125);
  if (tree == TREE_SUBREAPER && prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) end_error(STATUS_FD, "IO", "subreaper: %s", strerror(errno));
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) end_error(STATUS_FD, "IO", "pipe: %s", strerror(errno));
  install_handlers();
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  /* vfork: no copy of our page tables, no copy-on-write faults after it. The child only sets up its
     own credentials, directory and descriptors, and execs or reports and _exits. It shares our
     memory until then: the environ it points at the request (freed below) is set back here. */
  char **own_environ = environ;
  pid_t pid = vfork();
  if (pid < 0) end_error(STATUS_FD, "IO", "fork: %s", strerror(errno));
  if (pid == 0) {
    close(report[0]);
    run_command(&req, report[1]);
  }
  environ = own_environ;
  command = pid;
  /* A KILL that came while vfork held us ran its handler before command was set: it kills now. */
  if (kill_asked) on_killtree(SIG_EXEC_KILLTREE);
  close(report[1]);
  /* Only the command's tree holds the stdio pipes from here: their ends reach the agent with it, not with us. */
  for (int fd = 0; fd <= 2; fd++) close(fd);
  int failed = relay_report(report[0]);
  int status = 0;
  for (;;) {
    pid_t done = waitpid(-1, &status, 0);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) _exit(125);
  }
  /* The tree is empty before the outcome is written: the loop may end the channel on it without waiting for the reap. */
  if (tree == TREE_SUBREAPER) empty_tree(pid);
  else kill_namespace();
  command = 0;
  if (!failed) write_outcome(status);
  int again = ready_sock >= 0 && !kill_asked && mounts_unchanged(mounts_fd) &&
              write(ready_sock, &(char){SUPERVISOR_READY}, 1) == 1;
  close(STATUS_FD);
  free(req.envp);
  free(req.argv);
  if (!again) _exit(0);
}

/* ---- the loop's side ------------------------------------------------- */

struct start {
  char *const *args;
  int nargs;
  int fds[4];
};

static int pidns_init(void *arg) {
  struct start *s = arg;
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) _exit(125);
  child_setup(s->fds, 4);
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
    end_error(STATUS_FD, "IO", "make mounts private: %s", strerror(errno));
  if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
    end_error(STATUS_FD, "IO", "mount /proc: %s", strerror(errno));
  supervise(s->args, s->nargs, -1, -1);
  return 125;
}

/* The clone child runs on this stack, in its own copy of the address space. */
static char clone_stack[256 * 1024] __attribute__((aligned(64)));

static pid_t clone_into_namespaces(int (*fn)(void *), void *arg) {
  return clone(fn, clone_stack + sizeof clone_stack, CLONE_NEWPID | CLONE_NEWNS | SIGCHLD, arg);
}

/* ---- the standby supervisors ----------------------------------------- */

#define STANDBY_SOCKET_FD 4
#define STANDBY_REQUEST_MAX (4 * 1024 * 1024)
#define IDLE_MAX 4

/* A supervisor started by the loop and the loop's end of its socketpair. */
struct supervisor {
  pid_t pid;
  int sock;
};

static struct supervisor idle[IDLE_MAX]; /* waiting for a request */
static int idle_n;
static struct supervisor *busy;          /* running a request handed over its socketpair */
static size_t busy_n, busy_cap;
static int exec_used;

static ssize_t read_full(int fd, void *buf, size_t len) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = read(fd, (char *)buf + done, len - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    done += (size_t)n;
  }
  return (ssize_t)done;
}

/* One request as a standby receives it; payload holds the arguments args points into. */
struct received {
  int fds[4];
  char *payload;
  char **args;
  int nargs;
};

/* Receives the request: a length, the four descriptors with it, then the NUL-separated arguments. */
static int receive_request(int sock, struct received *r) {
  uint32_t len;
  char control[CMSG_SPACE(4 * sizeof(int))];
  struct iovec iov = {&len, sizeof len};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
  ssize_t n;
  do n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_WAITALL);
  while (n < 0 && errno == EINTR);
  struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
  if (n != (ssize_t)sizeof len || !cm || cm->cmsg_type != SCM_RIGHTS || cm->cmsg_len != CMSG_LEN(4 * sizeof(int)))
    return -1;
  memcpy(r->fds, CMSG_DATA(cm), 4 * sizeof(int));
  if (len > STANDBY_REQUEST_MAX) return -1;
  r->payload = malloc((size_t)len + 1);
  if (!r->payload || read_full(sock, r->payload, len) < 0) return -1;
  r->payload[len] = 0;
  int count = 0;
  for (uint32_t i = 0; i < len; i++) count += r->payload[i] == 0;
  r->args = calloc((size_t)count + 1, sizeof *r->args);
  if (!r->args) return -1;
  char *p = r->payload;
  for (int i = 0; i < count; i++) {
    r->args[i] = p;
    p += strlen(p) + 1;
  }
  r->nargs = count;
  return 0;
}

static int standby_main(void *arg) {
  int sock = *(int *)arg;
  /* Nothing of the agent's stays open here but the socket, until a request's descriptors arrive. */
  int keep[5] = {-1, -1, -1, -1, sock};
  if (prctl(PR_SET_PDEATHSIG, tree == TREE_PIDNS ? SIGKILL : SIG_EXEC_KILLTREE) != 0) _exit(125);
  child_setup(keep, 5);
  if (fcntl(STANDBY_SOCKET_FD, F_SETFD, FD_CLOEXEC) != 0) _exit(125);
  int mounts_fd = -1;
  if (tree == TREE_PIDNS) {
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
      _exit(125);
    mounts_fd = open("/proc/self/mounts", O_RDONLY | O_CLOEXEC);
    if (mounts_fd < 0) _exit(125);
    /* Above the request's descriptors and the socket: child_setup keeps everything below 6. */
    if (dup3(mounts_fd, 5, O_CLOEXEC) != 5) _exit(125);
    close(mounts_fd);
    mounts_fd = 5;
  }
  for (;;) {
    struct received r;
    if (receive_request(STANDBY_SOCKET_FD, &r) != 0) _exit(0);
    int fds[6] = {r.fds[0], r.fds[1], r.fds[2], r.fds[3], FD_KEEP, mounts_fd >= 0 ? FD_KEEP : -1};
    child_setup(fds, 6);
    supervise(r.args, r.nargs, STANDBY_SOCKET_FD, mounts_fd);
    free(r.args);
    free(r.payload);
  }
}

static void close_supervisor(struct supervisor sup, int kill_it) {
  close(sup.sock);
  if (kill_it) kill(sup.pid, SIGKILL);
}

void exec_prepare(void) {
  if (!exec_used || idle_n > 0) return;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return;
  pid_t pid = tree == TREE_PIDNS ? clone_into_namespaces(standby_main, &sv[1]) : fork();
  if (pid == 0) _exit(standby_main(&sv[1]));
  close(sv[1]);
  if (pid < 0) {
    close(sv[0]);
    return;
  }
  idle[idle_n++] = (struct supervisor){pid, sv[0]};
}

void exec_discard_standby(void) {
  while (idle_n > 0) close_supervisor(idle[--idle_n], 1);
}

static struct supervisor *find_busy(pid_t pid) {
  for (size_t i = 0; i < busy_n; i++)
    if (busy[i].pid == pid) return &busy[i];
  return NULL;
}

static void remember_busy(struct supervisor sup) {
  if (busy_n == busy_cap) {
    busy_cap = busy_cap ? busy_cap * 2 : 16;
    busy = realloc(busy, busy_cap * sizeof *busy);
    if (!busy) exit(1);
  }
  busy[busy_n++] = sup;
}

static struct supervisor forget_busy(struct supervisor *entry) {
  struct supervisor sup = *entry;
  *entry = busy[--busy_n];
  return sup;
}

/* Hands the request to an idle supervisor; its pid, or -1 when none could take it. */
static pid_t use_standby(char *const *args, int nargs, const int fds[4]) {
  for (int i = 0; i < 4; i++)
    if (fds[i] < 0) return -1;
  size_t len = 0;
  for (int i = 0; i < nargs; i++) len += strlen(args[i]) + 1;
  if (len > STANDBY_REQUEST_MAX) return -1;
  char *payload = malloc(len ? len : 1);
  if (!payload) return -1;
  char *p = payload;
  for (int i = 0; i < nargs; i++) p = stpcpy(p, args[i]) + 1;
  pid_t started = -1;
  while (started < 0 && idle_n > 0) {
    struct supervisor sup = idle[--idle_n];
    uint32_t len32 = (uint32_t)len;
    char control[CMSG_SPACE(4 * sizeof(int))];
    memset(control, 0, sizeof control);
    /* Length, descriptors and arguments in one message: the supervisor wakes once and finds it all there. */
    struct iovec iov[2] = {{&len32, sizeof len32}, {payload, len}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2, .msg_control = control, .msg_controllen = sizeof control};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(4 * sizeof(int));
    memcpy(CMSG_DATA(cm), fds, 4 * sizeof(int));
    ssize_t sent = sendmsg(sup.sock, &msg, MSG_NOSIGNAL);
    size_t payload_sent = sent > (ssize_t)sizeof len32 ? (size_t)sent - sizeof len32 : 0;
    if (sent >= (ssize_t)sizeof len32 && write_all(sup.sock, payload + payload_sent, len - payload_sent) == 0) {
      remember_busy(sup);
      started = sup.pid;
    } else {
      close_supervisor(sup, 1);
    }
  }
  free(payload);
  return started;
}

void exec_release(pid_t sup, int reusable) {
  struct supervisor *entry = find_busy(sup);
  if (!entry) return;
  struct supervisor s = forget_busy(entry);
  char ready = 0;
  /* Written before the outcome's pipe closed: it is there now, or the supervisor is ending. */
  if (reusable && idle_n < IDLE_MAX && recv(s.sock, &ready, 1, MSG_DONTWAIT) == 1 && ready == SUPERVISOR_READY) {
    idle[idle_n++] = s;
    return;
  }
  close_supervisor(s, 0);
}

void exec_reaped(pid_t pid) {
  struct supervisor *entry = find_busy(pid);
  if (entry) close_supervisor(forget_busy(entry), 0);
  for (int i = 0; i < idle_n; i++)
    if (idle[i].pid == pid) {
      close(idle[i].sock);
      idle[i] = idle[--idle_n];
      return;
    }
}

pid_t exec_start(char *const *args, int nargs, int in_fd, int out_fd, int err_fd, int status_fd) {
  struct start s = {args, nargs, {in_fd, out_fd, err_fd, status_fd}};
  exec_used = 1;
  pid_t ready = use_standby(args, nargs, s.fds);
  if (ready > 0) return ready;
  if (tree == TREE_PIDNS) return clone_into_namespaces(pidns_init, &s);
  pid_t pid = fork();
  if (pid != 0) return pid;
  /* If the agent dies, the supervisor still empties the tree. */
  if (prctl(PR_SET_PDEATHSIG, SIG_EXEC_KILLTREE) != 0) _exit(125);
  child_setup(s.fds, 4);
  supervise(args, nargs, -1, -1);
  return -1;
}

void exec_signal(pid_t sup, int sig) {
  union sigval v = {.sival_int = sig};
  sigqueue(sup, SIG_EXEC_FORWARD, v);
}

void exec_kill(pid_t sup) {
  kill(sup, tree == TREE_PIDNS ? SIGKILL : SIG_EXEC_KILLTREE);
}

/* ---- the tree mode --------------------------------------------------- */

static int probe_child(void *arg) {
  (void)arg;
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) _exit(1);
  _exit(mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0 ? 0 : 1);
}

/* EXECENV_AGENT_TREE=subreaper (or pidns) skips the probe: for tests and for hosts where the probe misleads. */
enum tree_mode exec_probe_tree(void) {
  const char *forced = getenv("EXECENV_AGENT_TREE");
  if (forced && strcmp(forced, "subreaper") == 0) return tree = TREE_SUBREAPER;
  if (forced && strcmp(forced, "pidns") == 0) return tree = TREE_PIDNS;
  tree = TREE_SUBREAPER;
  pid_t pid = clone_into_namespaces(probe_child, NULL);
  if (pid < 0) return tree;
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return tree;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) tree = TREE_PIDNS;
  return tree;
}

const char *exec_tree_name(enum tree_mode mode) {
  return mode == TREE_PIDNS ? "pidns" : "subreaper";
}

void exec_set_linux32(int on) {
  linux32 = on;
}
