import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DriverUnavailableError, type ProcessRunner, type RunningProcess, withLock } from '@execenv/core';
import { connectExec } from './exec-client.js';
import type { ExecRequest } from './exec-protocol.js';
import { findBinary, HOST_PATH, pathExists } from './host-binaries.js';

/** Path of the C source of the server that runs an environment's commands. */
export const EXEC_SERVER_SOURCE = fileURLToPath(new URL('../native/execenv-exec-server.c', import.meta.url));

/** Longest path a unix socket address holds (sun_path less its NUL). */
export const MAX_SOCKET_PATH = 107;

/**
 * Returns the path of the compiled exec server, building it from its C
 * source into the cache the first time (keyed by the source's hash, so an
 * upgrade rebuilds it). Throws DriverUnavailableError when no compiler is
 * installed.
 */
export async function ensureExecServer(cacheDir: string, runner: ProcessRunner, cc = 'cc'): Promise<string> {
  const source = await readFile(EXEC_SERVER_SOURCE);
  const digest = createHash('sha256').update(source).digest('hex').slice(0, 16);
  const target = join(cacheDir, 'bin', `execenv-exec-server-${digest}`);
  if (await pathExists(target)) return target;
  const compiler = await findBinary(cc);
  if (!compiler)
    throw new DriverUnavailableError(
      'chroot',
      `building its exec server needs a C compiler ("${cc}" not found): apt-get install gcc libc6-dev`,
    );
  await mkdir(join(cacheDir, 'bin'), { recursive: true });
  await withLock(`${target}.lock`, async () => {
    if (await pathExists(target)) return;
    const tmp = `${target}.${process.pid}.tmp`;
    try {
      await runner.run([compiler, '-O2', '-Wall', '-o', tmp, EXEC_SERVER_SOURCE], { env: { PATH: HOST_PATH } });
      await rename(tmp, target);
    } finally {
      await rm(tmp, { force: true });
    }
  });
  return target;
}

/** Where and how an environment's exec server runs. */
export interface ExecServerOptions {
  /** The compiled server (ensureExecServer). */
  binary: string;
  /** Argv that enters the namespace holding the mounts (empty in root mode). */
  enter: readonly string[];
  /** The environment's root as the server's mount namespace sees it. */
  root: string;
  /** Run commands under the 32-bit personality. */
  linux32: boolean;
  /** Network namespace file every command joins; undefined shares the host's. */
  netns: string | undefined;
  /** Path of the unix socket to listen on, at most MAX_SOCKET_PATH bytes. */
  socket: string;
  /** Uid the socket is given to; undefined leaves it to the server's own user. */
  owner: number | undefined;
}

/** A running exec server: one per environment, one connection per command. */
export interface ExecServer {
  /** Starts a command. */
  exec(request: ExecRequest): RunningProcess;
  /** Stops the server; commands already running keep their connections. */
  stop(): Promise<void>;
}

/** Starts an environment's exec server through the runner and waits until it listens. */
export async function startExecServer(runner: ProcessRunner, o: ExecServerOptions): Promise<ExecServer> {
  const argv = [
    ...o.enter,
    o.binary,
    o.root,
    o.linux32 ? 'linux32' : '-',
    o.netns ?? '-',
    o.socket,
    o.owner === undefined ? '-' : String(o.owner),
  ];
  const proc = runner.spawn(argv, { env: { PATH: HOST_PATH }, stdin: 'pipe' });
  let stderr = '';
  const collectStderr = (c: Buffer) => (stderr += c.toString());
  proc.stderr?.on('data', collectStderr);
  const ready = new Promise<boolean>((resolve) => {
    let out = '';
    proc.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('ready\n')) resolve(true);
    });
    proc.exited.then(
      () => resolve(false),
      () => resolve(false),
    );
  });
  if (!(await ready)) {
    await proc.exited.catch(() => {});
    throw new DriverUnavailableError('chroot', `the exec server did not start: ${stderr.trim() || argv.join(' ')}`);
  }
  // Nothing more is expected on either stream; keep reading so it can never block on them, keeping nothing.
  proc.stdout?.resume();
  proc.stderr?.off('data', collectStderr).resume();
  return {
    exec: (request) => connectExec(o.socket, request),
    async stop() {
      proc.stdin?.end();
      await proc.exited.catch(() => {});
    },
  };
}
