import { PassThrough } from 'node:stream';
import type { ExecOptions, ExecProcess, ExecResult } from '../contract.js';
import { BaseEnvironment } from '../environment-base.js';
import { ClosedError, ExecenvError, TransportError } from '../errors.js';
import { execProcess, type ProcessControl, superviseExec, superviseSpawn } from '../process-exec.js';
import type { RunningProcess } from '../runner.js';

/**
 * CommandEnvironment is a BaseEnvironment whose driver starts commands in one
 * place, `startCommand`; exec and spawn (buffers, callbacks, stdin, timeout,
 * abort, maxBuffer, check) are built on it, and the commands it started are
 * tracked so close can kill them. Drivers still implement the file methods
 * and `destroy`.
 *
 * close() refuses new work first, then kills every running command (waiting
 * for each to end), then calls `destroy`. An exec that close cut short
 * rejects with ClosedError; a command whose start finishes after close began
 * is killed at once and its exec rejects with ClosedError.
 *
 * @example
 * ```ts
 * import { type ExecOptions, hostRunner, type RunningProcess } from '@execenv/core';
 * import { CommandEnvironment } from '@execenv/core/driver';
 * class FooEnvironment extends CommandEnvironment {
 *   protected override async startCommand(argv: string[], opts: ExecOptions): Promise<RunningProcess> {
 *     const user = await this.userOf(opts.user ?? 'root'); // setup may await
 *     this.ensureOpen('exec'); // close() may have begun meanwhile
 *     return hostRunner().spawn(['foo', 'exec', '--user', user, this.id, '--', ...argv]);
 *   }
 *   // and killTree where SIGKILL to the handle misses the tree; the file methods; destroy
 * }
 * ```
 */
export abstract class CommandEnvironment extends BaseEnvironment {
  readonly #running = new Set<RunningProcess>();
  readonly #cutByClose = new WeakSet<RunningProcess>();

  /**
   * Starts argv inside the environment and returns its host-side handle;
   * its stdio must be the command's own. The base has checked state, argv,
   * options and the abort signal. A command whose start fails for a reason
   * the caller should see (a missing cwd) rejects here, or rejects `exited`
   * with an ExecenvError, which exec passes on unchanged. Implementations
   * that wait before starting call `ensureOpen('exec')` right before they do.
   */
  protected abstract startCommand(argv: string[], opts: ExecOptions): Promise<RunningProcess>;

  /**
   * Kills the whole process tree of a command inside the environment.
   * The default sends SIGKILL to the handle, which is enough where the handle
   * is the tree's init or the backend kills the tree with it.
   */
  protected killTree(proc: RunningProcess): void | Promise<void> {
    proc.kill('SIGKILL');
  }

  /** Kills every running command's tree and waits until each has ended. Never rejects. */
  protected async killRunning(): Promise<void> {
    await Promise.all(
      [...this.#running].map(async (proc) => {
        try {
          await this.killTree(proc);
        } catch {
          proc.kill('SIGKILL');
        }
        await proc.exited.catch(() => {});
      }),
    );
  }

  /** close() has refused new work: the commands still running are cut short and killed before destroy. */
  protected override async beforeDestroy(): Promise<void> {
    for (const proc of this.#running) this.#cutByClose.add(proc);
    await this.killRunning();
  }

  protected override async doExec(argv: string[], opts: ExecOptions): Promise<ExecResult> {
    const proc = await this.#start(argv, opts);
    try {
      const result = await superviseExec(proc, argv, opts, this.#control(proc));
      if (this.#cutByClose.has(proc)) throw new ClosedError(this.id, 'exec');
      return result;
    } catch (err) {
      if (this.#cutByClose.has(proc)) throw new ClosedError(this.id, 'exec');
      throw startFailure(err);
    } finally {
      this.#running.delete(proc);
    }
  }

  protected override doSpawn(argv: string[], opts: ExecOptions): ExecProcess {
    // spawn() hands back streams at once while startCommand is async: bridge them.
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const stdin = opts.stdin === undefined ? new PassThrough() : null;
    let proc: RunningProcess | undefined;
    let killed = false;
    const started = this.#start(argv, opts).then((p) => {
      proc = p;
      if (killed) this.#kill(p);
      return p;
    });
    const result = started.then(async (p) => {
      const spawned = superviseSpawn(p, argv, opts, this.#control(p));
      spawned.stdout.pipe(stdout);
      spawned.stderr.pipe(stderr);
      if (stdin && spawned.stdin) stdin.pipe(spawned.stdin);
      try {
        const r = await spawned.result;
        if (this.#cutByClose.has(p)) throw new ClosedError(this.id, 'spawn');
        return r;
      } catch (err) {
        if (this.#cutByClose.has(p)) throw new ClosedError(this.id, 'spawn');
        throw startFailure(err);
      } finally {
        this.#running.delete(p);
      }
    });
    result.catch(() => {
      // The error is the result's; the streams just end, so readers that never await it are not crashed.
      if (!proc) {
        stdout.end();
        stderr.end();
      }
    });
    // Callers that only read streams may never await the result.
    result.catch(() => {});
    const kill = () => {
      killed = true;
      if (proc) this.#kill(proc);
    };
    return execProcess({ stdin, stdout, stderr, result, kill });
  }

  async #start(argv: string[], opts: ExecOptions): Promise<RunningProcess> {
    const proc = await this.startCommand(argv, opts);
    if (this.closed) {
      this.#kill(proc);
      await proc.exited.catch(() => {});
      throw new ClosedError(this.id, 'exec');
    }
    this.#running.add(proc);
    return proc;
  }

  #kill(proc: RunningProcess): void {
    void Promise.resolve()
      .then(() => this.killTree(proc))
      .catch(() => proc.kill('SIGKILL'));
  }

  #control(proc: RunningProcess): ProcessControl {
    return { killTree: () => this.killTree(proc), context: this.context('exec') };
  }
}

/**
 * The supervisor reports a process that could not start as a TransportError;
 * when the driver gave a reason of its own (NotFoundError for a missing cwd),
 * that reason is the error.
 */
function startFailure(err: unknown): unknown {
  if (err instanceof TransportError && err.cause instanceof ExecenvError) return err.cause;
  return err;
}
