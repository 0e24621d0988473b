import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, rename, rm, stat as statHost } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { PassThrough, type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  assertEnvPath,
  type EnvironmentInit,
  type ErrorContext,
  ExecenvError,
  type ExecOptions,
  extractArchive,
  type FileOptions,
  type FileStat,
  InvalidSpecError,
  NotFoundError,
  packTree,
  type RunningProcess,
  resolveUser,
  TransportError,
  UnsupportedError,
  withContext,
} from '@execenv/core';
import { CommandEnvironment, DEFAULT_PATH } from '@execenv/core/driver';
import { LxdApiError, type LxdClient, LxdConnectionError } from './lxd-client.js';
import { type LxdExecProcess, startExec } from './lxd-exec.js';
import { LxdFiles } from './lxd-files.js';

/** What an LxdEnvironment is made of once its instance runs. */
export interface LxdEnvironmentInit extends EnvironmentInit {
  client: LxdClient;
  /** The instance name (the environment id). */
  instance: string;
  /** Default environment of every exec (the spec's `env`). */
  env?: Readonly<Record<string, string>>;
  /** Removes the instance and everything else the environment created. */
  destroy: () => Promise<void>;
  /** Publishes the instance as an image; present when the environment is Publishable. */
  publish?: (alias: string) => Promise<string>;
}

/**
 * Runs argv as a new session whose id is its pid, after printing that pid on
 * stderr: the control channel's signal reaches only the first process, so a
 * tree is killed as a session. Without setsid in the image the pid alone is killed.
 */
const SUPERVISOR = 'echo "$$" >&2; command -v setsid >/dev/null 2>&1 && exec setsid "$@"; exec "$@"';

