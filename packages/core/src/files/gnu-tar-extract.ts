import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { hostEnv } from '../driver/host.js';
import { type ErrorContext, ExecenvError, withContext } from '../errors.js';
import type { ProcessRunner } from '../runner.js';
import { TarGate, type TarGateStats } from './tar-gate.js';

/** Options of extractWithGnuTar. */
export interface GnuTarExtractOptions {
  /** Keep entries' uid/gid (`--same-owner`). @default true when running as root */
  owners?: boolean;
  /** envId/driver/op for the errors this throws. */
  context?: ErrorContext;
}

const STDERR_LIMIT = 64 * 1024;

/**
 * extractWithGnuTar extracts an untrusted tar stream into `destDir` with
 * GNU tar on the host, through a TarGate: tar sees an entry only once
 * ArchiveGuard accepted it, and never sees a device node or fifo. On a
 * refused entry it rejects with the gate's error (UnsafePathError for an
 * unsafe entry), on a failed tar with an ExecenvError EXEC_FAILED carrying
 * tar's stderr; either way tar is killed, and what it extracted before stays.
 *
 * `destDir` must be a directory that held nothing before: tar follows a
 * symlink already there on the way to an entry.
 */
export async function extractWithGnuTar(
  tar: Readable,
  destDir: string,
  runner: ProcessRunner,
  opts: GnuTarExtractOptions = {},
): Promise<TarGateStats> {
  const gate = new TarGate();
  const owners = opts.owners ?? process.getuid?.() === 0;
  const argv = [
    'tar',
    '--extract',
    '--file=-',
    `--directory=${destDir}`,
    '--numeric-owner',
    '--same-permissions',
    owners ? '--same-owner' : '--no-same-owner',
    '--delay-directory-restore',
  ];
  let proc: ReturnType<ProcessRunner['spawn']>;
  try {
    proc = runner.spawn(argv, { env: hostEnv(), stdin: 'pipe', stdout: 'ignore', stderr: 'pipe' });
  } catch (err) {
    tar.destroy();
    throw err;
  }
  let stderr = '';
  proc.stderr?.on('data', (b: Buffer) => {
    if (stderr.length < STDERR_LIMIT) stderr += b.toString();
  });
  const exited = proc.exited;
  exited.catch(() => {});
  const stdin = proc.stdin;
  if (!stdin) {
    proc.kill('SIGKILL');
    tar.destroy();
    throw new ExecenvError('EXEC_FAILED', 'execenv: tar gave no input stream', opts.context);
  }
  // pipeline hands the first error to every stream: the first to report it is where it came from.
  let origin: 'source' | 'gate' | 'tar' | undefined;
  tar.once('error', () => (origin ??= 'source'));
  gate.once('error', () => (origin ??= 'gate'));
  stdin.on('error', () => (origin ??= 'tar'));

  let failure: unknown;
  try {
    await pipeline(tar, gate, stdin);
  } catch (err) {
    failure = err;
  }
  // A tar that stopped reading (it failed) shows as a broken pipe: its exit status says why.
  const writeFailed = failure !== undefined && origin === 'tar';
  if (failure !== undefined && !writeFailed) proc.kill('SIGKILL');
  const status = await exited.catch((err: unknown) => {
    failure ??= err;
    return undefined;
  });
  const tarFailed = status !== undefined && (status.exitCode !== 0 || status.signal !== null);
  if (failure !== undefined && !writeFailed) throw withContext(failure, opts.context);
  if (tarFailed || (writeFailed && !gate.ended)) {
    const how = status?.signal ? `killed by ${status.signal}` : `exit status ${status?.exitCode}`;
    throw new ExecenvError(
      'EXEC_FAILED',
      `execenv: extracting into ${destDir} failed: ${argv.join(' ')} (${how})${stderr.trim() ? `: ${stderr.trim()}` : ''}`,
      { ...opts.context, cause: failure },
    );
  }
  if (status === undefined) throw withContext(failure, opts.context);
  return gate.stats;
}
