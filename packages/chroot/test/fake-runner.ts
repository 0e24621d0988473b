import { PassThrough } from 'node:stream';
import type { ProcessRunner, RunningProcess, RunOptions, SpawnOptions } from '@execenv/core';

/** A spawned command as the fake runner saw it. */
export interface Spawned {
  argv: readonly string[];
  opts: SpawnOptions | undefined;
  /** Finishes the process: writes `status` on fd 3 (as execenv-init does) and exits. */
  finish(status: string, stdout?: string): void;
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
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const fd3 = new PassThrough();
    let exit!: (v: { exitCode: number | null; signal: string | null }) => void;
    const exited = new Promise<{ exitCode: number | null; signal: string | null }>((r) => (exit = r));
    const record: Spawned = {
      argv,
      opts,
      killed: [],
      finish(status, out = '') {
        stdout.end(out);
        stderr.end();
        fd3.end(status ? `${status}\n` : '');
        exit({ exitCode: 0, signal: null });
      },
    };
    this.spawned.push(record);
    return {
      pid: 4242,
      stdin: new PassThrough(),
      stdout,
      stderr,
      outputs: [fd3],
      kill(signal) {
        record.killed.push(signal ?? 'SIGTERM');
        stdout.end();
        stderr.end();
        fd3.end();
        exit({ exitCode: null, signal: signal ?? 'SIGTERM' });
        return true;
      },
      exited,
    };
  }
}
