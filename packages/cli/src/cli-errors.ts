import type { ExecenvError } from '@execenv/core';
import { EXIT } from './exit-codes.js';

/**
 * UsageError is a bad flag or argument found by the command line itself; it exits 2.
 *
 * @example
 * ```ts
 * import { errorLine, exitCodeOf, UsageError } from '@execenv/cli';
 *
 * const err = new UsageError('--pull needs a GUEST:HOST pair');
 * errorLine(err); // 'execenv: --pull needs a GUEST:HOST pair'
 * exitCodeOf(err); // 2, as for every bad flag or argument
 * ```
 */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * The exit code for an error that ended a command: 2 for bad input, 3 for a
 * driver that is missing or unavailable, 4 for an image problem, else
 * `failed` (1, or 125 around a command in `run` and `shell`).
 *
 * @example
 * ```ts
 * import { open } from '@execenv/core';
 * import { errorLine, exitCodeOf } from '@execenv/cli';
 *
 * try {
 *   const env = await open('qemu', { image: 'index:debian/bookworm/arm64' });
 *   await env.close();
 * } catch (err) {
 *   console.error(errorLine(err));
 *   process.exitCode = exitCodeOf(err); // 3 when qemu is not installed, 4 when the image is not found
 * }
 * ```
 */
export function exitCodeOf(err: unknown, failed: number = EXIT.FAILED): number {
  if (err instanceof UsageError) return EXIT.USAGE;
  const code = (err as ExecenvError)?.code;
  switch (code) {
    case 'INVALID_SPEC':
    case 'UNSAFE_PATH':
      return EXIT.USAGE;
    case 'UNKNOWN_DRIVER':
    case 'DRIVER_UNAVAILABLE':
      return EXIT.DRIVER_UNAVAILABLE;
    case 'IMAGE_NOT_FOUND':
    case 'IMAGE_VERIFY_FAILED':
      return EXIT.IMAGE;
    default:
      return failed;
  }
}

/**
 * The one line an error is reported with: its message, prefixed `execenv:` once, and its code.
 *
 * @example
 * ```ts
 * import { InvalidSpecError } from '@execenv/core';
 * import { errorLine } from '@execenv/cli';
 *
 * errorLine(new InvalidSpecError('network', 'unknown network "lan"'));
 * // 'execenv: invalid network: unknown network "lan" [INVALID_SPEC]'
 * errorLine(new Error('disk full')); // 'execenv: disk full'
 * ```
 */
export function errorLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const text = message.startsWith('execenv: ') ? message : `execenv: ${message}`;
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && /^[A-Z][A-Z_]*$/.test(code) ? `${text} [${code}]` : text;
}
