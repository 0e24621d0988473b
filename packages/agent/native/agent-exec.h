/* execenv-agent: the exec supervisor and the child-process plumbing the event loop shares with it. */
#ifndef EXECENV_AGENT_EXEC_H
#define EXECENV_AGENT_EXEC_H

#include <signal.h>
#include <sys/types.h>

/* Signals the event loop keeps blocked; forked children unblock them. */
#define SIG_EXEC_FORWARD (SIGRTMIN)     /* sigqueue'd to a supervisor: deliver si_value to the command */
#define SIG_EXEC_KILLTREE (SIGRTMIN + 1) /* to a subreaper supervisor: kill the whole tree */

enum tree_mode { TREE_PIDNS, TREE_SUBREAPER };

/* Probes once whether per-command pid+mount namespaces work; EXECENV_AGENT_TREE=pidns|subreaper forces a mode. */
enum tree_mode exec_probe_tree(void);
const char *exec_tree_name(enum tree_mode mode);
void exec_set_linux32(int on);

/*
 * Starts the supervisor of one exec channel with the OPEN arguments; the
 * pipes become its fds 0, 1, 2 and the status pipe (END payload). Returns
 * its pid, or -1 with errno.
 */
pid_t exec_start(char *const *args, int nargs, int in_fd, int out_fd, int err_fd, int status_fd);

/* Before the loop waits: keeps one supervisor started ahead of the next exec, once any exec has run. */
void exec_prepare(void);

/* At shutdown: ends the idle supervisors, which would otherwise wait for a request forever. */
void exec_discard_standby(void);

/*
 * An exec channel has ended: its supervisor goes back among the idle ones
 * when `reusable` (the outcome arrived, nothing killed it) and it said it
 * can serve again; otherwise the loop lets go of it.
 */
void exec_release(pid_t sup, int reusable);

/* A child was reaped: forget it if it was a supervisor the loop kept. */
void exec_reaped(pid_t pid);

/* SIGNAL frame: delivers sig to the command of the supervisor `sup`. */
void exec_signal(pid_t sup, int sig);

/* KILL frame or end of session: kills the whole tree of the supervisor `sup`. */
void exec_kill(pid_t sup);

#define FD_KEEP (-2)
/*
 * In a freshly forked child: makes fds[i] descriptor i (-1 closes it,
 * FD_KEEP leaves it as it is), closes every descriptor from n on, and
 * restores the default SIGCHLD action and a signal mask
 * that blocks only SIG_EXEC_FORWARD and SIG_EXEC_KILLTREE.
 */
void child_setup(const int *fds, int n);

#endif
