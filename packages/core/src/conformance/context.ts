import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Driver, Environment, OpenOptions } from '../contract.js';
import { mountsUnder } from '../lifecycle/mounts.js';
import type { EnvSpec } from '../spec.js';

/**
 * Options of runConformance and describeConformance.
 *
 * @example
 * ```ts
 * import { type ConformanceOptions, describeConformance } from '@execenv/core/conformance';
 * const options: ConformanceOptions = {
 *   name: 'foo on an emulated arm64 VM', driver: new FooDriver(), spec: { image: './conformance-arm64.tar' },
 *   timeScale: 5, // every deadline five times longer
 *   backendResources: (id) => listFooObjects(id), // what the daemon still holds for an id: want none after close
 *   visibleOnHost: ['backend', 'state'], // required while open, so an empty host after close means something
 *   skip: { 'dev-stdio': 'the serial console gives sockets, which cannot be reopened' },
 * };
 * describeConformance(options);
 * ```
 */
export interface ConformanceOptions {
  /** Shown in test names and reports. */
  name: string;
  /** The driver under test. */
  driver: Driver;
  /**
   * A spec that opens a working environment. Its image needs what the
   * image-prerequisites check lists (REQUIRED_COMMANDS, a user nobody
   * 65534:65534, /tmp 1777); buildConformanceImage writes one.
   */
  spec: EnvSpec;
  /** Passed to every open. */
  openOptions?: OpenOptions;
  /** Checks to skip, each with the reason printed beside it. Gaps are declared here, never patched into the suite. */
  skip?: Partial<Record<CheckName, string>>;
  /** Size of the large file pushed and pulled. @default 100 MiB */
  largeFileBytes?: number;
  /** Bytes streamed through stdout. @default 50 MiB */
  streamBytes?: number;
  /**
   * Milliseconds the file-race check races host-side file operations against
   * a symlink swapped inside the environment, for each of its three link targets.
   * Where neither swapped path has been seen as a symlink by then, the race
   * goes on until both have, for at most 10 s more (scaled by `timeScale`).
   * @default 4000
   */
  raceMs?: number;
  /**
   * Returns a spec of the driver's image with these top-level entries (keys
   * such as `/tmp`) replaced by symlinks to the given absolute host paths.
   * Without it the hostile-image-symlinks check is skipped with a reason.
   */
  imageWithSymlinks?: (links: Record<string, string>) => Promise<EnvSpec>;
  /**
   * Why the driver has no `list()`. Without `list()` the leaks check fails
   * unless this names the reason; the host evidence is checked either way.
   */
  withoutList?: string;
  /**
   * What the backend itself still holds for an environment id (containers,
   * instances, networks, volumes, images named after it), one line each, as
   * the daemon lists them. The leak checks want it empty after close and
   * after gc(). Daemon-backed drivers should give it: mounts, processes and
   * state files on the host do not show what a daemon keeps.
   */
  backendResources?: (id: string) => Promise<string[]>;
  /**
   * What the host shows of an open environment of this driver, by kind:
   * `mount` (a mount whose point or source names the id), `process` (a
   * process whose argv, root or cwd names the id, or that runs a command of
   * the environment), `state` (a name under the state directory holding the
   * id), `backend` (a line of backendResources). The leaks check requires
   * each kind listed here while the environment is open, so that finding
   * none after close means the driver cleaned up, not that the host could
   * not see it. Without it, a driver of whose open environment the host
   * shows nothing has the leaks check skipped with that reason.
   */
  visibleOnHost?: readonly HostEvidenceKind[];
  /**
   * How a separate owner process makes this driver, for the gc-after-kill
   * check: it runs `new (await import(module))[exportName](...args)`, opens an
   * environment of `spec`, starts a command, and is killed with SIGKILL.
   * `module` is resolved from the current working directory. Without it the
   * check is skipped with a reason.
   */
  ownerProcess?: { module: string; exportName: string; args?: unknown[] };
  /**
   * Multiplies every deadline and every generous timeout of the suite, for
   * backends that are slow by nature (a VM under emulation). Timeouts that a
   * check tests (an exec's own timeout firing) are not scaled. @default 1
   */
  timeScale?: number;
}

/**
 * A kind of host evidence the leak checks look for: mounts, processes,
 * names under the state directory, and lines of backendResources.
 *
 * @example
 * ```ts
 * import { type HostEvidenceKind, describeConformance } from '@execenv/core/conformance';
 * // A chroot-like driver: its root is mounted under the state directory and its commands are host processes.
 * const visibleOnHost: HostEvidenceKind[] = ['mount', 'process', 'state'];
 * describeConformance({ name: 'foo', driver: new FooDriver(), spec: { image }, visibleOnHost });
 * ```
 */
export type HostEvidenceKind = 'mount' | 'process' | 'state' | 'backend';

