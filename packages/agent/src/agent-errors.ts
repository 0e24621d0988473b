/** Codes an agent operation fails with (PROTOCOL.md, Outcomes). */
export type AgentErrorCode = 'NOT_FOUND' | 'UNSAFE_PATH' | 'CONFLICT' | 'INVALID' | 'IO';

const CODES: ReadonlySet<string> = new Set<AgentErrorCode>(['NOT_FOUND', 'UNSAFE_PATH', 'CONFLICT', 'INVALID', 'IO']);

/** isAgentErrorCode tells whether an END error code is one this client knows. */
export function isAgentErrorCode(code: string): code is AgentErrorCode {
  return CODES.has(code);
}

/** AgentError says the agent ran an operation and it failed; `code` is stable, the message is the agent's. */
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
 */
export class AgentTransportError extends Error {
  /** The stable code of this error. */
  readonly code = 'TRANSPORT';

  constructor(message: string, options?: { cause?: unknown }) {
    super(`execenv-agent: ${message}`, options);
    this.name = 'AgentTransportError';
  }
}
