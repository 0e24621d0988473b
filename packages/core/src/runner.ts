import { PassThrough, type Readable, type Writable } from 'node:stream';
import { execa } from 'execa';
import { ExecenvError } from './errors.js';

/**
 * Options for one host command.
 *
 * @example
 * ```ts
 * import { hostRunner, type RunOptions } from '@execenv/core';
 * const opts: RunOptions = {
 *   env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' }, // exactly this: nothing of the host's
 *   timeout: 30_000,
 *   check: false, // a non-zero exit is a result, not a HostCommandError
 * };
 * const r = await hostRunner().run(['mountpoint', '-q', '/srv/rootfs'], opts);
 * ```
 */
export interface RunOptions {
  /** The exact environment of the command; the host's is used when absent. */
  env?: Record<string, string>;
  /** Working directory on the host. */
  cwd?: string;
  /** Bytes or text written to stdin. */
  input?: string | Uint8Array;
  /** Cancels the command (SIGKILL). */
  signal?: AbortSignal;
  /** Milliseconds before the command is killed. */
  timeout?: number;
  /** Throw HostCommandError on a non-zero exit. @default true */
  check?: boolean;
}

/**
 * What a finished host command left.
 *
 * @example
 * ```ts
 * import { hostRunner, type RunResult } from '@execenv/core';
 * const r: RunResult = await hostRunner().run(['findmnt', '-n', '-o', 'FSTYPE', '/srv'], { check: false });
 * const fstype = r.exitCode === 0 ? r.stdout.trim() : undefined;
 * ```
 */
export interface RunResult {
  /** The argv that ran, after any prefix. */
  argv: readonly string[];
  /** Exit code, or null after a signal. */
  exitCode: number | null;
  /** Terminating signal name, or null. */
  signal: string | null;
  /** Standard output, decoded as UTF-8. */
  stdout: string;
  /** Standard error, decoded as UTF-8. */
  stderr: string;
}

/**
 * Stdio of a spawned host process: a pipe, nothing, or this process's own
 * stream (`inherit`).
 *
 * @example
 * ```ts
 * import { hostRunner, type StdioOption } from '@execenv/core';
 * const stdout: StdioOption = process.env.DEBUG ? 'inherit' : 'ignore';
 * const daemon = hostRunner().spawn(['foo-daemon', '--foreground'], { stdin: 'ignore', stdout, stderr: 'pipe' });
 * ```
 */
export type StdioOption = 'pipe' | 'ignore' | 'inherit';

/**
 * Options for a long-running host process.
 *
 * @example
 * ```ts
 * import { hostRunner, type SpawnOptions } from '@execenv/core';
 * const opts: SpawnOptions = { env: { PATH: '/usr/bin:/bin' }, cwd: '/var/lib/foo', stdin: 'ignore', detached: true };
 * const daemon = hostRunner().spawn(['foo-daemon', '--foreground'], opts);
 * ```
 */
export interface SpawnOptions {
  /** The exact environment of the process; the host's is used when absent. */
  env?: Record<string, string>;
  /** Working directory on the host. */
  cwd?: string;
  /** @default 'pipe' */
  stdin?: StdioOption;
  /** @default 'pipe' */
  stdout?: StdioOption;
  /** @default 'pipe' */
  stderr?: StdioOption;
  /** Start the process in its own process group. @default false */
  detached?: boolean;
}

/**
 * A host process started by ProcessRunner.spawn.
 *
 * @example
 * ```ts
 * import { createWriteStream } from 'node:fs';
 * import { hostRunner, type RunningProcess } from '@execenv/core';
 * const tar: RunningProcess = hostRunner().spawn(['tar', '-C', '/srv/rootfs', '-cf', '-', '.'], { stdin: 'ignore' });
 * tar.stdout?.pipe(createWriteStream('/tmp/rootfs.tar'));
 * const { exitCode, signal } = await tar.exited;
 * if (exitCode !== 0) throw new Error(`tar failed: ${signal ?? exitCode}`);
 * ```
 */
export interface RunningProcess {
  /** Host pid, once started. */
  readonly pid: number | undefined;
  /** Writable stdin when piped. */
  readonly stdin: Writable | null;
  /** Readable stdout when piped. */
  readonly stdout: Readable | null;
  /** Readable stderr when piped. */
  readonly stderr: Readable | null;
  /** Sends a signal; returns false when the process is gone. */
  kill(signal?: NodeJS.Signals): boolean;
  /** Resolves when the process ends; rejects only when it could not start. */
  readonly exited: Promise<{ exitCode: number | null; signal: string | null }>;
}

/**
 * ProcessRunner is the one way the SDK runs host commands: argv arrays,
 * never a shell string. Tests hand drivers a fake one that records argv.
 *
 * @example
 * ```ts
 * import { ChrootDriver } from '@execenv/chroot';
 * import type { ProcessRunner } from '@execenv/core';
 * import { FakeRunner } from '@execenv/core/testing';
 * const runner: ProcessRunner = new FakeRunner(); // records argv, runs nothing
 * const driver = new ChrootDriver({ runner });
 * ```
 */
