import type { Readable, Writable } from 'node:stream';
import type { AgentChannel } from './agent-channel.js';
import { AgentTransportError } from './agent-errors.js';
import { outcomeError, signalName, signalNumber } from './agent-outcome.js';
import type { AgentExit, AgentProcess } from './agent-types.js';
import { StreamId } from './frames.js';

/** How a command reaches the agent to stop it. */
export interface CommandControl {
  /** Sends KILL: the whole process tree. */
  kill(): void;
  /** Sends SIGNAL with this number to the command's process. */
  signal(signal: number): void;
}

/** AgentCommand is a command running on an exec channel, seen as an AgentProcess. */
export class AgentCommand implements AgentProcess {
  readonly pid = undefined;
  readonly stdin: Writable;
  readonly stdout: Readable;
  readonly stderr: Readable;
  readonly exited: Promise<AgentExit>;
  readonly #channel: AgentChannel;
  readonly #control: CommandControl;

  constructor(channel: AgentChannel, control: CommandControl) {
    this.#channel = channel;
    this.#control = control;
    this.stdin = channel.input!;
    this.stdout = channel.output(StreamId.OUTPUT);
    this.stderr = channel.output(StreamId.STDERR);
    this.exited = channel.outcome.then((outcome): AgentExit => {
      switch (outcome.kind) {
        case 'exit':
          return { exitCode: outcome.code, signal: null };
        case 'signal':
          return { exitCode: null, signal: signalName(outcome.signal) };
        case 'error':
          throw outcomeError(outcome, 'exec', channel.spec.path);
        default:
          throw new AgentTransportError('protocol error: an exec ended with "ok"');
      }
    });
    // Awaiting exited is the caller's choice; an unobserved failure must not crash the process.
    this.exited.catch(() => {});
  }

  kill(signal?: NodeJS.Signals): boolean {
    if (this.#channel.ended) return false;
    if (signal === undefined || signal === 'SIGKILL') this.#control.kill();
    else this.#control.signal(signalNumber(signal));
    return true;
  }
}
