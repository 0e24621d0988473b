import { Readable } from 'node:stream';
import type { ExecOptions, ExecProcess, ExecResult } from './contract.js';
import { AbortedError, type ErrorContext, ExecenvError, TransportError } from './errors.js';
import { checkResult, execResult } from './exec-result.js';
import type { RunningProcess } from './runner.js';

/**
 * Default ExecOptions.maxBuffer: 100 MiB per stream.
 *
 * @example
 * ```ts
 * import { DEFAULT_MAX_BUFFER } from '@execenv/core';
 * // a verbose build: keep ten times the default 100 MiB of each stream before the command is killed
 * await env.exec(['make', 'V=1'], { maxBuffer: 10 * DEFAULT_MAX_BUFFER });
 * ```
 */
export const DEFAULT_MAX_BUFFER = 100 * 1024 * 1024;

/**
 * How a driver stops a command: kill the whole tree inside the environment.
 *
 * @example
 * ```ts
 * import { type ProcessControl, superviseExec } from '@execenv/core';
 * const control: ProcessControl = {
 *   killTree: async () => {
 *     await runner.run(['foo', 'kill', '--all', this.id]); // every process of the command, inside
 *   },
 *   context: { envId: this.id, driver: 'foo' },
 * };
 * return superviseExec(proc, argv, opts, control);
 * ```
 */
export interface ProcessControl {
  /** Kills every process the command started inside the environment. Called at most once per reason. */
  killTree(): void | Promise<void>;
  /** Error context (envId, driver) for the errors this produces. */
  context: ErrorContext;
}

/**
 * Throws AbortedError when `signal` is already aborted; drivers call it before starting a command.
 *
 * @example
 * ```ts
 * import { throwIfAborted } from '@execenv/core';
 * // first in FooDriver.open, before anything is created:
 * throwIfAborted(opts.signal, ['open'], { driver: 'foo', op: 'open' }); // AbortedError
 * ```
 */
export function throwIfAborted(signal: AbortSignal | undefined, argv: readonly string[], context: ErrorContext): void {
  if (signal?.aborted) throw abortedError(argv, context, signal.reason);
}

function abortedError(argv: readonly string[], context: ErrorContext, reason: unknown): AbortedError {
  return new AbortedError(
    `execenv: ${JSON.stringify(argv)} was aborted${context.envId ? ` in ${context.envId}` : ''}`,
    {
      ...context,
      op: context.op ?? 'exec',
      cause: reason,
    },
  );
}

class Collector {
  readonly #chunks: Buffer[] = [];
  #size = 0;
  constructor(
    readonly limit: number,
    readonly keep: boolean,
  ) {}
  /** Adds a chunk; returns false once the limit is passed. */
  add(chunk: Buffer): boolean {
    if (!this.keep) return true;
    this.#size += chunk.length;
    if (this.#size > this.limit) return false;
    this.#chunks.push(chunk);
    return true;
  }
  bytes(): Uint8Array {
    return this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
  }
}

function feedStdin(proc: RunningProcess, stdin: ExecOptions['stdin']): void {
  const sink = proc.stdin;
  if (!sink) return;
  // A command that exits without reading its input closes the pipe: that is not an error of the caller's.
  sink.on('error', () => {});
  if (stdin === undefined || stdin === 'ignore') {
    sink.end();
  } else if (typeof stdin === 'string' || stdin instanceof Uint8Array) {
    sink.end(stdin);
  } else if (stdin instanceof Readable || typeof (stdin as Readable).pipe === 'function') {
    (stdin as Readable).on('error', () => sink.destroy());
    (stdin as Readable).pipe(sink);
  }
}

function streamEnded(stream: Readable | null): Promise<void> {
  if (!stream || stream.readableEnded || stream.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    stream.once('close', resolve);
    stream.once('end', resolve);
    stream.once('error', () => resolve());
  });
}

/** Kills the command's tree at most once, through the driver; SIGKILL to the host process if that fails. */
function treeKiller(proc: RunningProcess, control: ProcessControl): () => void {
  let killed = false;
  return () => {
    if (killed) return;
    killed = true;
    void Promise.resolve()
      .then(() => control.killTree())
      .catch(() => proc.kill('SIGKILL'));
  };
}

interface Supervision {
  timedOut: boolean;
  aborted: boolean;
  overflow: 'stdout' | 'stderr' | undefined;
}

/**
 * Watches a host process whose stdio is the command's own and enforces the
 * exec semantics of the contract: stdin kinds, timeout and abort through the
 * driver's tree kill. With `collect` it also buffers and streams output to
 * the callbacks; without it the caller reads the streams itself.
 */
