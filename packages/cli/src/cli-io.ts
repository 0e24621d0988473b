import type { Readable, Writable } from 'node:stream';

/** A stream the command line writes to, which may be a terminal. */
export type OutputStream = Writable & { isTTY?: boolean; columns?: number; rows?: number };

/** A stream the command line reads from, which may be a terminal. */
export type InputStream = Readable & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };

/** What the command line talks to: its streams, environment variables and working directory. */
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

/** The process's own streams, variables and directory. */
export function processIO(): CliIO {
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env, cwd: process.cwd() };
}
