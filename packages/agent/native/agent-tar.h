/*
 * execenv-agent: the tar side of the file operations (tar-out writes a pax
 * archive of a tree, tar-in extracts one safely), and the few helpers
 * agent-files.c shares with it.
 */
#ifndef EXECENV_AGENT_TAR_H
#define EXECENV_AGENT_TAR_H

#include <stddef.h>
#include <sys/types.h>

/* Large transfer unit for file content (read, write, tar streams). */
#define FILE_IO_CHUNK (1024 * 1024)

/*
 * Writes `path` (a file or a tree) to out_fd as a pax archive; ends the
 * operation. With `direct`, large files are read with direct I/O.
 */
void tar_out(const char *path, int direct, int out_fd, int status_fd) __attribute__((noreturn));

/*
 * Writes the archive of `path`, large files read with direct I/O, into the
 * new file `archive` (created exclusively, mode 0600); ends the operation.
 */
void tar_out_file(const char *path, const char *archive, int status_fd) __attribute__((noreturn));

/* Extracts the archive read from in_fd into destDir; ends the operation. */
void tar_in(const char *dest, int in_fd, int status_fd) __attribute__((noreturn));

/*
 * Extracts the archive read from in_fd into the host directory destDir, as
 * tar_in does but for an archive from inside an environment: no symlink
 * already in destDir is followed, and device nodes, fifos and extended
 * attributes are not made. Ends the operation.
 */
void tar_in_host(const char *dest, int in_fd, int status_fd) __attribute__((noreturn));

/*
 * Extracts the archive in the regular file `archive` into destDir, large
 * files written with direct I/O; ends the operation.
 */
void tar_in_file(const char *dest, const char *archive, int status_fd) __attribute__((noreturn));

/* ---- shared with agent-files.c ---- */

/* Waits until fd is readable; -1 with errno ECANCELED once the worker got SIGTERM. */
int input_wait(int fd);

/* read(2) of the operation's input that gives up (-1, ECANCELED) on SIGTERM. */
ssize_t input_read(int fd, void *buf, size_t len);

/* Non-zero once SIGTERM arrived (checked before committing anything). */
int term_requested(void);

/* Removes name below dirfd: a file, a symlink or a whole tree, never following symlinks. 0 or -1. */
int remove_at(int dirfd, const char *name);

/* Ends the operation with the error code errno `e` maps to and "what: strerror(e)". */
void end_errno(int status_fd, const char *what, int e) __attribute__((noreturn));

/* Parses a whole octal (base 8) or decimal (base 10) unsigned number; 0 or -1. */
int parse_number(const char *s, int base, unsigned long long *out);

#endif
