/* execenv-agent: becoming the init of an environment's own root (--root) and joining its network (--netns). */
#ifndef EXECENV_AGENT_ROOT_H
#define EXECENV_AGENT_ROOT_H

#include <stddef.h>

/* Joins the network namespace bound at `file`; 0, or -1 after a message on stderr. */
int root_join_netns(const char *file);

/*
 * Creates a pid namespace and forks its init. Returns only in that init,
 * in a mount namespace of its own with every mount private, with
 * *ready_fd the pipe root_ready() writes. The calling process stays
 * outside: it prints "ready" when told, kills the init when its stdin ends
 * (only when listening: with socket_path NULL the init serves stdin) or on
 * SIGTERM, then unlinks socket_path and exits with the init.
 */
void root_split(const char *socket_path, int *ready_fd);

/* A host path bind-mounted into the root (--bind, --bind-ro). */
struct root_bind {
  const char *source; /* host path, opened before the pivot */
  const char *target; /* path inside the root, resolved there after the pivot */
  int read_only;
};

/*
 * Pivots into `dir` and mounts /proc, /sys, a minimal /dev and the binds
 * inside it; 0, or -1 when the pivot or a bind failed (a bind the caller
 * asked for is never dropped silently).
 */
int root_pivot(const char *dir, const struct root_bind *binds, size_t nbinds);

/* Tells the process outside that the agent accepts connections. */
void root_ready(int ready_fd);

#endif
