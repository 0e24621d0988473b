import type { Readable, Writable } from 'node:stream';

/**
 * A stream the command line writes to, which may be a terminal.
 *
 * @example
 * ```ts
 * import { PassThrough } from 'node:stream';
 * import { createProgress, type OutputStream, progressMode } from '@execenv/cli';
 *
 * const log: OutputStream = new PassThrough(); // no isTTY: not a terminal
 * const progress = createProgress(log, progressMode(log, false)); // so plain lines, no bars
 * ```
 */
export type OutputStream = Writable & { isTTY?: boolean; columns?: number; rows?: number };

/**
 * A stream the command line reads from, which may be a terminal.
 *
 * @example
 * ```ts
 * import { Readable } from 'node:stream';
 * import { type InputStream, processIO, runCli } from '@execenv/cli';
 *
 * const stdin: InputStream = Readable.from(['hello\n']); // not a terminal: forwarded to the command
 * const code = await runCli(['run', '--', 'cat'], { ...processIO(), stdin });
 * ```
 */
export type InputStream = Readable & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };

/**
 * What the command line talks to: its streams, environment variables and working directory.
 *
 * @example
 * ```ts
 * import { PassThrough } from 'node:stream';
 * import { type CliIO, processIO, runCli } from '@execenv/cli';
 *
 * const stdout = new PassThrough();
 * const io: CliIO = { ...processIO(), stdout, env: { ...process.env, EXECENV_DRIVER: 'podman' } };
 * await runCli(['drivers', '--json'], io);
 * const { drivers } = JSON.parse(String(stdout.read()));
 * ```
 */
export interface CliIO {
  /** Results: command output, listings, JSON. */
  stdout: OutputStream;
  /** Progress, messages and errors. */
  stderr: OutputStream;
  /** Standard input, forwarded to `run` and `shell`. */
  stdin: InputStream;
  /** Environment variables (configuration defaults). */
  env: NodeJS.ProcessEnv;
  /** The directory relative paths are resolved against. */
  cwd: string;
}

/**
 * The process's own streams, variables and directory.
 *
 * @example
 * ```ts
 * import { processIO, runCli } from '@execenv/cli';
 *
 * // What runCli uses when given no io: this process's streams, variables and directory.
 * process.exitCode = await runCli(process.argv.slice(2), processIO());
 * ```
 */
export function processIO(): CliIO {
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env, cwd: process.cwd() };
}
