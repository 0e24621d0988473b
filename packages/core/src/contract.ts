import type { Readable, Writable } from 'node:stream';
import type { ExecenvEvent } from './events.js';
import type { EnvSpec } from './spec.js';

/**
 * Capability names an environment declares. The isolation names say how far
 * the environment is separated from the host, as autopkgtest does.
 *
 * @example
 * ```ts
 * import type { Capability } from '@execenv/core';
 * const needed: Capability[] = ['isolation-machine', 'reboot'];
 * const missing = needed.filter((c) => !env.capabilities.has(c));
 * if (missing.length > 0) throw new Error(`${env.driver} lacks ${missing.join(', ')}`);
 * ```
 */
export type Capability =
  | 'isolation-chroot'
  | 'isolation-container'
  | 'isolation-machine'
  | 'root'
  | 'network'
  | 'revert'
  | 'reboot'
  | 'snapshot'
  | 'publish'
  | 'port-forwarding'
  | 'resource-limits';

/**
 * Availability is what Driver.probe reports about the backend on this host.
 *
 * @example
 * ```ts
 * import { getDriver } from '@execenv/core';
 * const availability = await (await getDriver('podman')).probe();
 * if (!availability.available) console.error(`podman: ${availability.reason}`);
 * else console.log(availability.version, availability.capabilities.join(', '));
 * ```
 */
export interface Availability {
  /** Whether open() can work here. */
  available: boolean;
  /** Why not (when unavailable), or how it will run (e.g. rootless mode). */
  reason?: string;
  /** Backend version, when known. */
  version?: string;
  /** Capabilities environments of this driver will have. */
  capabilities: Capability[];
  /** Driver-specific facts, e.g. `{ mode: 'rootless' }`. */
  details?: Record<string, string>;
}

/**
 * OpenOptions control how an environment is opened, not what it is.
 *
 * @example
 * ```ts
 * import { type OpenOptions, open } from '@execenv/core';
 * const options: OpenOptions = {
 *   onEvent: (e) => console.error(e.type),
 *   signal: AbortSignal.timeout(300_000), // give up opening after 5 minutes
 *   stateDir: '/var/lib/ci/execenv',
 * };
 * const env = await open('chroot', { image: './bookworm.tar.zst' }, options);
 * ```
 */
export interface OpenOptions {
  /** Receives progress and lifecycle events. Must not throw. */
  onEvent?: (event: ExecenvEvent) => void;
  /** Cancels the open; anything already created is removed. */
  signal?: AbortSignal;
  /**
   * Directory for leases and per-environment state.
   * @default `$EXECENV_STATE_DIR`, else `$XDG_STATE_HOME/execenv`, else `~/.local/state/execenv`
   */
  stateDir?: string;
  /**
   * Close this environment when the process receives SIGINT or SIGTERM.
   * @default true
   */
  closeOnSignal?: boolean;
}

/**
 * Driver opens environments of one backend. Only probe and open are
 * required; list and gc are optional and discovered at run time.
 *
 * @example
 * ```ts
 * import type { Availability, Driver, EnvSpec, OpenOptions } from '@execenv/core';
 * import { register, validateSpec } from '@execenv/core';
 * class FooDriver implements Driver {
 *   readonly name = 'foo';
 *   async probe(): Promise<Availability> {
 *     return { available: true, capabilities: ['isolation-container', 'root'] };
 *   }
 *   open(spec: EnvSpec, opts?: OpenOptions) {
 *     return openFoo(validateSpec(spec, 'foo'), opts); // your backend
 *   }
 * }
 * register('foo', new FooDriver());
 * ```
 */
export interface Driver {
  /** The registry name, e.g. `chroot`. */
  readonly name: string;
  /** Reports whether this backend works on this host and why not. Never throws for a missing backend. */
  probe(): Promise<Availability>;
  /**
   * Creates, starts and readies an environment. On failure everything created
   * so far is removed before the promise rejects.
   */
  open(spec: EnvSpec, opts?: OpenOptions): Promise<Environment>;
  /**
   * Lists environments of this driver that still exist on the host, including
   * those left by dead owners. The conformance suite uses it to find leaks.
   */
  list?(opts?: { stateDir?: string }): Promise<EnvironmentInfo[]>;
  /** Removes what environments of dead owners left behind; returns what it removed. */
  gc?(opts?: { stateDir?: string }): Promise<GcReport>;
}

