import { constants } from 'node:os';
import type { ExecResult } from '@execenv/core';

/**
 * Exit codes of the `execenv` command. `run` and `shell` exit with the
 * command's own code; the codes here are what execenv itself says.
 *
 * @example
 * ```ts
 * import { EXIT, runCli } from '@execenv/cli';
 *
 * const code = await runCli(['run', '--timeout', '60', '--', 'make', 'check']);
 * if (code === EXIT.TIMEOUT) console.error('make check ran past 60 s');
 * else if (code === EXIT.RUN_FAILED) console.error('execenv failed around the command');
 * ```
 */
export const EXIT = Object.freeze({
  /** Everything worked. */
  OK: 0,
  /** An operation failed (an ExecenvError other than those below, or gc left something behind). */
  FAILED: 1,
  /** Bad flags, arguments, configuration or spec: nothing was done. */
  USAGE: 2,
  /** The driver is unknown (not installed) or unavailable on this host. */
  DRIVER_UNAVAILABLE: 3,
  /** The image could not be found or failed its checks. */
  IMAGE: 4,
  /** `run`: the command ran past `--timeout` and was killed. */
  TIMEOUT: 124,
  /** `run`, `shell`: execenv failed around the command (open, push, pull, close), so no exit code of its own. */
  RUN_FAILED: 125,
  /** `run`: a command killed by signal N exits 128 + N, as a shell reports it. */
  SIGNAL_BASE: 128,
});

/**
 * The exit codes as documented in `execenv --help` and the README.
 *
 * @example
 * ```ts
 * import { EXIT_CODES_HELP } from '@execenv/cli';
 *
 * // A wrapper that passes execenv's exit code on documents the codes in its own usage.
 * const usage = `usage: ci-run JOB\n\n${EXIT_CODES_HELP}\n`;
 * ```
 */
export const EXIT_CODES_HELP = `Exit codes:
  0    success
  1    an operation failed
  2    bad flags, arguments or configuration (nothing was done)
  3    the driver is not installed or not available on this host
  4    the image was not found or failed verification
  run and shell exit with the command's own code, and:
  124  the command timed out (--timeout)
  125  execenv failed around the command (open, push, pull, close)
  128+N  the command was killed by signal N`;

/**
 * The exit code a finished command maps to: its own, 124 after a timeout, 128 + N after signal N.
 *
 * @example
 * ```ts
 * import { open } from '@execenv/core';
 * import { commandExitCode } from '@execenv/cli';
 *
 * const env = await open('chroot', {});
 * try {
 *   const r = await env.exec(['make', 'check'], { timeout: 600_000 });
 *   process.exitCode = commandExitCode(r); // its own code, 124 after the timeout, 128 + N after signal N
 * } finally {
 *   await env.close();
 * }
 * ```
 */
export function commandExitCode(r: Pick<ExecResult, 'exitCode' | 'signal' | 'timedOut'>): number {
  if (r.timedOut) return EXIT.TIMEOUT;
  if (r.exitCode !== null) return r.exitCode;
  const n = r.signal ? constants.signals[r.signal as keyof typeof constants.signals] : undefined;
  return EXIT.SIGNAL_BASE + (n ?? 0);
}
