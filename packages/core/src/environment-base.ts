import { resolve } from 'node:path';
import { Readable } from 'node:stream';
import type {
  Capability,
  Environment,
  ExecOptions,
  ExecProcess,
  ExecResult,
  FileOptions,
  FileStat,
} from './contract.js';
import { ClosedError, InvalidSpecError } from './errors.js';
import { type ExecenvEvent, emit } from './events.js';
import { closeOnSignal, forgetOnSignal } from './lifecycle/signals.js';
import { throwIfAborted } from './process-exec.js';
import { envProblem } from './spec.js';

/**
 * What every environment is built from.
 *
 * @example
 * ```ts
 * import { type EnvironmentInit, newEnvironmentId } from '@execenv/core';
 * const init: EnvironmentInit = {
 *   id: newEnvironmentId(),
 *   driver: 'foo',
 *   capabilities: ['isolation-container', 'root'],
 *   onEvent: opts.onEvent,
 * };
 * const env = new FooEnvironment(init); // class FooEnvironment extends BaseEnvironment
 * ```
 */
export interface EnvironmentInit {
  /** `execenv-<random>`. */
  id: string;
  /** The driver name. */
  driver: string;
  /** Declared capabilities. */
  capabilities: Iterable<Capability>;
  /** Event listener from OpenOptions. */
  onEvent?: (event: ExecenvEvent) => void;
  /** Close on SIGINT/SIGTERM. @default true */
  closeOnSignal?: boolean;
}

function errorStream(err: Error): Readable {
  const s = new Readable({ read() {} });
  queueMicrotask(() => s.destroy(err));
  return s;
}

/**
 * BaseEnvironment gives drivers the parts of Environment that are the same
 * everywhere: closed-state checks, idempotent close, `await using`, signal
 * handling and exec events. Drivers implement the protected `do*` methods and
 * `destroy`.
 *
 * @example
 * ```ts
 * import { BaseEnvironment, type EnvironmentInit, type ExecOptions, superviseExec } from '@execenv/core';
 * class FooEnvironment extends BaseEnvironment {
 *   constructor(init: EnvironmentInit, private readonly box: FooBox) { super(init); }
 *   protected doExec(argv: string[], opts: ExecOptions) {
 *     const control = { killTree: () => this.box.killAll(), context: this.context('exec') };
 *     return superviseExec(this.box.start(argv, opts), argv, opts, control);
 *   }
 *   // doSpawn, doPush, doPull, doPushArchive, doPullArchive, doStat, doReadDir and destroy likewise
 * }
 * ```
 */
export abstract class BaseEnvironment implements Environment {
  /** `execenv-<random>`. */
  readonly id: string;
  /** The driver name. */
  readonly driver: string;
  /** Declared capabilities. */
  readonly capabilities: ReadonlySet<Capability>;
  readonly #onEvent: ((event: ExecenvEvent) => void) | undefined;
  #closing: Promise<void> | undefined;

  protected constructor(init: EnvironmentInit) {
    this.id = init.id;
    this.driver = init.driver;
    this.capabilities = new Set(init.capabilities);
    this.#onEvent = init.onEvent;
    if (init.closeOnSignal !== false) closeOnSignal(this);
  }