/** The first line a supervised command prints on stderr is its pid; the rest is the command's. */
class PidLine extends Transform {
  pid: Promise<number | undefined>;
  #resolve!: (pid: number | undefined) => void;
  #head: Buffer | undefined = Buffer.alloc(0);
  constructor() {
    super();
    this.pid = new Promise((r) => (this.#resolve = r));
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null, data?: Buffer) => void) {
    if (!this.#head) return done(null, chunk);
    const joined = Buffer.concat([this.#head, chunk]);
    const nl = joined.indexOf(10);
    if (nl < 0 && joined.length < 32) {
      this.#head = joined;
      return done();
    }
    this.#head = undefined;
    const pid = nl >= 0 ? Number(joined.subarray(0, nl).toString()) : Number.NaN;
    this.#resolve(Number.isInteger(pid) && pid > 0 ? pid : undefined);
    const rest = nl >= 0 ? joined.subarray(nl + 1) : joined;
    done(null, rest.length > 0 ? rest : undefined);
  }
  override _flush(done: (err?: Error | null, data?: Buffer) => void) {
    this.#resolve(undefined);
    done(null, this.#head && this.#head.length > 0 ? this.#head : undefined);
  }
}

interface Supervised extends RunningProcess {
  /** The command's pid inside the instance, once it printed it. */
  readonly innerPid: Promise<number | undefined>;
}

/**
 * LxdEnvironment is one LXD instance: commands through the exec API, files
 * through the files API (the daemon resolves paths inside the instance),
 * directories as tar streams run through tar inside the instance.
 */
export class LxdEnvironment extends CommandEnvironment {
  readonly #init: LxdEnvironmentInit;
  readonly #files: LxdFiles;

  constructor(init: LxdEnvironmentInit) {
    super(init);
    this.#init = init;
    this.#files = new LxdFiles(init.client, init.instance);
  }

  /** The LXD instance name. */
  get instance(): string {
    return this.#init.instance;
  }

  #ctx(op: string): ErrorContext & { op: string } {
    return { envId: this.id, driver: this.driver, op };
  }

  /** Publishes the instance's current state as an image under `alias`; returns `lxd:<alias>`. */
  async publish(alias: string): Promise<string> {
    this.ensureOpen('publish');
    if (!this.#init.publish) throw new UnsupportedError(this.driver, 'publish', this.#ctx('publish'));
    return this.#init.publish(alias);
  }

  protected override async startCommand(argv: string[], opts: ExecOptions): Promise<RunningProcess> {
    const ctx = this.#ctx('exec');
    const user = opts.user === undefined ? { uid: 0, gid: 0 } : await this.#resolveUser(opts.user);
    const cwd = opts.cwd ?? '/';
    if (cwd !== '/') {
      const info = await this.#files.info(cwd).catch((err: unknown) => {
        throw lxdError(err, ctx, cwd);
      });
      if (!info) throw new NotFoundError(cwd, ctx);
    }
    this.ensureOpen('exec');
    let proc: LxdExecProcess;
    try {
      proc = await startExec(this.#init.client, this.#init.instance, {
        command: ['sh', '-c', SUPERVISOR, 'sh', ...argv],
        environment: { PATH: DEFAULT_PATH, ...this.#init.env, ...opts.env },
        cwd,
        user: user.uid,
        group: user.gid,
        stdin: opts.stdin !== 'ignore' && opts.stdin !== undefined ? true : opts.stdin === undefined,
      });
    } catch (err) {
      throw lxdError(err, ctx, argv[0] ?? '');
    }
    const pidLine = new PidLine();
    proc.stderr.once('error', (err) => pidLine.destroy(err));
    const stderr = proc.stderr.pipe(pidLine);
    const exited = proc.exited.catch((err: unknown) => {
      throw lxdError(err, ctx, argv[0] ?? '');
    });
    exited.catch(() => {});
    const supervised: Supervised = {
      pid: undefined,
      stdin: proc.stdin,
      stdout: proc.stdout,
      stderr,
      exited,
      innerPid: pidLine.pid,
      kill: (signal) => proc.kill(signal),
    };
    return supervised;
  }

  /**
   * Kills the command's session inside the instance (every process it
   * started that did not leave the session), then the command itself.
   */
  protected override async killTree(proc: RunningProcess): Promise<void> {
    const pid = await Promise.race([
      (proc as Supervised).innerPid,
      proc.exited.then(
        () => undefined,
        () => undefined,
      ),
    ]);
    if (pid === undefined) {
      proc.kill('SIGKILL');
      return;
    }
    const killer = await startExec(this.#init.client, this.#init.instance, {
      command: ['sh', '-c', 'kill -9 -"$1" 2>/dev/null; kill -9 "$1" 2>/dev/null; exit 0', 'sh', String(pid)],
      environment: { PATH: DEFAULT_PATH },
      cwd: '/',
      user: 0,
      group: 0,
      stdin: false,
    });
    killer.stdout.resume();
    killer.stderr.resume();
    await killer.exited;
  }

  async #resolveUser(user: string) {
    const ctx = this.#ctx('exec');
    try {
      const [passwd, group] = await Promise.all([this.#readText('/etc/passwd'), this.#readText('/etc/group')]);
      return resolveUser(user, passwd, group, this.id);
    } catch (err) {
      throw withContext(err, ctx);
    }
  }

  async #readText(path: string): Promise<string> {
    try {
      const res = await this.#files.read(path);
      const chunks: Buffer[] = [];
      for await (const c of res) chunks.push(c as Buffer);
      return Buffer.concat(chunks).toString('utf8');
    } catch {
      return '';
    }
  }

  /** Runs a helper command as root and fails with its stderr unless it exits 0. */
  async #run(argv: string[], op: string, path: string, stdin?: Readable): Promise<void> {
    const r = await this.exec(argv, { stdin: stdin ?? 'ignore' });
    if (r.exitCode !== 0)
      throw new ExecenvError(
        'EXEC_FAILED',
        `execenv: ${op} ${path} in ${this.id}: ${argv[0]} failed (${r.exitCode ?? r.signal}): ${r.stderr.trim().slice(-300)}`,
        this.#ctx(op),
      );
  }

  protected override async doPush(src: string | Uint8Array | Readable, dest: string, opts: FileOptions): Promise<void> {
    const ctx = this.#ctx('push');
    assertEnvPath(dest);
    if (typeof src === 'string') {
      const st = await statHost(src).catch(() => undefined);
      if (!st) throw new NotFoundError(src, { ...ctx, envId: undefined });
      if (st.isDirectory()) {
        const bytes = await this.#untar(packTree('/', src), dest, 'push');
        this.emit({ type: 'copy', envId: this.id, direction: 'push', path: dest, bytes });
        return;
      }
      return this.#write(createReadStream(src, { highWaterMark: 1 << 20 }), dest, { mode: st.mode & 0o7777, ...opts });
    }
    return this.#write(src instanceof Uint8Array ? Buffer.from(src) : src, dest, opts);
  }

  async #write(content: Readable | Buffer, dest: string, opts: FileOptions): Promise<void> {
    let bytes = Buffer.isBuffer(content) ? content.length : 0;
    let body: Readable | Buffer = content;
    if (!Buffer.isBuffer(content)) {
      const count = new Transform({
        transform(chunk: Buffer, _enc, done) {
          bytes += chunk.length;
          done(null, chunk);
        },
      });
      content.once('error', (err) => count.destroy(err));
      body = content.pipe(count);
    }
    try {
      const mode = opts.mode ?? 0o644;
      await this.#files.write(dest, body, { mode, uid: opts.uid ?? 0, gid: opts.gid ?? 0 });
      // The files API keeps only the permission bits: setuid, setgid and sticky are set inside.
      if (mode & 0o7000) await this.#run(['chmod', (mode & 0o7777).toString(8), dest], 'push', dest);
    } catch (err) {
      if (!Buffer.isBuffer(content)) content.destroy();
      throw lxdError(err, this.#ctx('push'), dest, 'dest');
    }
    this.emit({ type: 'copy', envId: this.id, direction: 'push', path: dest, bytes });
  }

  protected override async doPull(src: string, dest: string): Promise<void> {
    const ctx = this.#ctx('pull');
    assertEnvPath(src);
    const { path, info } = await this.#files.resolve(src).catch((err: unknown) => {
      throw lxdError(err, ctx, src, 'src');
    });
    if (!info) throw new NotFoundError(src, ctx);
    if (info.type === 'directory') {
      const created = await mkdir(dest, { recursive: true });
      try {
        const result = await extractArchive(this.#tarOut(path, 'pull'), { root: dest, destDir: '/', context: ctx });
        this.emit({ type: 'copy', envId: this.id, direction: 'pull', path: src, bytes: result.bytes });
      } catch (err) {
        if (created) await rm(created, { recursive: true, force: true });
        throw lxdError(err, ctx, src, 'src');
      }
      return;
    }
    if (info.type !== 'file') throw new InvalidSpecError('src', `${src} is neither a file nor a directory`, ctx);
    const tmp = `${dest}.execenv-${randomBytes(6).toString('hex')}`;
    try {
      const content = await this.#files.read(path);
      let bytes = 0;
      content.on('data', (c: Buffer) => (bytes += c.length));
      await pipeline(content, createWriteStream(tmp, { flags: 'wx', mode: 0o600 }));
      await chmod(tmp, info.mode & 0o7777);
      await rename(tmp, dest);
      this.emit({ type: 'copy', envId: this.id, direction: 'pull', path: src, bytes });
    } catch (err) {
      await rm(tmp, { force: true });
      throw lxdError(err, ctx, src, 'src');
    }
  }

