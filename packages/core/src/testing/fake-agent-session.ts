import { posix } from 'node:path';
import { PassThrough, Readable, type Writable } from 'node:stream';
import type { AgentExecRequest, AgentFileStat, AgentSessionLike, AgentWriteOptions } from '../driver/agent-session.js';
import { ExecenvError } from '../errors.js';
import type { RunningProcess } from '../runner.js';
import { extractToFake, packFake } from './fake-archive.js';
import { FAKE_BUILTINS } from './fake-commands.js';
import { FakeFileSystem } from './fake-filesystem.js';

/**
 * Codes an agent operation fails with (see AgentSessionLike).
 *
 * @example
 * ```ts
 * import { FakeAgentSession, type FakeAgentErrorCode, fakeAgentError } from '@execenv/core/testing';
 * const code: FakeAgentErrorCode = 'UNSAFE_PATH';
 * const session = new FakeAgentSession({
 *   fail: (op, path) => (op === 'tarIn' ? fakeAgentError(code, `${path}: unsafe entry`) : undefined),
 * });
 * ```
 */
export type FakeAgentErrorCode = 'NOT_FOUND' | 'UNSAFE_PATH' | 'CONFLICT' | 'INVALID' | 'IO';

/**
 * fakeAgentError makes an error shaped as an agent's: named `AgentError`, with a `code`.
 *
 * @example
 * ```ts
 * import { FakeAgentSession, fakeAgentError } from '@execenv/core/testing';
 * // Every write under /ro fails as a real agent's would; AgentEnvironment makes it EXEC_FAILED.
 * const readOnly = (op: string, path: string) => op === 'writeFile' && path.startsWith('/ro/');
 * const session = new FakeAgentSession({
 *   fail: (op, path) => (readOnly(op, path) ? fakeAgentError('IO', 'Read-only file system') : undefined),
 * });
 * ```
 */
export function fakeAgentError(code: FakeAgentErrorCode, message: string): Error & { code: FakeAgentErrorCode } {
  const err = new Error(message) as Error & { code: FakeAgentErrorCode };
  err.name = 'AgentError';
  err.code = code;
  return err;
}

/**
 * fakeAgentTransportError makes the error of a lost agent connection: named `AgentTransportError`.
 *
 * @example
 * ```ts
 * import { FakeAgentSession, fakeAgentTransportError } from '@execenv/core/testing';
 * const session = new FakeAgentSession({ fail: (op) => (op === 'readDir' ? fakeAgentTransportError() : undefined) });
 * const env = new FooEnvironment({ ...init, session }); // the AgentEnvironment of the driver under test
 * await expect(env.readDir('/var/log')).rejects.toMatchObject({ code: 'TRANSPORT' });
 * ```
 */
export function fakeAgentTransportError(message = 'the agent connection was lost'): Error {
  const err = new Error(message);
  err.name = 'AgentTransportError';
  return err;
}

/**
 * What a scripted agent command sees.
 *
 * @example
 * ```ts
 * import { type FakeAgentCommandContext, FakeAgentSession } from '@execenv/core/testing';
 * // `id -u` answers with the uid the environment resolved for the exec.
 * const id = ({ uid }: FakeAgentCommandContext) => ({ stdout: `${uid}\n` });
 * const session = new FakeAgentSession({ commands: { id } });
 * ```
 */
export interface FakeAgentCommandContext extends AgentExecRequest {
  /** Reads stdin to its end; commands that never call it never wait for it. */
  stdin(): Promise<Uint8Array>;
  /** Standard output, for commands that stream. */
  stdout: Writable;
  /** Standard error, for commands that stream. */
  stderr: Writable;
  /** Aborted when the command's tree is killed. */
  signal: AbortSignal;
  /** The environment's files. */
  files: FakeFileSystem;
}

/**
 * What a scripted agent command leaves; missing fields mean exit 0 and no more output.
 *
 * @example
 * ```ts
 * import { type FakeAgentCommandResult, FakeAgentSession } from '@execenv/core/testing';
 * const crashed: FakeAgentCommandResult = { signal: 'SIGSEGV', stderr: 'Segmentation fault\n' };
 * const session = new FakeAgentSession({ commands: { make: () => crashed, grep: () => ({ exitCode: 1 }) } });
 * ```
 */
export interface FakeAgentCommandResult {
  exitCode?: number;
  signal?: string;
  stdout?: string | Uint8Array;
  stderr?: string | Uint8Array;
}

/**
 * A scripted command, keyed by argv[0].
 *
 * @example
 * ```ts
 * import { type FakeAgentCommand, FakeAgentSession } from '@execenv/core/testing';
 * // Copies stdin to the file named by argv[1], as `tee` would.
 * const tee: FakeAgentCommand = async ({ argv, stdin, files }) => {
 *   const data = await stdin();
 *   files.writeFile(argv[1]!, data);
 *   return { stdout: data };
 * };
 * const session = new FakeAgentSession({ commands: { tee } });
 * ```
 */