/**
 * Names of the conformance checks.
 *
 * @example
 * ```ts
 * import { type CheckName, describeConformance } from '@execenv/core/conformance';
 * const gaps: Partial<Record<CheckName, string>> = {
 *   user: 'only root is mapped: other uids do not exist in its user namespace',
 * };
 * describeConformance({ name: 'foo, rootless', driver: new FooDriver({ rootless: true }), spec, skip: gaps });
 * ```
 */
export type CheckName =
  | 'image-prerequisites'
  | 'open-close'
  | 'closed-operations'
  | 'open-abort'
  | 'events'
  | 'invalid-spec'
  | 'exit-codes'
  | 'env-isolation'
  | 'cwd'
  | 'user'
  | 'stdin'
  | 'separate-output'
  | 'streaming-memory'
  | 'binary-output'
  | 'timeout'
  | 'abort'
  | 'max-buffer'
  | 'dev-stdio'
  | 'network-none'
  | 'mounts'
  | 'file-modes'
  | 'empty-file'
  | 'large-file'
  | 'directory-tree'
  | 'archive-round-trip'
  | 'missing-path'
  | 'push-through-symlink'
  | 'unsafe-archive'
  | 'pull-symlink'
  | 'mode-bits'
  | 'host-symlinks'
  | 'archive-links'
  | 'file-race'
  | 'concurrency'
  | 'leaks'
  | 'close-while-running'
  | 'gc-after-kill'
  | 'hostile-image-symlinks'
  | 'deep-tree-close'
  | 'capabilities';

/**
 * What a check gets: the shared environment, a way to open more (closed for
 * it afterwards), and `problem` to record each finding as one line.
 *
 * @example
 * ```ts
 * import { CheckContext } from '@execenv/core/conformance';
 * const ctx = new CheckContext({ name: 'foo', driver: new FooDriver(), spec: { image } });
 * try {
 *   const env = await ctx.open(); // closed by cleanup(), under its deadline
 *   ctx.expect(env.id, 'id -u', (await env.exec(['id', '-u'])).stdout, '0\n'); // else `got "1000\n", want "0\n"`
 * } finally {
 *   await ctx.cleanup();
 * }
 * expect(ctx.problems).toEqual([]);
 * ```
 */
export class CheckContext {
  readonly options: ConformanceOptions;
  readonly problems: string[] = [];
  readonly #opened: Environment[] = [];
  readonly #hostDirs: string[] = [];
  #shared: Environment | undefined;
  /** Set by cleanup: a check still running past its deadline must not open what nobody will close. */
  #finished = false;

  constructor(options: ConformanceOptions, shared?: Environment) {
    this.options = options;
    this.#shared = shared;
  }

  /** What the check is doing now, shown when it misses its deadline. */
  step = 'starting';

  /**
   * Waits for `p` at most `ms`: past that, records `<where>: <op>: got no
   * answer within <ms> ms, want <want>` and resolves to HUNG. A rejection of
   * `p` is passed on. Every wait on the driver that could hang goes through
   * this, so a broken promise fails fast with its name.
   */
  async within<T>(ms: number, where: string, op: string, want: string, p: Promise<T>): Promise<T | typeof HUNG> {
    this.step = op;
    const limit = this.ms(ms);
    const r = await bounded(p, limit);
    if (r === HUNG) this.problems.push(`${where}: ${op}: got no answer within ${limit} ms, want ${want}`);
    return r;
  }

  /** A bound of `base` milliseconds, stretched by the options' timeScale. */
  ms(base: number): number {
    return scaled(base, this.options);
  }

  /** Ends the check as skipped with `reason`, for gaps only known at run time. */
  skip(reason: string): never {
    throw new SkipCheck(reason);
  }

  /** Records a problem: `<where>: <op>: got X, want Y`. */
  problem(where: string, op: string, got: unknown, want: unknown): void {
    this.problems.push(`${where}: ${op}: got ${show(got)}, want ${show(want)}`);
  }

  /** Records a problem unless got equals want (deep, by JSON). */
  expect(where: string, op: string, got: unknown, want: unknown): boolean {
    if (show(got) === show(want)) return true;
    this.problem(where, op, got, want);
    return false;
  }

  /** The environment shared by checks that leave nothing behind but names under /tmp. */
  async env(): Promise<Environment> {
    this.#shared ??= await this.open();
    return this.#shared;
  }

  /**
   * Opens a fresh environment (of the options' spec unless given) that is
   * closed when the check ends. An open that does not answer within 5
   * minutes throws, naming the deadline.
   */
  async open(spec: EnvSpec = this.options.spec, openOptions = this.options.openOptions): Promise<Environment> {
    this.step = 'open';
    const opening = this.options.driver.open(spec, openOptions);
    const env = await bounded(opening, this.ms(OPEN_DEADLINE_MS));
    if (env === HUNG) {
      opening.then((e) => e.close()).catch(() => {});
      throw new Error(`open: got no answer within ${this.ms(OPEN_DEADLINE_MS)} ms, want an environment`);
    }
    if (this.#finished) {
      await env.close().catch(() => {});
      throw new Error('open: the check had already ended (past its deadline)');
    }
    this.#opened.push(env);
    return env;
  }