/**
 * EnvironmentInfo is one entry of Driver.list.
 *
 * @example
 * ```ts
 * import { getDriver } from '@execenv/core';
 * const driver = await getDriver('chroot');
 * for (const info of (await driver.list?.()) ?? [])
 *   if (!info.ownerAlive) console.log(`${info.id} (${info.driver}) left ${info.resources.join(', ')}`);
 * ```
 */
export interface EnvironmentInfo {
  /** The environment id (`execenv-<random>`). */
  id: string;
  /** The driver that created it. */
  driver: string;
  /** Whether the process that opened it is still alive. */
  ownerAlive: boolean;
  /** What the environment still holds on the host (mounts, dirs, processes, ...). */
  resources: string[];
}

/**
 * GcReport lists what a garbage collection removed.
 *
 * @example
 * ```ts
 * import { gc } from '@execenv/core';
 * const report = await gc({ drivers: ['chroot', 'podman'] });
 * console.log(`removed ${report.removed.length} environment(s)`);
 * for (const line of report.errors) console.error(line);
 * ```
 */
export interface GcReport {
  /** Environment ids whose leftovers were removed. */
  removed: string[];
  /** Problems met while removing, one line each. */
  errors: string[];
}

/**
 * ExecOptions shape one command run inside an environment.
 *
 * @example
 * ```ts
 * import type { ExecOptions } from '@execenv/core';
 * const opts: ExecOptions = {
 *   cwd: '/src',
 *   env: { LANG: 'C.UTF-8' },
 *   timeout: 600_000,
 *   check: true,
 *   onStdout: (chunk) => process.stdout.write(chunk),
 * };
 * await env.exec(['make', '-j4'], opts);
 * ```
 */
export interface ExecOptions {
  /** Environment variables, added to the environment's defaults (PATH). The host's never leak in. */
  env?: Record<string, string>;
  /** Working directory inside the environment. @default `/` */
  cwd?: string;
  /** User name, or `uid[:gid]`. @default the environment's default user (root) */
  user?: string;
  /** Standard input. @default 'ignore' */
  stdin?: string | Uint8Array | Readable | 'ignore';
  /** Called with each chunk of stdout as it arrives. */
  onStdout?: (chunk: Uint8Array) => void;
  /** Called with each chunk of stderr as it arrives. */
  onStderr?: (chunk: Uint8Array) => void;
  /** Milliseconds before the whole process tree inside the environment is killed. */
  timeout?: number;
  /** Aborting kills the whole process tree inside the environment and rejects with AbortedError. */
  signal?: AbortSignal;
  /**
   * Most bytes kept of stdout and of stderr each; past it the command is killed
   * and exec rejects with EXEC_FAILED. Streaming callbacks are not bounded.
   * @default 100 MiB
   */
  maxBuffer?: number;
  /**
   * Keep stdout/stderr in the result. Set false when only streaming.
   * @default true
   */
  buffer?: boolean;
  /**
   * Reject with ExecError when the command exits non-zero or dies by a signal,
   * and with ExecTimeoutError (code `TIMEOUT`) when it times out.
   * @default false
   */
  check?: boolean;
}

/**
 * ExecResult is what a finished command left. A non-zero exit is a result, not an error.
 *
 * @example
 * ```ts
 * import type { ExecResult } from '@execenv/core';
 * function describe(r: ExecResult): string {
 *   if (r.timedOut) return `timed out after ${r.durationMs} ms`;
 *   return r.signal ? `killed by ${r.signal}` : `exit ${r.exitCode}: ${r.stderr.trim()}`;
 * }
 * console.log(describe(await env.exec(['make', 'check'])));
 * ```
 */
export interface ExecResult {
  /** The argv that ran. */
  readonly argv: readonly string[];
  /** Exit code, or null when the command died by a signal. */
  readonly exitCode: number | null;
  /** The signal that killed the command (e.g. `SIGKILL`), or null. */
  readonly signal: string | null;
  /** Standard output, decoded as UTF-8. */
  readonly stdout: string;
  /** Standard error, decoded as UTF-8. */
  readonly stderr: string;
  /** Standard output, exact bytes. */
  readonly stdoutBytes: Uint8Array;
  /** Standard error, exact bytes. */
  readonly stderrBytes: Uint8Array;
  /** Whether the command was killed because its timeout passed. */
  readonly timedOut: boolean;
  /** Wall time from start to exit. */
  readonly durationMs: number;
}

