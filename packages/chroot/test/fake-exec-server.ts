import { PassThrough } from 'node:stream';
import type { RunningProcess } from '@execenv/core';
import type { ExecRequest } from '../src/exec-protocol.js';
import type { ExecServer } from '../src/exec-server.js';

type Exit = { exitCode: number | null; signal: string | null };

/** One command as the fake server received it. */
export interface FakeCommand {
  request: ExecRequest;
  killed: boolean;
  /** Ends the command with `exit`, after writing `stdout`. */
  finish(exit: Exit, stdout?: string): void;
  /** Ends the command as one the server could not start. */
  fail(err: Error): void;
}

/** An ExecServer that runs nothing and records every request. */
export class FakeExecServer implements ExecServer {
  readonly started: FakeCommand[] = [];
  stopped = false;

  exec(request: ExecRequest): RunningProcess {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let settle!: { resolve: (e: Exit) => void; reject: (e: Error) => void };
    const exited = new Promise<Exit>((resolve, reject) => (settle = { resolve, reject }));
    const end = () => {
      stdout.end();
      stderr.end();
    };
    const command: FakeCommand = {
      request,
      killed: false,
      finish(exit, out = '') {
        stdout.write(out);
        end();
        settle.resolve(exit);
      },
      fail(err) {
        end();
        settle.reject(err);
      },
    };
    this.started.push(command);
    return {
      pid: undefined,
      stdin: new PassThrough(),
      stdout,
      stderr,
      kill() {
        command.killed = true;
        end();
        settle.resolve({ exitCode: null, signal: 'SIGKILL' });
        return true;
      },
      exited,
    };
  }

  async stop(): Promise<void> {
    this.stopped = true;
  }

  /** Waits for the next command to arrive and returns it. */
  async next(): Promise<FakeCommand> {
    const seen = this.#taken;
    for (let i = 0; i < 200 && this.started.length <= seen; i++) await new Promise((r) => setTimeout(r, 5));
    const command = this.started[seen];
    if (!command) throw new Error('no command reached the exec server');
    this.#taken++;
    return command;
  }

  #taken = 0;
}