  /**
   * Gives up on `env`, whose close already missed its deadline: cleanup
   * will not wait for it again. The check has recorded that problem.
   */
  abandon(env: Environment): void {
    const i = this.#opened.indexOf(env);
    if (i >= 0) this.#opened.splice(i, 1);
    if (this.#shared === env) this.#shared = undefined;
  }

  /** Closes `env`, opened elsewhere, when the check ends. */
  adopt(env: Environment): void {
    if (this.#finished) env.close().catch(() => {});
    else this.#opened.push(env);
  }

  /** A temporary host directory removed when the check ends. */
  async hostDir(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'execenv-conformance-'));
    this.#hostDirs.push(dir);
    return dir;
  }

  /**
   * Closes what the check opened and removes its host directories. A host
   * directory with something still mounted at or below it is left in place
   * and reported: removing it would delete through the mount.
   */
  async cleanup(): Promise<void> {
    this.#finished = true;
    for (const env of this.#opened.splice(0)) {
      const closed = await bounded(
        env.close().catch((e: Error) => this.problems.push(`${env.id}: close: ${e.message}`)),
        this.ms(CLOSE_DEADLINE_MS),
      );
      if (closed === HUNG)
        this.problems.push(`${env.id}: close: got no answer within ${this.ms(CLOSE_DEADLINE_MS)} ms, want closed`);
    }
    for (const dir of this.#hostDirs.splice(0)) {
      const mounted = await mountsUnder(dir).catch(() => []);
      if (mounted.length > 0) this.problem(dir, 'host directory left in place', `mounts ${show(mounted)}`, 'no mounts');
      else await rm(dir, { recursive: true, force: true });
    }
  }
}

/** `base` milliseconds stretched by the options' timeScale. */
export function scaled(base: number, options: Pick<ConformanceOptions, 'timeScale'>): number {
  return Math.round(base * (options.timeScale ?? 1));
}

/** Longest wait for one open before a check gives up on it. */
export const OPEN_DEADLINE_MS = 300_000;
/** Longest wait for one close while a check cleans up. */
export const CLOSE_DEADLINE_MS = 60_000;

/** What `bounded` and `CheckContext.within` give for a promise that did not settle in time. */
export const HUNG: unique symbol = Symbol('hung');

/** Resolves to what p gives, or to HUNG after ms; p's rejection is passed on. */
export function bounded<T>(p: Promise<T>, ms: number): Promise<T | typeof HUNG> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<typeof HUNG>((r) => {
    timer = setTimeout(() => r(HUNG), ms);
  });
  return Promise.race([p, hung]).finally(() => clearTimeout(timer));
}

/** Thrown by CheckContext.skip. */
export class SkipCheck extends Error {
  constructor(readonly reason: string) {
    super(reason);
  }
}

/** A unique name for files a check creates. */
export function unique(prefix: string): string {
  return `${prefix}-${randomBytes(5).toString('hex')}`;
}

/** Short printable form of a value for problem lines. */
export function show(v: unknown): string {
  if (v instanceof Uint8Array) return `<${v.length} bytes>`;
  if (v instanceof Error) return `${v.name}(${(v as { code?: string }).code ?? ''}: ${v.message})`;
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 200 ? `${s.slice(0, 200)}...` : s;
}

/** Resolves to the error a promise rejects with, or undefined when it resolves. */
export async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return err;
  }
}

/** The `code` of an error, or what was resolved instead. */
export function codeOf(err: unknown): string {
  if (err === undefined) return 'no error';
  return (err as { code?: string }).code ?? `an error without code: ${(err as Error).message}`;
}

/**
 * One named check of the suite.
 *
 * @example
 * ```ts
 * import { type Check, CHECKS, runCheck } from '@execenv/core/conformance';
 * const check: Check = CHECKS.find((c) => c.name === 'close-while-running')!;
 * const result = await runCheck(check, { name: 'foo', driver: new FooDriver(), spec: { image }, timeScale: 2 });
 * console.log(check.name, check.timeoutMs ?? 'the default deadline', result.problems);
 * ```
 */
export interface Check {
  name: CheckName;
  /** Runs the check, recording problems on ctx; throwing counts as a problem too. */
  run(ctx: CheckContext): Promise<void>;
  /**
   * The check's own deadline in milliseconds: past it the check fails with a
   * problem naming the step it was on. The test runner's timeout is set
   * above it, so a catch always comes from the check. @default 60 s
   */
  timeoutMs?: number;
}
