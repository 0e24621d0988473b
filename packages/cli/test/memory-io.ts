import { Readable, Writable } from 'node:stream';
import type { CliIO } from '../src/cli-io.js';

/** A CliIO whose stdout and stderr are collected in memory, for running the command line in-process. */
export function memoryIO(opts: { env?: NodeJS.ProcessEnv; stdin?: string; cwd?: string; tty?: boolean } = {}) {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const sink = (into: Buffer[]) =>
    Object.assign(
      new Writable({
        write(chunk, _enc, done) {
          into.push(Buffer.from(chunk));
          done();
        },
      }),
      { isTTY: opts.tty ?? false, columns: 100, rows: 30 },
    );
  const io: CliIO = {
    stdout: sink(out),
    stderr: sink(err),
    stdin: Object.assign(Readable.from(opts.stdin === undefined ? [] : [Buffer.from(opts.stdin)]), { isTTY: false }),
    env: opts.env ?? {},
    cwd: opts.cwd ?? process.cwd(),
  };
  return {
    io,
    stdout: () => Buffer.concat(out).toString('utf8'),
    stderr: () => Buffer.concat(err).toString('utf8'),
  };
}