  /** Whether close() has been called. */
  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /** Sends an event to the listener given at open. */
  protected emit(event: ExecenvEvent): void {
    emit(this.#onEvent, event);
  }

  /** Throws ClosedError when the environment is closed. */
  protected ensureOpen(op: string): void {
    if (this.#closing) throw new ClosedError(this.id, op);
  }

  /** Error context for this environment. */
  protected context(op: string) {
    return { envId: this.id, driver: this.driver, op };
  }

  async exec(argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    this.ensureOpen('exec');
    validateArgv(argv);
    validateExecOptions(opts);
    throwIfAborted(opts.signal, argv, this.context('exec'));
    this.emit({ type: 'exec-start', envId: this.id, argv });
    const started = performance.now();
    try {
      const result = await this.doExec(argv, opts);
      this.emit({
        type: 'exec-end',
        envId: this.id,
        argv,
        exitCode: result.exitCode,
        signal: result.signal,
        durationMs: result.durationMs,
      });
      return result;
    } catch (err) {
      const result = (err as { result?: ExecResult }).result;
      this.emit({
        type: 'exec-end',
        envId: this.id,
        argv,
        exitCode: result?.exitCode ?? null,
        signal: result?.signal ?? null,
        durationMs: Math.round(performance.now() - started),
      });
      throw err;
    }
  }

  spawn(argv: string[], opts: ExecOptions = {}): ExecProcess {
    this.ensureOpen('spawn');
    validateArgv(argv);
    validateExecOptions(opts);
    throwIfAborted(opts.signal, argv, this.context('spawn'));
    this.emit({ type: 'exec-start', envId: this.id, argv });
    return this.doSpawn(argv, opts);
  }

  async push(src: string | Uint8Array | Readable, dest: string, opts: FileOptions = {}): Promise<void> {
    this.ensureOpen('push');
    // Host paths reach drivers absolute: a relative one is the caller's, relative to its working directory.
    await this.doPush(typeof src === 'string' ? resolve(src) : src, dest, opts);
  }

  async pull(src: string, dest: string): Promise<void> {
    this.ensureOpen('pull');
    await this.doPull(src, resolve(dest));
  }

  async pushArchive(tar: Readable, destDir: string): Promise<void> {
    this.ensureOpen('pushArchive');
    await this.doPushArchive(tar, destDir);
  }

  pullArchive(srcPath: string): Readable {
    if (this.#closing) return errorStream(new ClosedError(this.id, 'pullArchive'));
    return this.doPullArchive(srcPath);
  }

  async stat(path: string): Promise<FileStat | null> {
    this.ensureOpen('stat');
    return this.doStat(path);
  }

  async readDir(path: string): Promise<string[]> {
    this.ensureOpen('readDir');
    return this.doReadDir(path);
  }

  /** Stops and destroys everything; the first call does the work, later calls share its outcome. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      forgetOnSignal(this);
      try {
        await this.beforeDestroy();
        await this.destroy();
      } finally {
        this.emit({ type: 'destroy', envId: this.id, driver: this.driver });
      }
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Runs argv; the base has checked state, argv and the abort signal. */
  protected abstract doExec(argv: string[], opts: ExecOptions): Promise<ExecResult>;
  /** Starts argv with streams. */
  protected abstract doSpawn(argv: string[], opts: ExecOptions): ExecProcess;
  /** Copies into the environment. */
  protected abstract doPush(src: string | Uint8Array | Readable, dest: string, opts: FileOptions): Promise<void>;
  /** Copies out of the environment. */
  protected abstract doPull(src: string, dest: string): Promise<void>;
  /** Extracts a tar stream inside the environment. */
  protected abstract doPushArchive(tar: Readable, destDir: string): Promise<void>;
  /** Streams a path as tar. */
  protected abstract doPullArchive(srcPath: string): Readable;
  /** Describes a path. */
  protected abstract doStat(path: string): Promise<FileStat | null>;
  /** Lists a directory. */
  protected abstract doReadDir(path: string): Promise<string[]>;
  /**
   * Runs once when close() begins, after new work is refused and before
   * destroy: where a base class stops what is still running. Does nothing
   * unless overridden.
   */
  protected async beforeDestroy(): Promise<void> {}
  /** Removes everything the environment created; called once. */
  protected abstract destroy(): Promise<void>;
}

/**
 * Throws InvalidSpecError naming the first bad exec option: env, cwd or user.
 *
 * @example
 * ```ts
 * import { validateArgv, validateExecOptions } from '@execenv/core';
 * // first in an Environment.exec that does not extend BaseEnvironment:
 * validateArgv(argv);
 * validateExecOptions(opts); // { cwd: 'src' } throws InvalidSpecError for field 'cwd'
 * ```
 */
export function validateExecOptions(opts: ExecOptions): void {
  if (opts.env !== undefined) {
    const problem = envProblem(opts.env);
    if (problem) throw new InvalidSpecError(problem.field, problem.problem);
  }
  if (opts.cwd !== undefined && (typeof opts.cwd !== 'string' || !opts.cwd.startsWith('/') || opts.cwd.includes('\0')))
    throw new InvalidSpecError('cwd', `must be an absolute path without NUL bytes, got ${JSON.stringify(opts.cwd)}`);
  if (opts.user !== undefined && (typeof opts.user !== 'string' || opts.user === '' || opts.user.includes('\0')))
    throw new InvalidSpecError('user', `must be a user name or uid[:gid], got ${JSON.stringify(opts.user)}`);
}

/**
 * Throws InvalidSpecError unless argv is a non-empty array of strings without NUL bytes.
 *
 * @example
 * ```ts
 * import { hasCode, validateArgv } from '@execenv/core';
 * try {
 *   validateArgv(['echo', 'a\0b']);
 * } catch (err) {
 *   // execenv: invalid argv[1]: must be a string without NUL bytes, got "a\u0000b"
 *   if (hasCode(err, 'INVALID_SPEC')) console.error(err.message);
 * }
 * ```
 */
export function validateArgv(argv: unknown): asserts argv is string[] {
  if (!Array.isArray(argv) || argv.length === 0)
    throw new InvalidSpecError('argv', 'must be a non-empty array of strings');
  argv.forEach((a, i) => {
    if (typeof a !== 'string' || a.includes('\0'))
      throw new InvalidSpecError(`argv[${i}]`, `must be a string without NUL bytes, got ${JSON.stringify(a)}`);
  });
}
