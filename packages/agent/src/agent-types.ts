import type { Readable, Writable } from 'node:stream';

export type { AgentExecRequest, AgentFileStat, AgentWriteOptions } from '@execenv/core/driver';

/**
 * How a command ended: an exit status, or the name of the signal that killed it.
 *
 * @example
 * ```ts
 * import type { AgentExit } from '@execenv/agent';
 *
 * const proc = session.exec({ cwd: '/src', uid: 0, gid: 0, groups: [], env: {}, argv: ['make'] });
 * proc.stdin.end();
 * proc.stdout.pipe(process.stdout);
 * proc.stderr.pipe(process.stderr);
 * const exit: AgentExit = await proc.exited;
 * console.log(exit.signal ? `killed by ${exit.signal}` : `exit status ${exit.exitCode}`);
 * ```
 */
export interface AgentExit {
  /** Exit status, or null after a signal. */
  exitCode: number | null;
  /** Terminating signal name such as `SIGKILL`, or null. */
  signal: string | null;
}

/**
 * AgentProcess is a command running under the agent, shaped like core's
 * RunningProcess so exec supervision applies unchanged.
 *
 * @example
 * ```ts
 * import type { AgentProcess } from '@execenv/agent';
 *
 * const proc: AgentProcess = session.exec({ cwd: '/', uid: 0, gid: 0, groups: [], env: {}, argv: ['sleep', '600'] });
 * proc.stdin.end();
 * setTimeout(() => proc.kill(), 5000); // no signal: the whole process tree
 * console.log(await proc.exited); // { exitCode: null, signal: 'SIGKILL' }
 * ```
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

/**
 * What the agent said about itself in the handshake.
 *
 * @example
 * ```ts
 * import type { AgentInfo } from '@execenv/agent';
 *
 * const info: AgentInfo = session.info;
 * console.log(`execenv-agent ${info.version} (${info.arch}), pid ${info.pid} in the environment`);
 * if (info.tree === 'subreaper') console.warn('no pid namespaces here: commands are contained by a subreaper');
 * ```
 */
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
