import { PassThrough } from 'node:stream';
import type { ProcessRunner, RunningProcess, RunOptions, SpawnOptions } from '../runner.js';

/**
 * How a fake process ended.
 *
 * @example
 * ```ts
 * import { type FakeExit, FakeRunner } from '@execenv/core/testing';
 * const runner = new FakeRunner();
 * const started = startBackend(runner); // the code under test spawns its backend and waits for it
 * const crashed: FakeExit = { exitCode: 1, signal: null };
 * runner.spawned[0]!.exit(crashed);
 * await expect(started).rejects.toMatchObject({ code: 'DRIVER_UNAVAILABLE' });
 * ```
 */
export type FakeExit = { exitCode: number | null; signal: string | null };

/**
 * A spawned command as the fake runner saw it, with its streams for the test to play the process.
 *
 * @example
 * ```ts
 * import { FakeRunner, type FakeSpawned } from '@execenv/core/testing';
 * const runner = new FakeRunner();
 * const started = startAgent(runner, '/state/agent.sock'); // the code under test
 * const agent: FakeSpawned = runner.spawned[0]!;
 * expect(agent.argv).toEqual(['/usr/lib/foo/execenv-agent', '--listen', '/state/agent.sock']);
 * agent.stdout.write('ready\n'); // the test plays the process
 * await started;
 * ```
 */
export interface FakeSpawned {
  /** The argv the driver spawned. */
  argv: readonly string[];
  /** Its spawn options. */
  opts: SpawnOptions | undefined;
  /** What the driver writes to the process. */
  stdin: PassThrough;
  /** What the process prints, written by the test. */
  stdout: PassThrough;
  /** What the process prints on stderr, written by the test. */
  stderr: PassThrough;
  /** Ends the process. */
  exit(exit: FakeExit): void;
  /** Signals the driver sent. */
  killed: string[];
}

/**
 * FakeRunner is a ProcessRunner that runs nothing and records the exact argv
 * of every command, so a driver's unit tests assert the host commands it makes;
 * a spawned command's streams and exit are played by the test.
 *
 * @example
 * ```ts
 * import { hostUndo } from '@execenv/core';
 * import { FakeRunner } from '@execenv/core/testing';
 * const runner = new FakeRunner(); // runs nothing: every run() succeeds with empty output
 * await hostUndo(runner)({ kind: 'dir', path: '/state/envs/execenv-abc' });
 * expect(runner.ran[0]?.argv).toEqual(['rm', '-rf', '--one-file-system', '--', '/state/envs/execenv-abc']);
 * ```
 */
export class FakeRunner implements ProcessRunner {
  /** Every command run to completion, in order. */
  readonly ran: { argv: readonly string[]; opts: RunOptions | undefined }[] = [];
  /** Every command spawned, in order. */
  readonly spawned: FakeSpawned[] = [];

  async run(argv: readonly string[], opts?: RunOptions) {
    this.ran.push({ argv, opts });
    return { argv, exitCode: 0, signal: null, stdout: '', stderr: '' };
  }

  spawn(argv: readonly string[], opts?: SpawnOptions): RunningProcess {
    let settle!: (v: FakeExit) => void;
    const exited = new Promise<FakeExit>((r) => (settle = r));
    const record: FakeSpawned = {
      argv,
      opts,
      stdin: new PassThrough(),
      stdout: new PassThrough(),
      stderr: new PassThrough(),
      killed: [],
      exit(exit) {
        record.stdout.end();
        record.stderr.end();
        settle(exit);
      },
    };
    this.spawned.push(record);
    return {
      pid: 4242,
      stdin: record.stdin,
      stdout: record.stdout,
      stderr: record.stderr,
      kill(signal) {
        record.killed.push(signal ?? 'SIGTERM');
        record.exit({ exitCode: null, signal: signal ?? 'SIGTERM' });
        return true;
      },
      exited,
    };
  }
}