  /**
   * Extracts a caller's archive on the host first, into a temporary
   * directory, where extractArchive refuses any entry that would leave it:
   * a refused archive never reaches the instance. The checked tree then goes
   * in through tar inside the instance.
   */
  protected override async doPushArchive(tar: Readable, destDir: string): Promise<void> {
    const ctx = this.#ctx('pushArchive');
    assertEnvPath(destDir);
    const dir = await mkdtemp(join(tmpdir(), 'execenv-lxd-archive-'));
    try {
      await extractArchive(tar, { root: dir, destDir: '/', context: ctx });
      const bytes = await this.#untar(packTree('/', dir), destDir, 'pushArchive');
      this.emit({ type: 'copy', envId: this.id, direction: 'push', path: destDir, bytes });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** Extracts a trusted tar stream into `destDir` (created when missing) with tar inside the instance. */
  async #untar(tar: Readable, destDir: string, op: string): Promise<number> {
    let bytes = 0;
    const counted = tar.pipe(
      new Transform({
        transform(chunk: Buffer, _enc, done) {
          bytes += chunk.length;
          done(null, chunk);
        },
      }),
    );
    tar.once('error', (err) => counted.destroy(err));
    await this.#run(
      ['sh', '-c', 'mkdir -p -- "$1" && cd -- "$1" && exec tar --numeric-owner -xf -', 'sh', destDir],
      op,
      destDir,
      counted,
    );
    return bytes;
  }