export interface ProcessRunner {
  /** Runs argv to completion and returns its output. */
  run(argv: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** Starts argv and returns its streams. */
  spawn(argv: readonly string[], opts?: SpawnOptions): RunningProcess;
}

/**
 * HostCommandError says a host command the SDK ran failed; it carries argv and stderr.
 *
 * @example
 * ```ts
 * import { HostCommandError, hostRunner } from '@execenv/core';
 * try {
 *   await hostRunner().run(['umount', '/srv/rootfs/proc']);
 * } catch (err) {
 *   if (!(err instanceof HostCommandError)) throw err;
 *   console.error(err.result.exitCode, err.result.stderr); // e.g. 32 'umount: /srv/rootfs/proc: not mounted.'
 * }
 * ```
 */
export class HostCommandError extends ExecenvError {
  /** The command's result. */
  readonly result: RunResult;
  constructor(result: RunResult, cause?: unknown) {
    const status = result.signal ? `killed by ${result.signal}` : `exit status ${result.exitCode}`;
    const detail = result.stderr.trim() || result.stdout.trim();
    super(
      'EXEC_FAILED',
      `execenv: host command failed (${status}): ${result.argv.join(' ')}${detail ? `: ${detail}` : ''}`,
      {
        op: 'host-command',
        cause,
      },
    );
    this.result = result;
  }
}

/**
 * Options of the execa-based runner.
 *
 * @example
 * ```ts
 * import { createRunner, type ExecaRunnerOptions } from '@execenv/core';
 * const opts: ExecaRunnerOptions = { sudo: ['doas', '-n'] }; // `true` means ['sudo', '-n', '--']
 * const runner = createRunner(opts);
 * await runner.run(['mount', '--bind', '/srv/src', '/srv/rootfs/src']); // runs `doas -n mount --bind ...`
 * ```
 */
export interface ExecaRunnerOptions {
  /**
   * Prefix every command with this argv, e.g. `['sudo', '-n', '--']` on hosts
   * where the caller is not root. `true` means exactly that sudo prefix.
   * @default no prefix
   */
  sudo?: boolean | readonly string[];
}

const SUDO = ['sudo', '-n', '--'] as const;

function prefixOf(opts: ExecaRunnerOptions): readonly string[] {
  if (opts.sudo === true) return SUDO;
  if (Array.isArray(opts.sudo)) return opts.sudo;
  return [];
}

function envOptions(env: Record<string, string> | undefined) {
  return env ? { env, extendEnv: false } : {};
}

/**
 * Creates the execa-backed ProcessRunner every driver uses by default.
 *
 * @example
 * ```ts
 * import { createRunner } from '@execenv/core';
 * const runner = createRunner({ sudo: true }); // every command as `sudo -n -- argv`
 * const { stdout } = await runner.run(['losetup', '--find', '--show', '/srv/disk.img']);
 * ```
 */
export function createRunner(opts: ExecaRunnerOptions = {}): ProcessRunner {
  const prefix = prefixOf(opts);
  return {
    async run(argv, o = {}) {
      const full = [...prefix, ...argv];
      const [file, ...args] = full as [string, ...string[]];
      const r = await execa(file, args, {
        ...envOptions(o.env),
        cwd: o.cwd,
        // Never leave a command waiting on an open stdin it was not given.
        ...(o.input === undefined ? { stdin: 'ignore' as const } : { input: o.input }),
        cancelSignal: o.signal,
        timeout: o.timeout,
        reject: false,
        stripFinalNewline: false,
        killSignal: 'SIGKILL',
      });
      const result: RunResult = {
        argv: full,
        exitCode: r.exitCode ?? null,
        signal: r.signal ?? null,
        stdout: String(r.stdout ?? ''),
        stderr: String(r.stderr ?? ''),
      };
      if (r.failed && r.exitCode === undefined && r.signal === undefined) throw new HostCommandError(result, r.cause);
      if (o.check !== false && (result.exitCode !== 0 || result.signal)) throw new HostCommandError(result);
      return result;
    },
    spawn(argv, o = {}) {
      const full = [...prefix, ...argv];
      const [file, ...args] = full as [string, ...string[]];
      const sub = execa(file, args, {
        ...envOptions(o.env),
        cwd: o.cwd,
        stdio: [o.stdin ?? 'pipe', o.stdout ?? 'pipe', o.stderr ?? 'pipe'],
        detached: o.detached ?? false,
        buffer: false,
        reject: false,
      });
      const exited = sub.then((r) => {
        if (r.failed && r.exitCode === undefined && r.signal === undefined)
          throw new HostCommandError({ argv: full, exitCode: null, signal: null, stdout: '', stderr: '' }, r.cause);
        return { exitCode: r.exitCode ?? null, signal: r.signal ?? null };
      });
      return {
        get pid() {
          return sub.pid;
        },
        stdin: sub.stdin,
        stdout: held(sub.stdout),
        stderr: held(sub.stderr),
        kill: (signal) => sub.kill(signal ?? 'SIGTERM'),
        exited,
      };
    },
  };
}

/**
 * execa's unbuffered output streams drop what arrives before someone reads
 * them; piping into a PassThrough at once keeps it, with backpressure, until
 * the caller reads.
 */
function held(stream: Readable | null): Readable | null {
  if (!stream) return null;
  const keep = new PassThrough({ highWaterMark: 1 << 16 });
  stream.on('error', (err) => keep.destroy(err));
  return stream.pipe(keep);
}

let defaultRunner: ProcessRunner | undefined;

/**
 * The process-wide runner (no prefix) used when a driver is given none.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * const r = await hostRunner().run(['podman', 'version', '--format', '{{.Client.Version}}'], { check: false });
 * if (r.exitCode === 0) console.log(r.stdout.trim());
 * ```
 */
export function hostRunner(): ProcessRunner {
  defaultRunner ??= createRunner();
  return defaultRunner;
}
