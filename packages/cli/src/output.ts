import type { CliIO } from './cli-io.js';

/**
 * How much a command says: `--quiet`, `--verbose`, `--json`.
 *
 * @example
 * ```ts
 * import { Output, type OutputOptions, processIO } from '@execenv/cli';
 *
 * const options: OutputOptions = { quiet: process.argv.includes('--quiet'), json: process.argv.includes('--json') };
 * const out = new Output(processIO(), options);
 * ```
 */
export interface OutputOptions {
  /** Only results and errors. */
  quiet?: boolean;
  /** Also each step (exec, copy, destroy) and details. */
  verbose?: boolean;
  /** Results as one JSON document on stdout. */
  json?: boolean;
}

/**
 * Output writes a command's results to stdout and its messages to stderr,
 * as `--quiet`, `--verbose` and `--json` ask.
 *
 * @example
 * ```ts
 * import { Output, processIO } from '@execenv/cli';
 *
 * const out = new Output(processIO(), { verbose: true });
 * out.info('pruning the image cache'); // stderr: execenv: pruning the image cache
 * out.debug('budget 10.0 GiB'); // only with verbose
 * out.table(['IMAGE', 'SIZE'], [['bookworm.tar.zst', '92.4 MiB']]); // stdout, in aligned columns
 * ```
 */
export class Output {
  readonly #io: CliIO;
  /** The options it was made with. */
  readonly options: Readonly<OutputOptions>;

  constructor(io: CliIO, options: OutputOptions = {}) {
    this.#io = io;
    this.options = Object.freeze({ ...options });
  }

  /** Writes a line of results to stdout. */
  line(text: string): void {
    this.#io.stdout.write(`${text}\n`);
  }

  /** Writes a value as JSON to stdout. */
  json(value: unknown): void {
    this.#io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  /** Writes a message to stderr unless `--quiet`. */
  info(text: string): void {
    if (!this.options.quiet) this.#io.stderr.write(`execenv: ${text}\n`);
  }

  /** Writes a message to stderr only with `--verbose`. */
  debug(text: string): void {
    if (this.options.verbose && !this.options.quiet) this.#io.stderr.write(`execenv: ${text}\n`);
  }

  /** Writes a warning to stderr, even with `--quiet`. */
  warn(text: string): void {
    this.#io.stderr.write(`execenv: warning: ${text}\n`);
  }

  /** Writes rows as aligned columns under a header to stdout. */
  table(header: readonly string[], rows: readonly (readonly string[])[]): void {
    for (const line of formatTable(header, rows)) this.line(line);
  }
}

/**
 * Aligns rows in columns separated by two spaces; the last column is not padded.
 *
 * @example
 * ```ts
 * import { formatTable } from '@execenv/cli';
 *
 * formatTable(['DRIVER', 'STATUS'], [['chroot', 'available'], ['qemu', 'not installed']]);
 * // ['DRIVER  STATUS', 'chroot  available', 'qemu    not installed']
 * ```
 */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all.map((r) =>
    r
      .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd(),
  );
}

/**
 * Bytes in the largest binary unit that keeps the number at least 1: `512 B`, `1.5 MiB`.
 *
 * @example
 * ```ts
 * import { formatBytes } from '@execenv/cli';
 *
 * formatBytes(512); // '512 B'
 * formatBytes(1536); // '1.5 KiB'
 * formatBytes(10 * 1024 ** 3); // '10.0 GiB'
 * ```
 */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let n = bytes;
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

/**
 * A duration as a person says it: `42s`, `5m`, `3h`, `2d`.
 *
 * @example
 * ```ts
 * import { formatAge } from '@execenv/cli';
 *
 * formatAge(42_000); // '42s'
 * formatAge(3 * 3_600_000 + 59 * 60_000); // '3h'
 * formatAge(Date.now() - Date.parse(lease.createdAt)); // how long ago an environment was made
 * ```
 */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}
