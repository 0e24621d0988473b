/**
 * Codes an agent operation fails with (PROTOCOL.md, Outcomes).
 *
 * @example
 * ```ts
 * import { AgentError, type AgentErrorCode } from '@execenv/agent';
 *
 * function agentCode(err: unknown): AgentErrorCode | undefined {
 *   return err instanceof AgentError ? err.code : undefined;
 * }
 * if (agentCode(err) === 'UNSAFE_PATH') console.error('the archive reaches outside its destination');
 * ```
 */
export type AgentErrorCode = 'NOT_FOUND' | 'UNSAFE_PATH' | 'CONFLICT' | 'INVALID' | 'IO';

const CODES: ReadonlySet<string> = new Set<AgentErrorCode>(['NOT_FOUND', 'UNSAFE_PATH', 'CONFLICT', 'INVALID', 'IO']);

/** isAgentErrorCode tells whether an END error code is one this client knows. */
export function isAgentErrorCode(code: string): code is AgentErrorCode {
  return CODES.has(code);
}

/**
 * AgentError says the agent ran an operation and it failed; `code` is stable, the message is the agent's.
 *
 * @example
 * ```ts
 * import { AgentError } from '@execenv/agent';
 *
 * try {
 *   console.log(await session.readDir('/srv/data'));
 * } catch (err) {
 *   if (!(err instanceof AgentError) || err.code !== 'NOT_FOUND') throw err;
 *   console.log(`${err.path} does not exist`); // err.op is 'readdir'
 * }
 * ```
 */
export class AgentError extends Error {
  /** Why the operation failed. */
  readonly code: AgentErrorCode;
  /** The operation, e.g. `exec`, `write`, `tar-in`. */
  readonly op: string;
  /** The path the operation was about, when it had one. */
  readonly path: string | undefined;

  constructor(code: AgentErrorCode, message: string, op: string, path?: string) {
    super(`execenv-agent: ${op}${path === undefined ? '' : ` ${path}`}: ${message} (${code})`);
    this.name = 'AgentError';
    this.code = code;
    this.op = op;
    this.path = path;
  }
}

/**
 * AgentTransportError says the connection to the agent is gone or broke the
 * protocol; every operation of the session fails with it, and none can
 * succeed afterwards.
 *
 * @example
 * ```ts
 * import { AgentSession, AgentTransportError } from '@execenv/agent';
 *
 * try {
 *   await session.ping(2000);
 * } catch (err) {
 *   if (!(err instanceof AgentTransportError)) throw err;
 *   session = await AgentSession.connect(socketPath); // a broken session never recovers: open another
 * }
 * ```
 */
export class AgentTransportError extends Error {
  /** The stable code of this error. */
  readonly code = 'TRANSPORT';

  constructor(message: string, options?: { cause?: unknown }) {
    super(`execenv-agent: ${message}`, options);
    this.name = 'AgentTransportError';
  }
}
