import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Driver, Environment, OpenOptions } from '../contract.js';
import { mountsUnder } from '../lifecycle/mounts.js';
import type { EnvSpec } from '../spec.js';

/** Options of runConformance and describeConformance. */
export interface ConformanceOptions {
  /** Shown in test names and reports. */
  name: string;
  /** The driver under test. */
  driver: Driver;
  /** A spec that opens a working environment (its image needs busybox-level tools: sh, cat, id, head, sleep, ln). */
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
   * @default 4000
   */
  raceMs?: number;
  /**
   * Returns a spec of the driver's image with these top-level entries (keys
   * such as `/tmp`) replaced by symlinks to the given absolute host paths.
   * Without it the hostile-image-symlinks check is skipped with a reason.
   */
  imageWithSymlinks?: (links: Record<string, string>) => Promise<EnvSpec>;
}

/** Names of the conformance checks. */
export type CheckName =
  | 'open-close'
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
  | 'file-modes'
  | 'empty-file'
  | 'large-file'
  | 'directory-tree'
  | 'archive-round-trip'
  | 'missing-path'
  | 'push-through-symlink'
  | 'unsafe-archive'
  | 'pull-symlink'
  | 'file-race'
  | 'concurrency'
  | 'leaks'
  | 'hostile-image-symlinks'
  | 'deep-tree-close'
  | 'capabilities';

/**
 * What a check gets: the shared environment, a way to open more (closed for
 * it afterwards), and `problem` to record each finding as one line.
 */
export class CheckContext {
  readonly options: ConformanceOptions;
  readonly problems: string[] = [];
  readonly #opened: Environment[] = [];
  readonly #hostDirs: string[] = [];
  #shared: Environment | undefined;

  constructor(options: ConformanceOptions, shared?: Environment) {
    this.options = options;
    this.#shared = shared;
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

  /** Opens a fresh environment (of the options' spec unless given) that is closed when the check ends. */
  async open(spec: EnvSpec = this.options.spec): Promise<Environment> {
    const env = await this.options.driver.open(spec, this.options.openOptions);
    this.#opened.push(env);
    return env;
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
    for (const env of this.#opened.splice(0))
      await env.close().catch((e: Error) => this.problems.push(`${env.id}: close: ${e.message}`));
    for (const dir of this.#hostDirs.splice(0)) {
      const mounted = await mountsUnder(dir).catch(() => []);
      if (mounted.length > 0) this.problem(dir, 'host directory left in place', `mounts ${show(mounted)}`, 'no mounts');
      else await rm(dir, { recursive: true, force: true });
    }
  }
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

/** One named check of the suite. */
export interface Check {
  name: CheckName;
  /** Runs the check, recording problems on ctx; throwing counts as a problem too. */
  run(ctx: CheckContext): Promise<void>;
  /** Upper bound in milliseconds for the test runner. @default 60 s */
  timeoutMs?: number;
}
