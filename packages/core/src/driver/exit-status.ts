import { constants } from 'node:os';

/** How a command ended, as ExecResult says it: an exit code or a signal, never both. */
export interface CommandEnd {
  exitCode: number | null;
  signal: string | null;
}

/** The name of signal number `n` (`SIGKILL` for 9), or undefined for a number that names none. */
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
 */
export function commandEnd(status: number, signalled: boolean): CommandEnd {
  if (!signalled) return { exitCode: status, signal: null };
  const n = status > 128 ? status - 128 : status;
  const signal = signalName(n);
  return signal ? { exitCode: null, signal } : { exitCode: status, signal: null };
}