  protected override doPullArchive(srcPath: string): Readable {
    return this.#tarOut(srcPath, 'pullArchive');
  }

  /** Streams `srcPath` (file or directory, a final symlink followed inside) as tar made inside the instance. */
  #tarOut(srcPath: string, op: string): Readable {
    const ctx = this.#ctx(op);
    const out = new PassThrough();
    (async () => {
      assertEnvPath(srcPath);
      const { path, info } = await this.#files.resolve(srcPath);
      if (!info) throw new NotFoundError(srcPath, ctx);
      const [dir, name] = info.type === 'directory' ? [path, '.'] : [posix.dirname(path), posix.basename(path)];
      const proc = this.spawn(['tar', '--numeric-owner', '-cf', '-', '-C', dir, name], { stdin: 'ignore' });
      out.once('close', () => proc.kill());
      const stderr: Buffer[] = [];
      proc.stderr.on('data', (c: Buffer) => stderr.push(c));
      proc.stdout.pipe(out, { end: false });
      const [r] = await Promise.all([proc.result, new Promise((resolve) => proc.stdout.once('end', resolve))]);
      if (r.exitCode !== 0)
        throw new ExecenvError(
          'EXEC_FAILED',
          `execenv: ${op} ${srcPath} in ${this.id}: tar failed (${r.exitCode ?? r.signal}): ${Buffer.concat(stderr).toString().trim().slice(-300)}`,
          ctx,
        );
      out.end();
    })().catch((err: unknown) => out.destroy(lxdError(err, ctx, srcPath, 'src') as Error));
    return out;
  }

  /**
   * Describes a path: the files API says what is there, and stat(1)
   * inside the instance, asked at the same time, gives what that API lacks (sizes, the setuid,
   * setgid and sticky bits, exact relative symlink targets). A symlink that
   * stat(1) no longer found is still reported as the link the files API saw.
   */
  protected override async doStat(path: string): Promise<FileStat | null> {
    const ctx = this.#ctx('stat');
    assertEnvPath(path);
    // Both at once: a stat takes as long as the slower of the two, not their sum.
    const [seen, r] = await Promise.all([
      this.#files.info(path).catch((err: unknown) => {
        throw lxdError(err, ctx, path);
      }),
      this.#statInside(path),
    ]);
    if (!seen) return r.exitCode === 0 ? (parseStat(r.stdout) ?? null) : null;
    const st = r.exitCode === 0 ? parseStat(r.stdout) : undefined;
    if (st && (st.type === seen.type || seen.type !== 'symlink')) return st;
    if (seen.type === 'symlink') {
      const target = await this.#files.readLink(path).catch(() => '');
      return { ...seen, size: Buffer.byteLength(target), linkTarget: target };
    }
    if (r.exitCode === 3) return null;
    throw new ExecenvError(
      'EXEC_FAILED',
      `execenv: stat ${path} in ${this.id}: stat(1) failed (${r.exitCode ?? r.signal}): ${r.stderr.trim().slice(-300)}`,
      ctx,
    );
  }

  /** Runs STAT_SCRIPT; an answer without its line (output cut short by the daemon) is asked for once more. */
  async #statInside(path: string) {
    const r = await this.exec(['sh', '-c', STAT_SCRIPT, 'sh', path], { stdin: 'ignore' });
    if (r.exitCode !== 0 || parseStat(r.stdout)) return r;
    return this.exec(['sh', '-c', STAT_SCRIPT, 'sh', path], { stdin: 'ignore' });
  }

  protected override async doReadDir(path: string): Promise<string[]> {
    const ctx = this.#ctx('readDir');
    assertEnvPath(path);
    const names = await this.#files.list(path).catch((err: unknown) => {
      throw lxdError(err, ctx, path);
    });
    if (!names) throw new InvalidSpecError('path', `${path} is not a directory`, ctx);
    return names;
  }

  protected override async destroy(): Promise<void> {
    await this.#init.destroy();
  }
}

