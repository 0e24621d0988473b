import type { Readable, Writable } from 'node:stream';
import type { ExecenvEvent } from './events.js';
import type { EnvSpec } from './spec.js';

/**
 * Capability names an environment declares. The isolation names say how far
 * the environment is separated from the host, as autopkgtest does.
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

/** Availability is what Driver.probe reports about the backend on this host. */
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

/** OpenOptions control how an environment is opened, not what it is. */
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

/** EnvironmentInfo is one entry of Driver.list. */
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

/** GcReport lists what a garbage collection removed. */
export interface GcReport {
  /** Environment ids whose leftovers were removed. */
  removed: string[];
  /** Problems met while removing, one line each. */
  errors: string[];
}

/** ExecOptions shape one command run inside an environment. */
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
  /** Reject with ExecError when the command exits non-zero, dies by a signal or times out. @default false */
  check?: boolean;
}

/** ExecResult is what a finished command left. A non-zero exit is a result, not an error. */
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

/** ExecProcess is a running command with its streams; see Environment.spawn. */
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

/** FileOptions shape a push. */
export interface FileOptions {
  /** File mode. @default the source's mode for host files, else 0o644 */
  mode?: number;
  /** Owner uid inside the environment. @default 0 */
  uid?: number;
  /** Owner gid inside the environment. @default 0 */
  gid?: number;
}

/** FileStat describes a path inside an environment without following a final symlink. */
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
