import {
  HostCommandError,
  type ProcessRunner,
  type RunningProcess,
  type RunOptions,
  type RunResult,
  type SpawnOptions,
} from '@execenv/core';
import { FakeRunner, type FakeSpawned } from '@execenv/core/testing';

/** An answer to one command: what it printed and how it exited. */
export type Answer = Partial<Pick<RunResult, 'exitCode' | 'stdout' | 'stderr'>>;

/**
 * A ProcessRunner that runs nothing: it records every argv (through core's
 * FakeRunner, whose spawned processes the test plays) and answers run()
 * through `respond` (exit 0 and no output by default), failing like the
 * execa runner when `check` is not false.
 */
export class ScriptedRunner implements ProcessRunner {
  readonly #fake = new FakeRunner();

  /** The argv of every command run or spawned, in order. */
  readonly commands: string[][] = [];

  constructor(
    readonly respond: (argv: readonly string[]) => Answer | undefined = () => undefined,
    /** Plays a spawned command: writes its output, ends it. */
    readonly onSpawn: (spawned: FakeSpawned) => void = () => {},
  ) {}

  /** Every command run to completion, in order. */
  get ran() {
    return this.#fake.ran;
  }

  /** Every command spawned, in order. */
  get spawned() {
    return this.#fake.spawned;
  }

  /** The argv of every command run. */
  get argvs(): string[][] {
    return this.ran.map((r) => [...r.argv]);
  }

  async run(argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    this.commands.push([...argv]);
    await this.#fake.run(argv, opts);
    const a = this.respond(argv) ?? {};
    const result: RunResult = {
      argv,
      exitCode: a.exitCode ?? 0,
      signal: null,
      stdout: a.stdout ?? '',
      stderr: a.stderr ?? '',
    };
    if (result.exitCode !== 0 && opts?.check !== false) throw new HostCommandError(result);
    return result;
  }

  spawn(argv: readonly string[], opts?: SpawnOptions): RunningProcess {
    this.commands.push([...argv]);
    const proc = this.#fake.spawn(argv, opts);
    this.onSpawn(this.#fake.spawned.at(-1)!);
    return proc;
  }
}