/** Prints `<raw mode hex> <size> <uid> <gid> <mtime>` and, for a symlink, its target; exits 3 when nothing is there. */
const STAT_SCRIPT =
  '[ -e "$1" ] || [ -L "$1" ] || exit 3; stat -c "%f %s %u %g %Y" -- "$1" || exit 1; [ -L "$1" ] && readlink -- "$1"; exit 0';

/** Reads what STAT_SCRIPT printed. */
export function parseStat(out: string): FileStat | undefined {
  const nl = out.indexOf('\n');
  const head = (nl < 0 ? out : out.slice(0, nl)).trim().split(' ');
  if (head.length !== 5) return undefined;
  const raw = Number.parseInt(head[0]!, 16);
  const [size, uid, gid, mtime] = head.slice(1).map(Number) as [number, number, number, number];
  if ([raw, size, uid, gid, mtime].some((n) => !Number.isFinite(n))) return undefined;
  const format = raw & 0o170000;
  const type =
    format === 0o100000 ? 'file' : format === 0o040000 ? 'directory' : format === 0o120000 ? 'symlink' : 'other';
  const st: FileStat = { type, size, mode: raw & 0o7777, uid, gid, mtime: new Date(mtime * 1000) };
  if (type === 'symlink') st.linkTarget = out.slice(nl + 1).replace(/\n$/, '');
  return st;
}

/**
 * Turns what the LXD client threw into the SDK's error for `op` on `path`:
 * 404 → NotFoundError, other API errors → ExecenvError EXEC_FAILED, a broken
 * connection → TransportError; ExecenvErrors get the context they lack.
 */
export function lxdError(err: unknown, context: ErrorContext & { op: string }, path: string, field = 'path'): unknown {
  if (err instanceof ExecenvError) return withContext(err, context);
  const ctx = { ...context, cause: err };
  if (err instanceof LxdConnectionError)
    return new TransportError(`execenv: ${context.op} ${path}: lost the connection to LXD: ${err.message}`, ctx);
  if (err instanceof LxdApiError) {
    if (err.status === 404 || /no such file|not found/i.test(err.message)) return new NotFoundError(path, ctx);
    if (err.status === 400 && /is a directory|not a directory|exists/i.test(err.message))
      return new InvalidSpecError(field, `${path}: ${err.message}`, ctx);
    return new ExecenvError(
      'EXEC_FAILED',
      `execenv: ${context.op} ${path} in ${context.envId}: LXD said ${err.message}`,
      ctx,
    );
  }
  if (err instanceof Error && !(err instanceof ExecenvError))
    return new TransportError(`execenv: ${context.op} ${path} in ${context.envId}: ${err.message}`, ctx);
  return err;
}
