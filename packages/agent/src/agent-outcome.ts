import { constants } from 'node:os';
import { AgentError, AgentTransportError, isAgentErrorCode } from './agent-errors.js';
import { decodeFields } from './frames.js';

/** An operation's outcome as the agent's END frame states it (PROTOCOL.md, Outcomes). */
export type AgentOutcome =
  | { kind: 'exit'; code: number }
  | { kind: 'signal'; signal: number }
  | { kind: 'ok'; fields: Readonly<Record<string, string>> }
  | { kind: 'error'; code: string; message: string };

/**
 * parseOutcome reads an END payload.
 * @throws AgentTransportError when the payload is none of the outcomes.
 */
export function parseOutcome(payload: Uint8Array): AgentOutcome {
  const [kind, ...rest] = decodeFields(payload);
  switch (kind) {
    case 'exit':
    case 'signal': {
      const n = Number(rest[0]);
      if (!Number.isInteger(n) || n < 0) break;
      return kind === 'exit' ? { kind, code: n } : { kind, signal: n };
    }
    case 'ok':
      return { kind, fields: keyValues(rest) };
    case 'error':
      return { kind, code: rest[0] ?? 'IO', message: rest.slice(1).join(' ') || 'failed' };
  }
  throw new AgentTransportError(`protocol error: malformed END payload ${JSON.stringify(decodeFields(payload))}`);
}

/** keyValues turns `key=value` fields into a record; a field without `=` maps to the empty string. */
export function keyValues(fields: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const field of fields) {
    const eq = field.indexOf('=');
    if (eq < 0) out[field] = '';
    else out[field.slice(0, eq)] = field.slice(eq + 1);
  }
  return out;
}

/** outcomeError is the AgentError an `error` outcome stands for; an unknown code becomes IO. */
export function outcomeError(outcome: { code: string; message: string }, op: string, path?: string): AgentError {
  const code = isAgentErrorCode(outcome.code) ? outcome.code : 'IO';
  const message = code === outcome.code ? outcome.message : `${outcome.code}: ${outcome.message}`;
  return new AgentError(code, message, op, path);
}

const SIGNAL_NAMES = new Map<number, string>();
// The first name wins, so 6 is SIGABRT rather than its alias SIGIOT.
for (const [name, n] of Object.entries(constants.signals)) if (!SIGNAL_NAMES.has(n)) SIGNAL_NAMES.set(n, name);

/** signalName maps a Linux signal number to its name (`9` → `SIGKILL`); unknown numbers become `SIG<n>`. */
export function signalName(signal: number): string {
  return SIGNAL_NAMES.get(signal) ?? `SIG${signal}`;
}

/**
 * signalNumber maps a signal name to its number.
 * @throws TypeError for a name the host does not know.
 */
export function signalNumber(name: NodeJS.Signals): number {
  const n = (constants.signals as Record<string, number>)[name];
  if (n === undefined) throw new TypeError(`unknown signal ${name}`);
  return n;
}