function supervise(
  proc: RunningProcess,
  argv: readonly string[],
  opts: ExecOptions,
  control: ProcessControl,
  collect: { stdout: Collector; stderr: Collector } | undefined,
  kill: () => void = treeKiller(proc, control),
): Promise<ExecResult> {
  const started = performance.now();
  const state: Supervision = { timedOut: false, aborted: false, overflow: undefined };
  const timer = opts.timeout
    ? setTimeout(() => {
        state.timedOut = true;
        kill();
      }, opts.timeout)
    : undefined;
  const onAbort = () => {
    state.aborted = true;
    kill();
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.signal?.aborted) onAbort();

  if (collect) {
    const wire = (
      stream: Readable | null,
      collector: Collector,
      name: 'stdout' | 'stderr',
      cb?: (c: Uint8Array) => void,
    ) => {
      stream?.on('data', (chunk: Buffer) => {
        cb?.(chunk);
        if (!collector.add(chunk) && !state.overflow) {
          state.overflow = name;
          kill();
        }
      });
    };
    wire(proc.stdout, collect.stdout, 'stdout', opts.onStdout);
    wire(proc.stderr, collect.stderr, 'stderr', opts.onStderr);
  }

  const finish = async (): Promise<ExecResult> => {
    let exit: { exitCode: number | null; signal: string | null };
    try {
      exit = await proc.exited;
      if (collect) await Promise.all([streamEnded(proc.stdout), streamEnded(proc.stderr)]);
    } catch (err) {
      throw new TransportError(`execenv: could not run ${JSON.stringify(argv)}: ${(err as Error).message}`, {
        ...control.context,
        op: 'exec',
        cause: err,
      });
    } finally {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
    }
    const result = execResult({
      argv,
      exitCode: exit.exitCode,
      signal: exit.signal,
      stdoutBytes: collect ? collect.stdout.bytes() : new Uint8Array(),
      stderrBytes: collect ? collect.stderr.bytes() : new Uint8Array(),
      timedOut: state.timedOut,
      durationMs: Math.round(performance.now() - started),
    });
    if (state.aborted) throw abortedError(argv, control.context, opts.signal?.reason);
    if (state.overflow)
      throw new ExecenvError(
        'EXEC_FAILED',
        `execenv: ${JSON.stringify(argv)}: ${state.overflow} exceeded maxBuffer (${collect?.stdout.limit} bytes) and was killed; raise maxBuffer or stream with onStdout/spawn()`,
        { ...control.context, op: 'exec' },
      );
    return checkResult(result, opts, control.context);
  };
  return finish();
}

/**
 * Runs a host process as an exec: buffered result, callbacks, limits, cancellation.
 *
 * @example
 * ```ts
 * import { hostRunner, superviseExec } from '@execenv/core';
 * // in a BaseEnvironment's doExec(argv, opts); fooExecArgv puts cwd, user and env on foo's command line
 * const proc = hostRunner().spawn(fooExecArgv(this.id, argv, opts));
 * return superviseExec(proc, argv, opts, { killTree: () => fooKillAll(this.id), context: this.context('exec') });
 * ```
 */
export function superviseExec(
  proc: RunningProcess,
  argv: readonly string[],
  opts: ExecOptions,
  control: ProcessControl,
): Promise<ExecResult> {
  feedStdin(proc, opts.stdin);
  const limit = opts.maxBuffer ?? DEFAULT_MAX_BUFFER;
  const keep = opts.buffer !== false;
  return supervise(proc, argv, opts, control, {
    stdout: new Collector(limit, keep),
    stderr: new Collector(limit, keep),
  });
}

/**
 * Wraps a host process as an ExecProcess whose streams the caller reads.
 *
 * @example
 * ```ts
 * import { hostRunner, superviseSpawn } from '@execenv/core';
 * // in a BaseEnvironment's doSpawn(argv, opts): the caller reads the streams of the ExecProcess
 * const proc = hostRunner().spawn(fooExecArgv(this.id, argv, opts));
 * return superviseSpawn(proc, argv, opts, { killTree: () => fooKillAll(this.id), context: this.context('spawn') });
 * ```
 */
export function superviseSpawn(
  proc: RunningProcess,
  argv: readonly string[],
  opts: ExecOptions,
  control: ProcessControl,
): ExecProcess {
  if (opts.stdin !== undefined) feedStdin(proc, opts.stdin);
  const stdout = proc.stdout ?? Readable.from([]);
  const stderr = proc.stderr ?? Readable.from([]);
  const kill = treeKiller(proc, control);
  const result = supervise(proc, argv, opts, control, undefined, kill);
  // Callers that only read streams may never await the result; keep its rejection from going unhandled.
  result.catch(() => {});
  return execProcess({ stdin: opts.stdin === undefined ? proc.stdin : null, stdout, stderr, result, kill });
}

/**
 * An ExecProcess of its parts; disposing it kills the command and waits for its end.
 *
 * @example
 * ```ts
 * import { execProcess } from '@execenv/core';
 * // a backend session with streams and a Promise<ExecResult> of its own:
 * const s = await fooSession.start(argv);
 * return execProcess({ stdin: s.stdin, stdout: s.stdout, stderr: s.stderr, result: s.result, kill: () => s.kill() });
 * ```
 */
export function execProcess(parts: Omit<ExecProcess, typeof Symbol.asyncDispose>): ExecProcess {
  return {
    ...parts,
    async [Symbol.asyncDispose]() {
      parts.kill();
      await parts.result.catch(() => {});
    },
  };
}
