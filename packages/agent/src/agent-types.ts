import type { Readable, Writable } from 'node:stream';

export type { AgentExecRequest, AgentFileStat, AgentWriteOptions } from '@execenv/core/driver';

/** How a command ended: an exit status, or the name of the signal that killed it. */
export interface AgentExit {
  /** Exit status, or null after a signal. */
  exitCode: number | null;
  /** Terminating signal name such as `SIGKILL`, or null. */
  signal: string | null;
}

/**
 * AgentProcess is a command running under the agent, shaped like core's
 * RunningProcess so exec supervision applies unchanged.
 */
export interface AgentProcess {
  /** Always undefined: the command's pid lives in the environment, not on the host. */
  readonly pid: undefined;
  /** The command's stdin; ending it closes the pipe. */
  readonly stdin: Writable;
  /** The command's stdout. */
  readonly stdout: Readable;
  /** The command's stderr. */
  readonly stderr: Readable;
  /**
   * Sends a signal: none or `SIGKILL` kills the command's whole process tree,
   * another goes to the command's process. Returns false once it has ended.
   */
  kill(signal?: NodeJS.Signals): boolean;
  /** Resolves when the command ends; rejects with AgentError when it could not start, AgentTransportError when the session is lost. */
  readonly exited: Promise<AgentExit>;
}

/** What the agent said about itself in the handshake. */
export interface AgentInfo {
  /** The agent's own version string. */
  version: string;
  /** The protocol version both sides speak. */
  protocol: number;
  /** The machine as `uname -m` names it (`x86_64`, `aarch64`, ...). */
  arch: string;
  /** The agent's pid inside the environment. */
  pid: number;
  /** How a command's process tree is contained: `pidns` or `subreaper`. */
  tree: string;
  /** Every `key=value` field of the agent's HELLO, unknown ones included. */
  fields: Readonly<Record<string, string>>;
}
