import { PassThrough } from 'node:stream';
import type { ProcessRunner, RunningProcess, RunOptions, SpawnOptions } from '@execenv/core';

type Exit = { exitCode: number | null; signal: string | null };

/** A spawned command as the fake runner saw it, with its streams for the test to play the process. */
export interface Spawned {
  argv: readonly string[];
  opts: SpawnOptions | undefined;
  stdin: PassThrough;
  stdout: PassThrough;
  stderr: PassThrough;
  /** Ends the process. */
  exit(exit: Exit): void;
  killed: string[];
}

/** A ProcessRunner that runs nothing and records the exact argv of every command. */
export class FakeRunner implements ProcessRunner {
  readonly ran: { argv: readonly string[]; opts: RunOptions | undefined }[] = [];
  readonly spawned: Spawned[] = [];

  async run(argv: readonly string[], opts?: RunOptions) {
    this.ran.push({ argv, opts });
    return { argv, exitCode: 0, signal: null, stdout: '', stderr: '' };
  }

  spawn(argv: readonly string[], opts?: SpawnOptions): RunningProcess {
    let settle!: (v: Exit) => void;
    const exited = new Promise<Exit>((r) => (settle = r));
    const record: Spawned = {
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
