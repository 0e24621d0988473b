import { constants } from 'node:os';

/**
 * How a command ended, as ExecResult says it: an exit code or a signal, never both.
 *
 * @example
 * ```ts
 * import { type CommandEnd, commandEnd } from '@execenv/core/driver';
 * // The backend's reply gives a status and says whether a signal ended the command.
 * const end: CommandEnd = commandEnd(reply.status, reply.signalled);
 * if (end.signal) console.log(`killed by ${end.signal}`); // else end.exitCode is the program's own
 * ```
 */
export interface CommandEnd {
  exitCode: number | null;
  signal: string | null;
}

/**
 * The name of signal number `n` (`SIGKILL` for 9), or undefined for a number that names none.
 *
 * @example
 * ```ts
 * import { signalName } from '@execenv/core/driver';
 * signalName(9); // 'SIGKILL'
 * signalName(15); // 'SIGTERM'
 * signalName(99); // undefined
 * ```
 */
export function signalName(n: number): string | undefined {
  for (const [name, value] of Object.entries(constants.signals)) if (value === n) return name;
  return undefined;
}

/**
 * commandEnd turns what a backend reports into an ExecResult's exit code and
 * signal. Many backends (`podman exec`, `lxc exec`, a shell's `$?`) report a
 * command killed by signal n as status 128+n, the same number a command
 * that ran `exit 137` gives. Map it to a signal only where the backend can
 * tell the two apart and says the command was signalled: otherwise `exit
 * 137` would read as SIGKILL, which the contract forbids (exit codes mean
 * what the program said).
 *
 * @param status the status the backend reported
 * @param signalled whether the backend says the command died by a signal;
 *   when true, `status` is either the signal number or 128 + it
 *
 * @example
 * ```ts
 * import { commandEnd } from '@execenv/core/driver';
 * commandEnd(137, false); // { exitCode: 137, signal: null }: the command ran `exit 137`
 * commandEnd(137, true); // { exitCode: null, signal: 'SIGKILL' }
 * commandEnd(9, true); // { exitCode: null, signal: 'SIGKILL' }
 * ```
 */
export function commandEnd(status: number, signalled: boolean): CommandEnd {
  if (!signalled) return { exitCode: status, signal: null };
  const n = status > 128 ? status - 128 : status;
  const signal = signalName(n);
  return signal ? { exitCode: null, signal } : { exitCode: status, signal: null };
}