export type FakeAgentCommand = (
  ctx: FakeAgentCommandContext,
) => FakeAgentCommandResult | undefined | Promise<FakeAgentCommandResult | undefined>;

/**
 * Options of a FakeAgentSession.
 *
 * @example
 * ```ts
 * import { FakeAgentSession, type FakeAgentSessionOptions } from '@execenv/core/testing';
 * const options: FakeAgentSessionOptions = {
 *   files: { '/etc/passwd': 'root:x:0:0:root:/root:/bin/sh\n', '/etc/group': 'root:x:0:\n' },
 *   commands: { uname: () => ({ stdout: 'Linux\n' }) },
 * };
 * const session = new FakeAgentSession(options);
 * ```
 */
export interface FakeAgentSessionOptions {
  /** Files the environment starts with, by absolute path. */
  files?: Record<string, string | Uint8Array>;
  /** Commands by argv[0], in addition to the built-ins `true`, `false`, `echo`, `cat` and `sleep` (until killed). */
  commands?: Record<string, FakeAgentCommand>;
  /** Makes an operation fail: return the error for (operation name, path), or undefined to let it run. */
  fail?: (op: keyof AgentSessionLike, path: string) => Error | undefined;
}

const encoder = new TextEncoder();
const bytes = (v: string | Uint8Array | undefined) =>
  typeof v === 'string' ? encoder.encode(v) : (v ?? new Uint8Array());

async function readAll(stream: AsyncIterable<unknown>): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks);
}

const BUILTINS: Record<string, FakeAgentCommand> = {
  ...FAKE_BUILTINS,
  sleep: ({ signal }) => new Promise((resolve) => signal.addEventListener('abort', () => resolve({}), { once: true })),
};

/**
 * FakeAgentSession is an in-memory agent for tests of agent-backed
 * environments: files live in a FakeFileSystem, commands are functions, and
 * errors are shaped as a real agent's (`AgentError` with a code,
 * `AgentTransportError` once closed). It records every exec request.
 *
 * @example
 * ```ts
 * import { AgentEnvironment } from '@execenv/core/driver';
 * import { FakeAgentSession } from '@execenv/core/testing';
 * const session = new FakeAgentSession({ files: { '/etc/os-release': 'ID=debian\n' } });
 * const init = { id: 'execenv-test0000000', driver: 'foo', capabilities: ['isolation-container' as const] };
 * const env = new AgentEnvironment({ ...init, closeOnSignal: false, session, destroy: async () => {} });
 * expect((await env.exec(['cat', '/etc/os-release'])).stdout).toBe('ID=debian\n');
 * expect(session.execs[0]?.argv).toEqual(['cat', '/etc/os-release']);
 * ```
 */
export class FakeAgentSession implements AgentSessionLike {
  /** The environment's files. */
  readonly files = new FakeFileSystem();
  /** Every exec request, in order. */
  readonly execs: AgentExecRequest[] = [];
  /** Every operation, as `name path`, in order. */
  readonly ops: string[] = [];
  /** Commands started and not ended yet. */
  readonly running = new Set<RunningProcess>();
  readonly #commands: Record<string, FakeAgentCommand>;
  readonly #fail: FakeAgentSessionOptions['fail'];
  #closed = false;

  constructor(options: FakeAgentSessionOptions = {}) {
    for (const [path, data] of Object.entries(options.files ?? {})) this.files.writeFile(path, bytes(data));
    this.#commands = { ...BUILTINS, ...options.commands };
    this.#fail = options.fail;
  }

  /** Whether close() was called. */
  get closed(): boolean {
    return this.#closed;
  }

  #check(op: keyof AgentSessionLike, path: string): void {
    this.ops.push(`${op} ${path}`);
    if (this.#closed) throw fakeAgentTransportError('the agent session is closed');
    const err = this.#fail?.(op, path);
    if (err) throw err;
  }

