import type { ExecResult } from './contract.js';
import { ExecenvError, TimeoutError } from './errors.js';

const decoder = new TextDecoder();

/**
 * Fields a finished command is made from.
 *
 * @example
 * ```ts
 * import { type ExecOutcome, execResult } from '@execenv/core';
 * const outcome: ExecOutcome = {
 *   argv: ['true'], exitCode: 0, signal: null, timedOut: false, durationMs: 3,
 *   stdoutBytes: new Uint8Array(), stderrBytes: new Uint8Array(),
 * };
 * const result = execResult(outcome); // result.stdout === ''
 * ```
 */
export interface ExecOutcome {
  argv: readonly string[];
  exitCode: number | null;
  signal: string | null;
  stdoutBytes: Uint8Array;
  stderrBytes: Uint8Array;
  timedOut: boolean;
  durationMs: number;
}

/**
 * Builds an ExecResult whose `stdout`/`stderr` strings are decoded lazily from the exact bytes.
 *
 * @example
 * ```ts
 * import { execResult } from '@execenv/core';
 * const started = performance.now();
 * const reply = await fooDaemon.run(argv); // your backend: exit status and output bytes
 * return execResult({
 *   argv, exitCode: reply.code, signal: null, stdoutBytes: reply.stdout, stderrBytes: reply.stderr,
 *   timedOut: false, durationMs: Math.round(performance.now() - started),
 * });
 * ```
 */
export function execResult(outcome: ExecOutcome): ExecResult {
  let out: string | undefined;
  let err: string | undefined;
  return {
    argv: outcome.argv,
    exitCode: outcome.exitCode,
    signal: outcome.signal,
    stdoutBytes: outcome.stdoutBytes,
    stderrBytes: outcome.stderrBytes,
    timedOut: outcome.timedOut,
    durationMs: outcome.durationMs,
    get stdout() {
      out ??= decoder.decode(outcome.stdoutBytes);
      return out;
    },
    get stderr() {
      err ??= decoder.decode(outcome.stderrBytes);
      return err;
    },
  };
}

/**
 * ExecError is thrown by exec with `check: true` when the command failed; it carries the result.
 *
 * @example
 * ```ts
 * import { ExecError } from '@execenv/core';
 * try {
 *   await env.exec(['make', 'check'], { check: true });
 * } catch (err) {
 *   if (!(err instanceof ExecError)) throw err;
 *   console.error(`exit ${err.result.exitCode}:\n${err.result.stderr}`);
 * }
 * ```
 */
export class ExecError extends ExecenvError {
  /** What the command left. */
  readonly result: ExecResult;
  constructor(result: ExecResult, context: { envId?: string; driver?: string } = {}) {
    const status = result.signal ? `was killed by ${result.signal}` : `exited with status ${result.exitCode}`;
    const tail = result.stderr.trim().split('\n').slice(-3).join('\n');
    super(
      'EXEC_FAILED',
      `execenv: ${JSON.stringify(result.argv)} ${status}${context.envId ? ` in ${context.envId}` : ''}${tail ? `: ${tail}` : ''}`,
      {
        ...context,
        op: 'exec',
      },
    );
    this.result = result;
  }
}

/**
 * ExecTimeoutError is thrown by exec with `check: true` when the command ran past its timeout.
 *
 * @example
 * ```ts
 * import { ExecTimeoutError } from '@execenv/core';
 * try {
 *   await env.exec(['make', 'check'], { check: true, timeout: 300_000 });
 * } catch (err) {
 *   if (!(err instanceof ExecTimeoutError)) throw err;
 *   console.error(`hung; last output:\n${err.result.stdout.slice(-2000)}`);
 * }
 * ```
 */
export class ExecTimeoutError extends TimeoutError {
  /** What the command left before it was killed. */
  readonly result: ExecResult;
  constructor(result: ExecResult, timeoutMs: number, context: { envId?: string; driver?: string } = {}) {
    super(
      `execenv: ${JSON.stringify(result.argv)} timed out after ${timeoutMs} ms${context.envId ? ` in ${context.envId}` : ''}`,
      {
        ...context,
        op: 'exec',
      },
    );
    this.result = result;
  }
}

/**
 * Throws ExecError or ExecTimeoutError for a failed result when `check` is set; returns it otherwise.
 *
 * @example
 * ```ts
 * import { checkResult } from '@execenv/core';
 * // in a driver's exec, once the command has ended: ExecError or ExecTimeoutError when opts.check is set
 * return checkResult(result, opts, { envId: this.id, driver: 'foo' });
 * ```
 */
export function checkResult(
  result: ExecResult,
  opts: { check?: boolean; timeout?: number },
  context: { envId?: string; driver?: string } = {},
): ExecResult {
  if (!opts.check) return result;
  if (result.timedOut) throw new ExecTimeoutError(result, opts.timeout ?? 0, context);
  if (result.exitCode !== 0) throw new ExecError(result, context);
  return result;
}
