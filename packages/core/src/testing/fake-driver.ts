import { readFile } from 'node:fs/promises';
import { PassThrough, type Readable } from 'node:stream';
import type {
  Availability,
  Capability,
  Driver,
  EnvironmentInfo,
  ExecOptions,
  ExecProcess,
  ExecResult,
  FileOptions,
  FileStat,
  GcReport,
  OpenOptions,
} from '../contract.js';
import { BaseEnvironment } from '../environment-base.js';
import { NotFoundError } from '../errors.js';
import { checkResult, execResult } from '../exec-result.js';
import { extractArchive } from '../files/extract.js';
import { newEnvironmentId } from '../lifecycle/lease.js';
import { type EnvSpec, validateSpec } from '../spec.js';
import { extractToFake, packFake } from './fake-archive.js';
import { FAKE_BUILTINS } from './fake-commands.js';
import { FakeFileSystem } from './fake-filesystem.js';

/** What a fake command sees. */
export interface FakeCommandContext {
  /** The argv that was run. */
  argv: readonly string[];
  /** The whole environment of the command (PATH, spec env, exec env). */
  env: Readonly<Record<string, string>>;
  /** Working directory. */
  cwd: string;
  /** The user option, or `root`. */
  user: string;
  /** Reads stdin to its end; commands that never call it never wait for it. */
  stdin(): Promise<Uint8Array>;
  /** The environment's files; commands may read and change them. */
  files: FakeFileSystem;
  /** Aborted when the command is killed or its environment closes; a command that loops should stop then. */
  signal: AbortSignal;
}

/** What a fake command leaves; missing fields mean exit 0 and no output. */
export interface FakeCommandResult {
  exitCode?: number;
  signal?: string;
  stdout?: string | Uint8Array;
  stderr?: string | Uint8Array;
}

/** A scripted command of the fake driver, keyed by argv[0]. */
export type FakeCommand = (ctx: FakeCommandContext) => FakeCommandResult | Promise<FakeCommandResult>;

/** Options of a fake driver. */
export interface FakeDriverOptions {
  /** Registry name. @default 'fake' */
  name?: string;
  /** Commands by argv[0], in addition to the built-ins `true`, `false`, `echo` and `cat`. */
  commands?: Record<string, FakeCommand>;
  /** Declared capabilities. @default ['isolation-container', 'root'] */
  capabilities?: Capability[];
  /** Files every new environment starts with, by absolute path. */
  files?: Record<string, string | Uint8Array>;
  /** What probe() reports as unavailable, when set. */
  unavailable?: string;
}

const encoder = new TextEncoder();
const bytes = (v: string | Uint8Array | undefined) =>
  typeof v === 'string' ? encoder.encode(v) : (v ?? new Uint8Array());

const BUILTINS: Record<string, FakeCommand> = {
  ...FAKE_BUILTINS,
};

async function collect(stdin: ExecOptions['stdin']): Promise<Uint8Array> {
  if (stdin === undefined || stdin === 'ignore') return new Uint8Array();
  if (typeof stdin === 'string' || stdin instanceof Uint8Array) return bytes(stdin);
  const chunks: Buffer[] = [];
  for await (const c of stdin) chunks.push(Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks);
}

/**
 * FakeEnvironment is an in-memory environment: files live in a map and
 * commands are functions. It records every exec for assertions.
 */
export class FakeEnvironment extends BaseEnvironment {
  /** The environment's files. */
  readonly files: FakeFileSystem;
  /** Every exec and spawn, in order. */
  readonly calls: { argv: readonly string[]; opts: ExecOptions }[] = [];
  readonly #commands: Record<string, FakeCommand>;
  readonly #env: Record<string, string>;
  readonly #onClose: () => void;
  readonly #running = new Set<AbortController>();

  /** @internal created by FakeDriver.open */
  constructor(
    init: { id: string; driver: string; capabilities: Capability[]; onEvent?: OpenOptions['onEvent'] },
    commands: Record<string, FakeCommand>,
    files: FakeFileSystem,
    env: Record<string, string>,
    onClose: () => void,
  ) {
    super({ ...init, closeOnSignal: false });
    this.#commands = commands;
    this.files = files;
    this.#env = env;
    this.#onClose = onClose;
  }

  protected override doExec(argv: string[], opts: ExecOptions): Promise<ExecResult> {
    return this.#run(argv, opts, new AbortController());
  }