  /** Follows symlinks (final one included) inside the fake tree, as the agent resolves paths. */
  #resolve(path: string): string {
    let p = posix.normalize(path);
    for (let hops = 0; hops < 40; hops++) {
      const st = this.files.stat(p);
      if (st?.type !== 'symlink') return p;
      p = posix.resolve(posix.dirname(p), st.linkTarget ?? '');
    }
    throw fakeAgentError('IO', `${path}: too many levels of symbolic links`);
  }

  exec(request: AgentExecRequest): RunningProcess {
    this.execs.push(structuredClone({ ...request, env: { ...request.env } }) as AgentExecRequest);
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const killer = new AbortController();
    let killedBy: string | undefined;
    const run = async (): Promise<{ exitCode: number | null; signal: string | null }> => {
      this.#check('exec', request.cwd);
      if (this.files.stat(this.#resolve(request.cwd))?.type !== 'directory')
        throw fakeAgentError('NOT_FOUND', `${request.cwd}: no such directory`);
      const command = this.#commands[request.argv[0]!];
      if (!command) {
        stderr.end(`execenv: cannot execute ${request.argv[0]}: No such file or directory\n`);
        stdout.end();
        return { exitCode: 127, signal: null };
      }
      const killed = new Promise<undefined>((resolve) =>
        killer.signal.addEventListener('abort', () => resolve(undefined), { once: true }),
      );
      const r = await Promise.race([
        command({
          ...request,
          stdin: () => readAll(stdin),
          stdout,
          stderr,
          signal: killer.signal,
          files: this.files,
        }),
        killed,
      ]);
      if (killedBy) {
        stdout.end();
        stderr.end();
        return { exitCode: null, signal: killedBy };
      }
      stdout.end(r?.stdout === undefined ? undefined : bytes(r.stdout));
      stderr.end(r?.stderr === undefined ? undefined : bytes(r.stderr));
      return r?.signal ? { exitCode: null, signal: r.signal } : { exitCode: r?.exitCode ?? 0, signal: null };
    };
    const exited = run().catch((err: unknown) => {
      stdout.end();
      stderr.end();
      throw err;
    });
    const proc: RunningProcess = {
      pid: undefined,
      stdin,
      stdout,
      stderr,
      kill: (signal = 'SIGKILL') => {
        if (killedBy || !this.running.has(proc)) return false;
        killedBy = signal === 'SIGKILL' || signal === undefined ? 'SIGKILL' : signal;
        killer.abort();
        return true;
      },
      exited,
    };
    this.running.add(proc);
    exited.then(
      () => this.running.delete(proc),
      () => this.running.delete(proc),
    );
    return proc;
  }

  async writeFile(path: string, content: Readable, opts: AgentWriteOptions): Promise<void> {
    this.#check('writeFile', path);
    const target = this.#resolve(path);
    if (this.files.stat(target)?.type === 'directory') {
      content.destroy();
      throw fakeAgentError('CONFLICT', `${path} is a directory`);
    }
    const data = await readAll(content);
    this.files.writeFile(target, data, opts);
  }

  readFile(path: string): { content: Readable; done: Promise<{ mode: number; size: number }> } {
    const content = new PassThrough();
    const done = (async () => {
      try {
        this.#check('readFile', path);
        const target = this.#resolve(path);
        const st = this.files.stat(target);
        if (!st) throw fakeAgentError('NOT_FOUND', `${path}: no such file`);
        if (st.type !== 'file') throw fakeAgentError('INVALID', `${path} is not a file`);
        content.end(Buffer.from(this.files.readFile(target)!));
        return { mode: st.mode, size: st.size };
      } catch (err) {
        content.destroy(err as Error);
        throw err;
      }
    })();
    done.catch(() => {});
    return { content, done };
  }

  async stat(path: string, follow: boolean): Promise<AgentFileStat | null> {
    this.#check('stat', path);
    const st = this.files.stat(follow ? this.#resolve(path) : path);
    if (!st) return null;
    const { linkTarget, ...rest } = st;
    return { ...rest, ...(linkTarget !== undefined ? { target: linkTarget } : {}) };
  }

  async readDir(path: string): Promise<string[]> {
    this.#check('readDir', path);
    const target = this.#resolve(path);
    if (!this.files.stat(target)) throw fakeAgentError('NOT_FOUND', `${path}: no such directory`);
    const names = this.files.readDir(target);
    if (!names) throw fakeAgentError('INVALID', `${path} is not a directory`);
    return names;
  }

  async mkdir(path: string, mode: number): Promise<void> {
    this.#check('mkdir', path);
    this.files.mkdir(path, mode);
  }

  async remove(path: string): Promise<void> {
    this.#check('remove', path);
    this.files.remove(path);
  }

  tarOut(path: string): Readable {
    try {
      this.#check('tarOut', path);
      const target = this.#resolve(path);
      if (!this.files.stat(target)) throw fakeAgentError('NOT_FOUND', `${path}: no such file or directory`);
      return Readable.from(packFake(this.files, target, {}));
    } catch (err) {
      const s = new Readable({ read() {} });
      queueMicrotask(() => s.destroy(err as Error));
      return s;
    }
  }

  async tarIn(destDir: string, tar: Readable): Promise<{ entries: number; bytes: number }> {
    this.#check('tarIn', destDir);
    try {
      return await extractToFake(tar, this.files, this.#resolve(destDir));
    } catch (err) {
      tar.destroy();
      if (err instanceof ExecenvError && err.code === 'UNSAFE_PATH') throw fakeAgentError('UNSAFE_PATH', err.message);
      throw fakeAgentError('IO', (err as Error).message);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const proc of this.running) proc.kill('SIGKILL');
  }
}
