/*
 * execenv-init: PID 1 of one exec's pid namespace.
 *
 * usage: execenv-init ROOT CWD UID GID GROUPS PERSONALITY NETNS N NAME=VALUE... -- ARGV...
 *   GROUPS is a comma-separated list of supplementary gids ("" for none);
 *   NETNS is "-" or a network namespace file (a bind mount of
 *   /proc/PID/ns/net) the command joins, so all commands of an environment
 *   share one network without paying for a new namespace each;
 *   PERSONALITY is "-" or "linux32"; N is the number of NAME=VALUE entries
 *   that make up the command's whole environment. The host-side processes
 *   before it run with a clean environment, so nothing the caller passes
 *   (LD_PRELOAD, say) reaches a host binary.
 *
 * A command that is PID 1 of its namespace ignores signals it has no handler
 * for (even SIGKILL sent from inside) and must reap orphans. This init forks
 * the command so it keeps ordinary signal semantics, forwards termination
 * signals to it, reaps every orphan, and writes the command's wait status to
 * file descriptor 3 ("exit N" or "signal N") before exiting, which tears
 * down the whole namespace.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/personality.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t child;

static void forward(int sig) {
  if (child > 0) kill(child, sig);
}

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

extern char **environ;

static void run_child(char **argv, char **envp, char **command) {
  const char *root = argv[1], *cwd = argv[2];
  uid_t uid = (uid_t)strtoul(argv[3], NULL, 10);
  gid_t gid = (gid_t)strtoul(argv[4], NULL, 10);
  gid_t groups[256];
  int ngroups = parse_groups(argv[5], groups, 256);
  close(3);
  if (strcmp(argv[6], "linux32") == 0 && personality(PER_LINUX32) == -1) {
    fprintf(stderr, "execenv-init: personality linux32: %s\n", strerror(errno));
    _exit(126);
  }
  if (chroot(root) != 0) {
    fprintf(stderr, "execenv-init: chroot %s: %s\n", root, strerror(errno));
    _exit(126);
  }
  if (chdir(cwd) != 0) {
    fprintf(stderr, "execenv-init: cannot change directory to %s: %s\n", cwd, strerror(errno));
    _exit(126);
  }
  /* In a user namespace with setgroups denied, dropping to no groups is already the state we have. */
  int groups_ok = setgroups((size_t)ngroups, groups) == 0 || (errno == EPERM && ngroups == 0);
  if (!groups_ok || setgid(gid) != 0 || setuid(uid) != 0) {
    fprintf(stderr, "execenv-init: cannot switch to uid %u gid %u: %s\n", uid, gid, strerror(errno));
    _exit(126);
  }
  signal(SIGPIPE, SIG_DFL);
  environ = envp;
  execvp(command[0], command);
  int err = errno;
  fprintf(stderr, "execenv-init: cannot execute %s: %s\n", command[0], strerror(err));
  _exit(err == ENOENT ? 127 : 126);
}

int main(int argc, char **argv) {
  long nenv = argc > 8 ? strtol(argv[8], NULL, 10) : -1;
  if (argc < 11 || nenv < 0 || nenv > argc - 11 || strcmp(argv[9 + nenv], "--") != 0) {
    fprintf(stderr, "usage: execenv-init ROOT CWD UID GID GROUPS PERSONALITY NETNS N NAME=VALUE... -- ARGV...\n");
    return 125;
  }
  char **envp = argv + 9;
  argv[9 + nenv] = NULL; /* terminates envp; the command starts after it */
  char **command = argv + 10 + nenv;
  if (strcmp(argv[7], "-") != 0) {
    int fd = open(argv[7], O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
      fprintf(stderr, "execenv-init: cannot join network namespace %s: %s\n", argv[7], strerror(errno));
      return 125;
    }
    close(fd);
  }
  if (fcntl(3, F_SETFD, FD_CLOEXEC) != 0) {
    fprintf(stderr, "execenv-init: status descriptor 3 is not open\n");
    return 125;
  }
  child = fork();
  if (child < 0) {
    fprintf(stderr, "execenv-init: fork: %s\n", strerror(errno));
    return 125;
  }
  if (child == 0) run_child(argv, envp, command);
  static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
  for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++) signal(forwarded[i], forward);
  for (;;) {
    int status;
    pid_t pid = wait(&status);
    if (pid < 0 && errno == EINTR) continue;
    if (pid < 0) return 125;
    if (pid != child) continue;
    char line[32];
    int len = WIFSIGNALED(status) ? snprintf(line, sizeof line, "signal %d\n", WTERMSIG(status))
                                  : snprintf(line, sizeof line, "exit %d\n", WEXITSTATUS(status));
    if (write(3, line, (size_t)len) != len) return 125;
    return 0;
  }
}