  /** Runs a command; aborting `stop` kills it, as the result then says (SIGKILL). */
  async #run(argv: string[], opts: ExecOptions, stop: AbortController): Promise<ExecResult> {
    this.calls.push({ argv, opts });
    this.#running.add(stop);
    const started = performance.now();
    const command = this.#commands[argv[0]!];
    const ctx: FakeCommandContext = {
      argv,
      env: { PATH: '/usr/bin:/bin', ...this.#env, ...opts.env },
      cwd: opts.cwd ?? '/',
      user: opts.user ?? 'root',
      stdin: () => collect(opts.stdin),
      files: this.files,
      signal: stop.signal,
    };
    let r: FakeCommandResult;
    try {
      r = command ? await command(ctx) : { exitCode: 127, stderr: `fake: ${argv[0]}: command not found\n` };
    } finally {
      this.#running.delete(stop);
    }
    if (stop.signal.aborted) r = { ...r, signal: 'SIGKILL' };
    const stdout = bytes(r.stdout);
    const stderr = bytes(r.stderr);
    if (stdout.length) opts.onStdout?.(stdout);
    if (stderr.length) opts.onStderr?.(stderr);
    const result = execResult({
      argv,
      exitCode: r.signal ? null : (r.exitCode ?? 0),
      signal: r.signal ?? null,
      stdoutBytes: opts.buffer === false ? new Uint8Array() : stdout,
      stderrBytes: opts.buffer === false ? new Uint8Array() : stderr,
      timedOut: false,
      durationMs: Math.round(performance.now() - started),
    });
    return checkResult(result, opts, { envId: this.id, driver: this.driver });
  }

  protected override doSpawn(argv: string[], opts: ExecOptions): ExecProcess {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const stdin = opts.stdin === undefined ? new PassThrough() : null;
    const stop = new AbortController();
    const result = this.#run(
      argv,
      {
        ...opts,
        stdin: stdin ?? opts.stdin,
        buffer: false,
        onStdout: (c) => stdout.write(c),
        onStderr: (c) => stderr.write(c),
      },
      stop,
    ).finally(() => {
      stdout.end();
      stderr.end();
    });
    result.catch(() => {});
    return {
      stdin,
      stdout,
      stderr,
      result,
      kill: () => stop.abort(),
      async [Symbol.asyncDispose]() {
        await result.catch(() => {});
      },
    };
  }

  protected override async doPush(src: string | Uint8Array | Readable, dest: string, opts: FileOptions): Promise<void> {
    const data = typeof src === 'string' ? await readFile(src) : src instanceof Uint8Array ? src : await collect(src);
    this.files.writeFile(dest, data, opts);
  }

  protected override async doPull(src: string, dest: string): Promise<void> {
    if (!this.files.stat(src)) throw new NotFoundError(src, { envId: this.id, driver: this.driver, op: 'pull' });
    await extractArchive(this.doPullArchive(src), { root: dest, destDir: '/', owners: false });
  }

  protected override async doPushArchive(tar: Readable, destDir: string): Promise<void> {
    await extractToFake(tar, this.files, destDir);
  }

  protected override doPullArchive(srcPath: string): Readable {
    return packFake(this.files, srcPath, { envId: this.id, driver: this.driver });
  }

  protected override async doStat(path: string): Promise<FileStat | null> {
    return this.files.stat(path);
  }

  protected override async doReadDir(path: string): Promise<string[]> {
    const names = this.files.readDir(path);
    if (!names) throw new NotFoundError(path, { envId: this.id, driver: this.driver, op: 'readDir' });
    return names;
  }

  protected override async destroy(): Promise<void> {
    for (const stop of this.#running) stop.abort();
    this.#onClose();
  }
}

/**
 * FakeDriver opens in-memory environments for consumers' unit tests: no
 * host, no processes, commands scripted as functions.
 */
export class FakeDriver implements Driver {
  readonly name: string;
  /** Environments opened and not closed yet. */
  readonly openEnvironments = new Set<FakeEnvironment>();
  readonly #options: FakeDriverOptions;

  constructor(options: FakeDriverOptions = {}) {
    this.name = options.name ?? 'fake';
    this.#options = options;
  }

  async probe(): Promise<Availability> {
    const capabilities = this.#options.capabilities ?? ['isolation-container', 'root'];
    return this.#options.unavailable
      ? { available: false, reason: this.#options.unavailable, capabilities }
      : { available: true, version: 'fake', capabilities };
  }

  async open(spec: EnvSpec, opts: OpenOptions = {}): Promise<FakeEnvironment> {
    const checked = validateSpec(spec, this.name);
    const files = new FakeFileSystem();
    for (const [path, data] of Object.entries(this.#options.files ?? {})) files.writeFile(path, bytes(data));
    const env: FakeEnvironment = new FakeEnvironment(
      {
        id: newEnvironmentId(),
        driver: this.name,
        capabilities: this.#options.capabilities ?? ['isolation-container', 'root'],
        onEvent: opts.onEvent,
      },
      { ...BUILTINS, ...this.#options.commands },
      files,
      { ...checked.env },
      () => this.openEnvironments.delete(env),
    );
    this.openEnvironments.add(env);
    return env;
  }

  async list(): Promise<EnvironmentInfo[]> {
    return [...this.openEnvironments].map((e) => ({ id: e.id, driver: this.name, ownerAlive: true, resources: [] }));
  }

  async gc(): Promise<GcReport> {
    return { removed: [], errors: [] };
  }
}
