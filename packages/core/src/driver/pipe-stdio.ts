import { close, constants, open } from 'node:fs';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { hostRunner, type ProcessRunner } from '../runner.js';
import { hostEnv } from './host.js';

/** Opens a path as a bare file descriptor (a FileHandle would close it when collected, under the socket). */
const openFd = (path: string, flags: number) =>
  new Promise<number>((resolve, reject) => open(path, flags, (err, fd) => (err ? reject(err) : resolve(fd))));
const closeFd = (fd: number) => new Promise<void>((resolve) => close(fd, () => resolve()));

/**
 * Options of pipeStdio.
 *
 * @example
 * ```ts
 * import { type PipeStdioOptions, pipeStdio } from '@execenv/core/driver';
 * // The command runs as nobody: it must own its pipes to reopen /dev/stdout.
 * const options: PipeStdioOptions = { owner: { uid: 65534, gid: 65534 }, dir: join(stateDir, 'envs', id) };
 * const stdio = await pipeStdio(options);
 * ```
 */
export interface PipeStdioOptions {
  /** The user the command runs as: the pipes are given to it, so it may reopen them. @default root's */
  owner?: { uid: number; gid: number };
  /** Runs mkfifo. @default hostRunner() */
  runner?: ProcessRunner;
  /** Where the pipes are made (in a fresh directory below it). @default os.tmpdir() */
  dir?: string;
}

/**
 * Real pipes for a command's stdio, and this process's ends of them.
 *
 * @example
 * ```ts
 * import { text } from 'node:stream/consumers';
 * import { type PipeStdio, pipeStdio } from '@execenv/core/driver';
 * const stdio: PipeStdio = await pipeStdio();
 * spawn('chroot', [root, ...argv], { stdio: [...stdio.fds] });
 * await stdio.closeCommandEnds(); // the command holds them now: its exit ends stdout and stderr
 * const output = await text(stdio.stdout);
 * await stdio.dispose();
 * ```
 */
export interface PipeStdio {
  /** The command's ends, to pass as its stdio: `[stdin, stdout, stderr]`. */
  readonly fds: readonly [number, number, number];
  /** Writes the command's stdin; end it to give the command EOF. */
  readonly stdin: Writable;
  /** The command's stdout. */
  readonly stdout: Readable;
  /** The command's stderr. */
  readonly stderr: Readable;
  /** Closes this process's copies of the command's ends; call it once the command has started. */
  closeCommandEnds(): Promise<void>;
  /** Closes everything and removes the pipes' directory. */
  dispose(): Promise<void>;
}

/**
 * pipeStdio makes three named pipes for a host command's stdin, stdout and
 * stderr. Node's `stdio: 'pipe'` gives a child socketpairs, on which
 * `echo > /dev/stdout` fails (a socket cannot be reopened through
 * /proc/self/fd), and pipes created by root with mode 0600 cannot be
 * reopened by a command running as another user. These are FIFOs owned by
 * `owner`: a command can open /dev/stdin, /dev/stdout and /dev/stderr as
 * any program expects. Pass `fds` as the child's stdio, then call
 * `closeCommandEnds()` so its exit ends the streams.
 *
 * @example
 * ```ts
 * import { spawn } from 'node:child_process';
 * import { pipeStdio } from '@execenv/core/driver';
 * // A command running as nobody reopens /dev/stdout only on pipes it owns.
 * const stdio = await pipeStdio({ owner: { uid: 65534, gid: 65534 } });
 * spawn('chroot', ['--userspec=65534:65534', root, ...argv], { stdio: [...stdio.fds] });
 * await stdio.closeCommandEnds();
 * stdio.stdout.pipe(process.stdout);
 * ```
 */
export async function pipeStdio(opts: PipeStdioOptions = {}): Promise<PipeStdio> {
  const dir = await mkdtemp(join(opts.dir ?? tmpdir(), 'execenv-stdio-'));
  const paths = ['stdin', 'stdout', 'stderr'].map((n) => join(dir, n));
  const fds: number[] = [];
  try {
    await (opts.runner ?? hostRunner()).run(['mkfifo', '-m', '0600', '--', ...paths], { env: hostEnv() });
    if (opts.owner) for (const p of paths) await chown(p, opts.owner.uid, opts.owner.gid);
    // Opening one end of a FIFO blocks until the other end is open. A holder opened read-write
    // (which never blocks on Linux) stands in for the other end while the two real ends open.
    const pair = async (path: string, commandFlags: number, ownFlags: number) => {
      const holder = await openFd(path, constants.O_RDWR);
      try {
        const own = await openFd(path, ownFlags);
        fds.push(own);
        const command = await openFd(path, commandFlags);
        fds.push(command);
        return [command, own] as const;
      } finally {
        await closeFd(holder);
      }
    };
    const [inCmd, inOwn] = await pair(paths[0]!, constants.O_RDONLY, constants.O_WRONLY);
    const [outCmd, outOwn] = await pair(paths[1]!, constants.O_WRONLY, constants.O_RDONLY);
    const [errCmd, errOwn] = await pair(paths[2]!, constants.O_WRONLY, constants.O_RDONLY);
    const stdin = new Socket({ fd: inOwn, readable: false, writable: true });
    const stdout = new Socket({ fd: outOwn, readable: true, writable: false });
    const stderr = new Socket({ fd: errOwn, readable: true, writable: false });
    const commandEnds = [inCmd, outCmd, errCmd];
    const closeCommandEnds = async () => {
      for (const fd of commandEnds.splice(0)) await closeFd(fd);
    };
    return {
      fds: [inCmd, outCmd, errCmd],
      stdin,
      stdout,
      stderr,
      closeCommandEnds,
      async dispose() {
        await closeCommandEnds();
        for (const s of [stdin, stdout, stderr]) s.destroy();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    for (const fd of fds) await closeFd(fd);
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
