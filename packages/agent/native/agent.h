/*
 * execenv-agent: shared declarations. PROTOCOL.md beside this directory is
 * the one description of the wire format.
 */
#ifndef EXECENV_AGENT_H
#define EXECENV_AGENT_H

#include <stddef.h>
#include <sys/types.h>

#define AGENT_PROTOCOL 1
#ifndef AGENT_VERSION
#define AGENT_VERSION "0.1.0"
#endif

/* Streams a file operation uses (file_op_streams). */
#define OP_INPUT 1  /* reads stream 0 from in_fd until end of file */
#define OP_OUTPUT 2 /* writes stream 1 to out_fd */

/*
 * File operations (agent-files.c, agent-tar.c) run in a worker the event
 * loop forks per operation, so blocking file I/O never stalls other
 * channels. The loop relays stream 0 into in_fd and out_fd into stream 1,
 * and sends what the worker wrote to status_fd as the channel's END payload.
 */

/* Returns OP_INPUT|OP_OUTPUT bits for a known operation, or -1 when `op` is not a file operation. */
int file_op_streams(const char *op);

/*
 * Runs `op` with its NUL-terminated arguments in the current (forked)
 * process and exits. in_fd/out_fd are -1 when the operation has no such
 * stream. The END payload (PROTOCOL.md, Outcomes) goes to status_fd.
 * The loop aborts a worker with SIGTERM (the client killed the channel or
 * the session ended): the worker then removes whatever it created that was
 * not finished (temporary files, a partial tar-in) and exits.
 */
void run_file_op(const char *op, char *const *args, int nargs, int in_fd, int out_fd, int status_fd)
    __attribute__((noreturn));

/*
 * Extracts an archive from inside an environment, read from in_fd, into
 * the host directory `dest` (tar_in_host) and exits, as a file operation's
 * worker does: the outcome goes to status_fd, SIGTERM undoes what it made.
 */
void host_tar_in(const char *dest, int in_fd, int status_fd) __attribute__((noreturn));

/*
 * The host side of a directory transfer with the agent listening on
 * socket_path (agent-client.c): `--pull` extracts the agent's tar-out of
 * src into the host directory dest, `--push` packs the host directory src
 * into the agent's tar-in of dest. Writes the outcome to stdout as an END
 * payload; returns the exit status (0 ok, 1 error outcome, 2 broken).
 */
int client_main(const char *op, const char *socket_path, const char *src, const char *dest);

/* Writes an `ok` END payload with the given "key=value" fields (NULL-terminated list) and exits 0. */
void end_ok(int status_fd, const char *const *fields) __attribute__((noreturn));

/* Writes an `error CODE MESSAGE` END payload and exits 1. */
void end_error(int status_fd, const char *code, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

/* write(2) all of buf, retrying on EINTR and short writes; 0 or -1. */
int write_all(int fd, const void *buf, size_t len);

#endif