/**
 * ExecProcess is a running command with its streams; see Environment.spawn.
 *
 * @example
 * ```ts
 * const proc = env.spawn(['sh', '-c', 'while read -r line; do echo "got $line"; done']);
 * proc.stdout.pipe(process.stdout);
 * proc.stdin?.end('one\ntwo\n');
 * const { exitCode } = await proc.result; // 0 once the loop has read to the end
 * ```
 */
export interface ExecProcess extends AsyncDisposable {
  /** Writable standard input, or null when stdin was given in the options. */
  readonly stdin: Writable | null;
  /** Standard output as it comes. */
  readonly stdout: Readable;
  /** Standard error as it comes. */
  readonly stderr: Readable;
  /** Resolves when the command ends (stdout/stderr in the result are empty unless buffered). */
  readonly result: Promise<ExecResult>;
  /** Kills the whole process tree inside the environment. */
  kill(): void;
}

/**
 * FileOptions shape a push.
 *
 * @example
 * ```ts
 * import type { FileOptions } from '@execenv/core';
 * const script: FileOptions = { mode: 0o755, uid: 1000, gid: 1000 };
 * await env.push('./ci/build.sh', '/home/builder/build.sh', script);
 * ```
 */
export interface FileOptions {
  /** File mode. @default the source's mode for host files, else 0o644 */
  mode?: number;
  /** Owner uid inside the environment. @default 0 */
  uid?: number;
  /** Owner gid inside the environment. @default 0 */
  gid?: number;
}

/**
 * FileStat describes a path inside an environment without following a final symlink.
 *
 * @example
 * ```ts
 * const st = await env.stat('/etc/resolv.conf');
 * if (st === null) console.log('missing');
 * else if (st.type === 'symlink') console.log(`link to ${st.linkTarget}`);
 * else console.log(`${st.type}, ${st.size} bytes, mode ${st.mode.toString(8)}, owner ${st.uid}:${st.gid}`);
 * ```
 */
export interface FileStat {
  /** The kind of entry. */
  type: 'file' | 'directory' | 'symlink' | 'other';
  /** Size in bytes (file) or link length (symlink). */
  size: number;
  /** Permission bits, including setuid/setgid/sticky. */
  mode: number;
  /** Owner uid. */
  uid: number;
  /** Owner gid. */
  gid: number;
  /** Modification time. */
  mtime: Date;
  /** Link target when type is `symlink`. */
  linkTarget?: string;
}

/**
 * Environment is one started container, VM or chroot. Every method except
 * close rejects with ClosedError after close. Methods may be called
 * concurrently.
 *
 * @example
 * ```ts
 * import { type Environment, open } from '@execenv/core';
 * const env: Environment = await open('chroot', { image: './bookworm.tar.zst' });
 * try {
 *   await env.push('./src', '/build/src');
 *   await env.exec(['make', '-C', '/build/src'], { check: true });
 *   await env.pull('/build/src/out', './out');
 * } finally {
 *   await env.close();
 * }
 * ```
 */
export interface Environment extends AsyncDisposable {
  /** `execenv-<random>`, unique per host. */
  readonly id: string;
  /** The driver name. */
  readonly driver: string;
  /** What this environment can do and how isolated it is. */
  readonly capabilities: ReadonlySet<Capability>;
  /** Runs argv (never through a host shell) and waits for it. */
  exec(argv: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Starts argv and returns its streams at once. */
  spawn(argv: string[], opts?: ExecOptions): ExecProcess;
  /**
   * Copies into the environment: a host path (file or directory), bytes, or a
   * stream of a file's content. Paths resolve inside the environment; a
   * symlink there never makes the write land outside it.
   */
  push(src: string | Uint8Array | Readable, dest: string, opts?: FileOptions): Promise<void>;
  /** Copies a file or directory out of the environment to a host path. */
  pull(src: string, dest: string): Promise<void>;
  /** Extracts a tar stream into destDir; unsafe entries reject with UnsafePathError. */
  pushArchive(tar: Readable, destDir: string): Promise<void>;
  /** Streams srcPath (file or directory) as a tar archive. */
  pullArchive(srcPath: string): Readable;
  /** Describes a path, or null when it does not exist. */
  stat(path: string): Promise<FileStat | null>;
  /** Names in a directory, sorted. */
  readDir(path: string): Promise<string[]>;
  /** Stops and destroys everything the environment created. Idempotent. */
  close(): Promise<void>;
}
