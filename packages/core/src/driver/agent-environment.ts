import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, mkdir, open, opendir, readdir, rename, rm, stat as statHost } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ExecOptions, FileOptions, FileStat } from '../contract.js';
import type { EnvironmentInit } from '../environment-base.js';
import {
  type ErrorContext,
  ExecenvError,
  InvalidSpecError,
  NotFoundError,
  TransportError,
  withContext,
} from '../errors.js';
import { extractArchive } from '../files/extract.js';
import { extractWithGnuTar } from '../files/gnu-tar-extract.js';
import { assertEnvPath } from '../files/in-root.js';
import { packTree } from '../files/pack.js';
import { HostCommandError, type ProcessRunner, type RunningProcess } from '../runner.js';
import { type ResolvedUser, resolveUser } from '../users.js';
import type { AgentSessionLike } from './agent-session.js';
import { CommandEnvironment } from './command-environment.js';
import { hostEnv } from './host.js';
import { type HostAgentLink, hostTransfer } from './host-transfer.js';
import { outcomeCodeError } from './outcome-error.js';

/**
 * DEFAULT_PATH is the PATH of a command inside an environment unless the spec or the exec sets one.
 *
 * @example
 * ```ts
 * import { DEFAULT_PATH } from '@execenv/core/driver';
 * // A command a driver starts on its own backend gets the same PATH as one run through exec().
 * const environment = { PATH: DEFAULT_PATH, ...spec.env, ...opts.env };
 * ```
 */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * What an agent-backed environment is made of once its agent answers.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { AgentEnvironment, type AgentEnvironmentInit } from '@execenv/core/driver';
 * const init: AgentEnvironmentInit = {
 *   id, driver: 'foo', capabilities: ['isolation-chroot', 'root'], session,
 *   env: spec.env, // defaults of every exec
 *   hostRunner: hostRunner(), // GNU tar on the host for directory transfers
 *   destroy: () => lease.release(undo), // after running commands were killed and the session closed
 * };
 * return new AgentEnvironment(init);
 * ```
 */
export interface AgentEnvironmentInit extends EnvironmentInit {
  /** The connection to the agent inside the environment. */
  session: AgentSessionLike;
  /** Default environment variables of every exec (the spec's `env`). */
  env?: Readonly<Record<string, string>>;
  /**
   * Tears down what the driver created (agent process, mounts, lease).
   * Called once by close, after running commands were killed and the session closed.
   */
  destroy: () => Promise<void>;
  /**
   * Refuses a resolved user the driver cannot run commands as (ids a user
   * namespace does not map) by throwing, usually InvalidSpecError('user').
   * `user` is the ExecOptions.user that was resolved.
   */
  checkUser?: (resolved: ResolvedUser, user: string) => void;
  /**
   * Runs GNU tar on the host to pack a directory push and to extract a
   * directory pull into a new or empty directory (behind a TarGate), which is
   * faster than doing either in this process. Without it directories are
   * packed by packTree and extracted by extractArchive.
   */
  hostRunner?: ProcessRunner;
  /**
   * With `hostRunner`: the agent's socket on this host and an agent binary
   * for this host. Directory pushes, and pulls into a new or empty
   * directory, then run the agent on the host (hostTransfer), which is
   * faster than GNU tar through this process.
   */
  hostAgent?: HostAgentLink;
}

const ROOT: ResolvedUser = { uid: 0, gid: 0, groups: [] };

/**
 * AgentEnvironment is a whole Environment over one agent session: commands,
 * files and archives all go through the agent, which resolves every path
 * inside the environment. A driver on the agent writes only its lifecycle:
 * start the agent, connect, hand the session here with a `destroy`.
 *
 * The agent is inside the environment and not trusted: archives it sends
 * are extracted on the host by extractArchive, or by GNU tar behind a
 * TarGate, and both refuse entries that would leave the destination.
 *
 * @example
 * ```ts
 * import { AgentSession } from '@execenv/agent';
 * import { AgentEnvironment } from '@execenv/core/driver';
 * // In openWithLease's `create`, once `execenv-agent --listen SOCKET` runs inside the environment:
 * const session = await AgentSession.connect(socket);
 * const capabilities = ['isolation-container', 'root'] as const;
 * return new AgentEnvironment({ id, driver: 'foo', capabilities, session, destroy: () => lease.release(undo) });
 * ```
 */
export class AgentEnvironment extends CommandEnvironment {
  /** The agent connection; a driver that restarts its agent (revert) assigns the new session. */
  protected session: AgentSessionLike;
  readonly #init: AgentEnvironmentInit;

  constructor(init: AgentEnvironmentInit) {
    super(init);
    this.#init = init;
    this.session = init.session;
  }

  /** Error context of `op` in this environment. */
  #ctx(op: string): ErrorContext & { op: string } {
    return { envId: this.id, driver: this.driver, op };
  }

  protected override async startCommand(argv: string[], opts: ExecOptions): Promise<RunningProcess> {
    const cwd = opts.cwd ?? '/';
    const user = opts.user === undefined ? ROOT : await this.#resolveUser(opts.user);
    const env = { PATH: DEFAULT_PATH, ...this.#init.env, ...opts.env };
    // User resolution awaited: close may have begun meanwhile, and then nothing may start.
    this.ensureOpen('exec');
    let proc: RunningProcess;
    try {
      proc = this.session.exec({ cwd, uid: user.uid, gid: user.gid, groups: user.groups, env, argv });
    } catch (err) {
      throw agentError(err, this.#ctx('exec'), cwd);
    }
    const exited = proc.exited.catch((err: unknown) => {
      throw agentError(err, this.#ctx('exec'), cwd);
    });
    exited.catch(() => {});
    return {
      get pid() {
        return proc.pid;
      },
      stdin: proc.stdin,
      stdout: proc.stdout,
      stderr: proc.stderr,
      kill: (signal) => proc.kill(signal),
      exited,
    };
  }

  async #resolveUser(user: string): Promise<ResolvedUser> {
    const ctx = this.#ctx('exec');
    try {
      const resolved = resolveUser(
        user,
        await this.#readText('/etc/passwd'),
        await this.#readText('/etc/group'),
        this.id,
      );
      this.#init.checkUser?.(resolved, user);
      return resolved;
    } catch (err) {
      throw withContext(err, ctx);
    }
  }

  /** A small text file of the environment, or '' when it cannot be read. */
  async #readText(path: string): Promise<string> {
    try {
      const { content, done } = this.session.readFile(path);
      done.catch(() => {});
      const chunks: Buffer[] = [];
      for await (const c of content) chunks.push(Buffer.from(c as Uint8Array));
      await done;
      return Buffer.concat(chunks).toString('utf8');
    } catch {
      return '';
    }
  }

  protected override async doPush(src: string | Uint8Array | Readable, dest: string, opts: FileOptions): Promise<void> {
    const ctx = this.#ctx('push');
    assertEnvPath(dest);
    if (typeof src === 'string') {
      const st = await statHost(src).catch(() => undefined);
      if (!st) throw new NotFoundError(src, { ...ctx, envId: undefined });
      if (st.isDirectory()) {
        const result = await this.#pushDirectory(src, dest).catch((err: unknown) => {
          throw agentError(err, ctx, dest, 'archive');
        });
        this.emit({ type: 'copy', envId: this.id, direction: 'push', path: dest, bytes: result.bytes });
        return;
      }
      const content = createReadStream(src, { highWaterMark: 1 << 20 });
      return this.#writeFile(content, dest, { mode: st.mode & 0o7777, ...opts });
    }
    return this.#writeFile(src instanceof Uint8Array ? Readable.from([Buffer.from(src)]) : src, dest, opts);
  }

  /** A host directory's tree into dest: the session's own way when it has one, else its archive through tarIn. */
  async #pushDirectory(dir: string, dest: string): Promise<{ entries: number; bytes: number }> {
    if (this.session.pushDirectory) return this.session.pushDirectory(dir, dest);
    const { hostRunner, hostAgent } = this.#init;
    if (hostRunner && hostAgent)
      return hostTransfer(hostRunner, hostAgent, 'push', dir, dest, this.#ctx('push'), 'archive');
    const tar = this.#init.hostRunner ? gnuTar(this.#init.hostRunner, dir) : packTree('/', dir);
    try {
      return await this.session.tarIn(dest, tar);
    } catch (err) {
      tar.destroy();
      throw err;
    }
  }

  async #writeFile(content: Readable, dest: string, opts: FileOptions): Promise<void> {
    let bytes = 0;
    const count = new Transform({
      transform(chunk: Buffer, _enc, done) {
        bytes += chunk.length;
        done(null, chunk);
      },
    });
    content.once('error', (err) => count.destroy(err));
    try {
      await this.writeFileContent(content.pipe(count), dest, {
        mode: opts.mode ?? 0o644,
        uid: opts.uid ?? 0,
        gid: opts.gid ?? 0,
      });
    } catch (err) {
      content.destroy();
      throw err;
    }
    this.emit({ type: 'copy', envId: this.id, direction: 'push', path: dest, bytes });
  }

  /**
   * Writes one pushed file's content at `dest` (absolute, inside), replacing
   * what is there, with exactly this mode (setuid, setgid and sticky bits
   * included), owner and group; rejects with the SDK's error for `push`. The
   * default has the agent write it. A driver whose backend has a faster
   * path for file content that also resolves `dest` inside the environment
   * (a daemon's files API) overrides this.
   *
   * @example
   * ```ts
   * class FooEnvironment extends AgentEnvironment {
   *   protected override async writeFileContent(content: Readable, dest: string, opts: Required<FileOptions>) {
   *     await fooApi.putFile(this.id, dest, content, opts); // resolved inside by the daemon
   *   }
   * }
   * ```
   */
  protected async writeFileContent(content: Readable, dest: string, opts: Required<FileOptions>): Promise<void> {
    await this.session.writeFile(dest, content, opts).catch((err: unknown) => {
      throw agentError(err, this.#ctx('push'), dest, 'dest');
    });
  }

  protected override async doPull(src: string, dest: string): Promise<void> {
    const ctx = this.#ctx('pull');
    assertEnvPath(src);
    const st = await this.session.stat(src, true).catch((err: unknown) => {
      throw agentError(err, ctx, src, 'src');
    });
    if (!st) throw new NotFoundError(src, ctx);
    if (st.type === 'directory') {
      const created = await mkdir(dest, { recursive: true });
      // GNU tar follows symlinks already in dest, so it extracts only into a directory that held nothing.
      const runner = this.#init.hostRunner;
      const empty = runner !== undefined && (created !== undefined || (await isEmptyDir(dest)));
      try {
        // The agent is not trusted: its archive goes through ArchiveGuard either way, and device nodes are not made.
        const result = await this.#pullDirectory(src, dest, empty, ctx);
        this.emit({ type: 'copy', envId: this.id, direction: 'pull', path: src, bytes: result.bytes });
      } catch (err) {
        if (created) await rm(created, { recursive: true, force: true });
        else if (runner && empty) await emptyDir(dest);
        throw agentError(err, ctx, src, 'src');
      }
      return;
    }
    if (st.type !== 'file') throw new InvalidSpecError('src', `${src} is neither a file nor a directory`, ctx);
    // Beside dest and renamed at the end: a failed pull leaves no partial file.
    const tmp = `${dest}.execenv-${randomBytes(6).toString('hex')}`;
    try {
      const { content, done } = this.session.readFile(src);
      done.catch(() => {});
      // The content may fail while the file is being created: pipeline reports that error, not the stream.
      content.on('error', () => {});
      // Created before anything is read: a stream that opens its file lazily could create it after a failure's rm.
      const file = await open(tmp, 'wx', 0o600).catch((err: unknown) => {
        content.destroy();
        throw err;
      });
      await pipeline(content, file.createWriteStream());
      const { mode, size } = await done;
      await chmod(tmp, mode & 0o7777);
      await rename(tmp, dest);
      this.emit({ type: 'copy', envId: this.id, direction: 'pull', path: src, bytes: size });
    } catch (err) {
      await rm(tmp, { force: true });
      throw agentError(err, ctx, src, 'src');
    }
  }

  /** The environment's directory src into the host directory dest; `empty` when dest held nothing. */
  async #pullDirectory(src: string, dest: string, empty: boolean, ctx: ErrorContext & { op: string }) {
    const { hostRunner: runner, hostAgent } = this.#init;
    if (runner && empty && hostAgent) return hostTransfer(runner, hostAgent, 'pull', src, dest, ctx, 'src');
    const tar = this.session.tarOut(src);
    return runner && empty
      ? await extractWithGnuTar(tar, dest, runner, { context: ctx })
      : await extractArchive(tar, { root: dest, destDir: '/', context: ctx });
  }

  protected override async doPushArchive(tar: Readable, destDir: string): Promise<void> {
    const ctx = this.#ctx('pushArchive');
    assertEnvPath(destDir);
    const result = await this.session.tarIn(destDir, tar).catch((err: unknown) => {
      throw agentError(err, ctx, destDir, 'archive');
    });
    this.emit({ type: 'copy', envId: this.id, direction: 'push', path: destDir, bytes: result.bytes });
  }

  protected override doPullArchive(srcPath: string): Readable {
    const ctx = this.#ctx('pullArchive');
    const out = new PassThrough();
    let source: Readable;
    try {
      source = this.session.tarOut(srcPath);
    } catch (err) {
      queueMicrotask(() => out.destroy(agentError(err, ctx, srcPath, 'src') as Error));
      return out;
    }
    source.once('error', (err) => out.destroy(agentError(err, ctx, srcPath, 'src') as Error));
    out.once('close', () => source.destroy());
    return source.pipe(out);
  }

  protected override async doStat(path: string): Promise<FileStat | null> {
    const st = await this.session.stat(path, false).catch((err: unknown) => {
      throw agentError(err, this.#ctx('stat'), path);
    });
    if (!st) return null;
    return {
      type: st.type,
      size: st.size,
      mode: st.mode,
      uid: st.uid,
      gid: st.gid,
      mtime: st.mtime,
      ...(st.target !== undefined ? { linkTarget: st.target } : {}),
    };
  }

  protected override doReadDir(path: string): Promise<string[]> {
    return this.session.readDir(path).catch((err: unknown) => {
      throw agentError(err, this.#ctx('readDir'), path);
    });
  }

  protected override async destroy(): Promise<void> {
    try {
      this.session.close();
    } finally {
      await this.#init.destroy();
    }
  }
}

/**
 * agentError turns what an agent session rejected with into the SDK's error
 * for `op` on `path`: AgentError NOT_FOUND → NotFoundError, UNSAFE_PATH →
 * UnsafePathError, CONFLICT and INVALID → InvalidSpecError naming `field`,
 * IO (and any other code) → ExecenvError EXEC_FAILED, AgentTransportError →
 * TransportError. ExecenvErrors get the context they lack; anything else is
 * returned as it is.
 *
 * @example
 * ```ts
 * import { agentError } from '@execenv/core/driver';
 * try {
 *   await session.writeFile('/etc/hosts', Readable.from([hosts]), { mode: 0o644, uid: 0, gid: 0 });
 * } catch (err) {
 *   // AgentError NOT_FOUND becomes NotFoundError, a lost connection TransportError, and so on.
 *   throw agentError(err, { envId: id, driver: 'foo', op: 'open' }, '/etc/hosts');
 * }
 * ```
 */
export function agentError(
  err: unknown,
  context: ErrorContext & { op: string },
  path: string,
  field = 'path',
): unknown {
  if (err instanceof ExecenvError) return withContext(err, context);
  if (!(err instanceof Error)) return err;
  const ctx = { ...context, cause: err };
  if (err.name === 'AgentTransportError')
    return new TransportError(
      `execenv: ${context.op} ${path}: lost the connection to the agent of ${context.envId}: ${err.message}`,
      ctx,
    );
  if (err.name !== 'AgentError') return err;
  return outcomeCodeError(String((err as { code?: unknown }).code), err.message, ctx, path, field);
}

async function isEmptyDir(path: string): Promise<boolean> {
  const dir = await opendir(path);
  try {
    return (await dir.read()) === null;
  } finally {
    await dir.close();
  }
}

/** Removes what a directory holds, never following a symlink. */
async function emptyDir(path: string): Promise<void> {
  const names = await readdir(path).catch(() => []);
  for (const name of names) await rm(join(path, name), { recursive: true, force: true }).catch(() => {});
}

/**
 * Packs a host directory with GNU tar: `tar --numeric-owner -C dir -cf - .`.
 * The archive's end is held until tar has exited, and a failed tar errors
 * the stream, so a consumer never takes a cut archive for a whole one.
 */
function gnuTar(runner: ProcessRunner, dir: string): Readable {
  const argv = ['tar', '--numeric-owner', '-C', dir, '-cf', '-', '.'];
  const proc = runner.spawn(argv, { env: hostEnv(), stdin: 'ignore' });
  let stderr = '';
  proc.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
  const out = new Transform({
    transform(chunk: Buffer, _enc, done) {
      done(null, chunk);
    },
    flush(done) {
      proc.exited.then(
        (e) =>
          e.exitCode === 0 && !e.signal ? done() : done(new HostCommandError({ argv, ...e, stdout: '', stderr })),
        (err: unknown) => done(err as Error),
      );
    },
  });
  out.once('close', () => proc.kill('SIGKILL'));
  if (!proc.stdout) {
    queueMicrotask(() => out.destroy(new Error('execenv: tar gave no output stream')));
    return out;
  }
  proc.stdout.once('error', (err) => out.destroy(err));
  return proc.stdout.pipe(out);
}
