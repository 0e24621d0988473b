import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
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
import { leaseGc, leaseList, openWithLease } from '../driver/open-environment.js';
import { BaseEnvironment } from '../environment-base.js';
import { AbortedError, NotFoundError } from '../errors.js';
import { emit } from '../events.js';
import { checkResult, execResult } from '../exec-result.js';
import { extractArchive } from '../files/extract.js';
import { packTree } from '../files/pack.js';
import { hostUndo } from '../lifecycle/host-undo.js';
import { type Lease, newEnvironmentId } from '../lifecycle/lease.js';
import { processStartTime } from '../lifecycle/owner.js';
import { defaultStateDir } from '../lifecycle/state-dir.js';
import { throwIfAborted } from '../process-exec.js';
import { hostRunner } from '../runner.js';
import { type EnvSpec, type MountSpec, validateSpec } from '../spec.js';
import { extractToFake, packFake } from './fake-archive.js';
import { FAKE_BUILTINS } from './fake-commands.js';
import { FakeFileSystem } from './fake-filesystem.js';
import { FAKE_UTILITIES } from './fake-utilities.js';

/**
 * What a fake command sees.
 *
 * @example
 * ```ts
 * import { type FakeCommandContext, FakeDriver } from '@execenv/core/testing';
 * // A `make` that needs a Makefile where it runs and leaves its output there.
 * const make = ({ cwd, files, env }: FakeCommandContext) => {
 *   if (!files.readFile(`${cwd}/Makefile`)) return { exitCode: 2, stderr: 'make: no Makefile\n' };
 *   files.writeFile(`${cwd}/app`, new TextEncoder().encode(`built with ${env.CC ?? 'cc'}\n`));
 *   return { stdout: 'done\n' };
 * };
 * const driver = new FakeDriver({ commands: { make } });
 * ```
 */
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
  /** Reads stdin up to and including its first newline (or its end), as `head -n 1` does. */
  stdinLine(): Promise<string>;
  /** The environment's files; commands may read and change them. */
  files: FakeFileSystem;
  /** Aborted when the command is killed or its environment closes; a command that loops should stop then. */
  signal: AbortSignal;
  /** Whether the environment has a command of this name. */
  hasCommand(name: string): boolean;
  /** The host path behind a path inside a mount of spec.mounts, or undefined outside them. */
  hostPathOf(path: string): { path: string; readOnly: boolean } | undefined;
}

/**
 * What a fake command leaves; missing fields mean exit 0 and no output.
 *
 * @example
 * ```ts
 * import { type FakeCommandResult, FakeDriver } from '@execenv/core/testing';
 * // The build is killed, as by the kernel's OOM killer: exitCode null, signal 'SIGKILL'.
 * const oomKilled: FakeCommandResult = { signal: 'SIGKILL', stderr: 'Killed\n' };
 * const driver = new FakeDriver({ commands: { make: () => oomKilled } });
 * ```
 */
export interface FakeCommandResult {
  exitCode?: number;
  signal?: string;
  stdout?: string | Uint8Array;
  stderr?: string | Uint8Array;
}

/**
 * A scripted command of the fake driver, keyed by argv[0].
 *
 * @example
 * ```ts
 * import { type FakeCommand, FakeDriver } from '@execenv/core/testing';
 * // Runs until killed: the exec's timeout or abort, or close.
 * const serve: FakeCommand = ({ signal }) =>
 *   new Promise((resolve) => signal.addEventListener('abort', () => resolve({}), { once: true }));
 * const env = await new FakeDriver({ commands: { serve } }).open({});
 * const r = await env.exec(['serve'], { timeout: 50 }); // r.timedOut: true, r.signal: 'SIGKILL'
 * ```
 */
export type FakeCommand = (ctx: FakeCommandContext) => FakeCommandResult | Promise<FakeCommandResult>;

/**
 * Options of a fake driver.
 *
 * @example
 * ```ts
 * import { FakeDriver, type FakeDriverOptions } from '@execenv/core/testing';
 * const options: FakeDriverOptions = {
 *   files: { '/etc/debian_version': '12.5\n' },
 *   commands: { make: ({ cwd }) => ({ stdout: `built in ${cwd}\n` }) },
 *   utilities: true, // sh, env, id, sleep, ln, mkdir, rm, touch, ...
 *   lacks: ['ln'], // as an image without it
 * };
 * const driver = new FakeDriver(options);
 * ```
 */
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
  /** Add FAKE_UTILITIES (sh for the conformance suite's scripts, env, id, sleep, ln, ...). @default false */
  utilities?: boolean;
  /** Commands the environment's image lacks: removed from the built-ins and utilities. */
  lacks?: string[];
  /**
   * Hold real host state, as a real driver does: a lease under the state
   * directory, a host directory `<stateDir>/fake/<id>` and a host process
   * naming the id, released on close; list() and gc() then work on leases.
   * @default false
   */
  leases?: boolean;
  /**
   * How long each open() takes, in milliseconds, after its `create` event:
   * a signal that fires meanwhile ends the open with ABORTED and leaves
   * nothing, as a real backend's slow start would. @default 0
   */
  openDelayMs?: number;
}

/**
 * What a fake environment holds besides files and commands. @internal
 *
 * @example
 * ```ts
 * import { FakeDriver } from '@execenv/core/testing';
 * // FakeDriver.open fills these from spec.mounts: the fake `touch` writes through to the host directory.
 * const env = await new FakeDriver({ utilities: true }).open({ mounts: [{ source: hostDir, target: '/work' }] });
 * await env.exec(['touch', '/work/stamp']); // creates `${hostDir}/stamp` on the host
 * ```
 */
export interface FakeEnvironmentExtras {
  /** spec.mounts, shown inside as copies and written through by `touch`. */
  mounts?: readonly MountSpec[];
  /** Releases host state on close. */
  release?: () => Promise<void>;
}

const encoder = new TextEncoder();
const bytes = (v: string | Uint8Array | undefined) =>
  typeof v === 'string' ? encoder.encode(v) : (v ?? new Uint8Array());

const BUILTINS: Record<string, FakeCommand> = {
  ...FAKE_BUILTINS,
};

async function firstLine(stdin: ExecOptions['stdin']): Promise<string> {
  if (stdin === undefined || stdin === 'ignore' || typeof stdin === 'string' || stdin instanceof Uint8Array) {
    const text = Buffer.from(bytes(stdin === 'ignore' ? undefined : stdin)).toString();
    const nl = text.indexOf('\n');
    return nl < 0 ? text : text.slice(0, nl + 1);
  }
  let text = '';
  for await (const c of stdin) {
    text += Buffer.from(c as Uint8Array).toString();
    const nl = text.indexOf('\n');
    if (nl >= 0) return text.slice(0, nl + 1);
  }
  return text;
}

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
 *
 * @example
 * ```ts
 * import { FakeDriver, type FakeEnvironment } from '@execenv/core/testing';
 * const env: FakeEnvironment = await new FakeDriver().open({});
 * try {
 *   await deploy(env); // the code under test
 *   expect(env.calls.map((c) => c.argv)).toEqual([['true']]);
 *   expect(env.files.stat('/srv/app.conf')?.mode).toBe(0o600);
 * } finally {
 *   await env.close();
 * }
 * ```
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
  readonly #extras: FakeEnvironmentExtras;

  /** @internal created by FakeDriver.open */
  constructor(
    init: { id: string; driver: string; capabilities: Capability[]; onEvent?: OpenOptions['onEvent'] },
    commands: Record<string, FakeCommand>,
    files: FakeFileSystem,
    env: Record<string, string>,
    onClose: () => void,
    extras: FakeEnvironmentExtras = {},
  ) {
    super({ ...init, closeOnSignal: false });
    this.#commands = commands;
    this.files = files;
    this.#env = env;
    this.#onClose = onClose;
    this.#extras = extras;
  }

  /** The host path behind a path inside one of spec.mounts. */
  #hostPathOf(path: string): { path: string; readOnly: boolean } | undefined {
    const p = posix.normalize(path);
    for (const m of this.#extras.mounts ?? [])
      if (p === m.target || p.startsWith(`${m.target}/`))
        return { path: join(m.source, posix.relative(m.target, p)), readOnly: m.readOnly === true };
    return undefined;
  }

  protected override doExec(argv: string[], opts: ExecOptions): Promise<ExecResult> {
    return this.#run(argv, opts, new AbortController());
  }

  /**
   * Runs a command; aborting `stop` kills it, as the result then says
   * (SIGKILL). Its timeout and abort signal kill it the same way.
   */
  async #run(argv: string[], opts: ExecOptions, stop: AbortController): Promise<ExecResult> {
    this.calls.push({ argv, opts });
    this.#running.add(stop);
    let timedOut = false;
    const timer =
      opts.timeout !== undefined
        ? setTimeout(() => {
            timedOut = true;
            stop.abort();
          }, opts.timeout)
        : undefined;
    const onAbort = () => stop.abort();
    opts.signal?.addEventListener('abort', onAbort);
    const started = performance.now();
    const command = this.#commands[argv[0]!];
    const ctx: FakeCommandContext = {
      argv,
      env: { PATH: '/usr/bin:/bin', ...this.#env, ...opts.env },
      cwd: opts.cwd ?? '/',
      user: opts.user ?? 'root',
      stdin: () => collect(opts.stdin),
      stdinLine: () => firstLine(opts.stdin),
      files: this.files,
      signal: stop.signal,
      hasCommand: (name) => typeof this.#commands[name] === 'function',
      hostPathOf: (path) => this.#hostPathOf(path),
    };
    let r: FakeCommandResult;
    try {
      // A killed command ends at once, whatever its function still waits for (a stdin that never closes).
      const killed = new Promise<FakeCommandResult>((resolve) => {
        if (stop.signal.aborted) resolve({ signal: 'SIGKILL' });
        stop.signal.addEventListener('abort', () => resolve({ signal: 'SIGKILL' }), { once: true });
      });
      r = command
        ? await Promise.race([Promise.resolve(command(ctx)), killed])
        : { exitCode: 127, stderr: `fake: ${argv[0]}: command not found\n` };
    } finally {
      this.#running.delete(stop);
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
    }
    throwIfAborted(opts.signal, argv, this.context('exec'));
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
      timedOut,
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
    if (typeof src === 'string') {
      const st = await stat(src).catch(() => undefined);
      if (!st) throw new NotFoundError(src, { driver: this.driver, op: 'push' });
      if (st.isDirectory()) {
        await extractToFake(packTree('/', src), this.files, dest);
        return;
      }
      this.files.writeFile(dest, await readFile(src), { mode: st.mode & 0o7777, ...opts });
      return;
    }
    const data = src instanceof Uint8Array ? src : await collect(src);
    const host = this.#hostPathOf(dest);
    if (host && !host.readOnly) await writeFile(host.path, data);
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
    await this.#extras.release?.();
  }
}

/**
 * FakeDriver opens in-memory environments for consumers' unit tests: no
 * host, no processes, commands scripted as functions. With `utilities` and
 * `leases` it keeps to the contract as far as the conformance suite's
 * mutant corpus needs: a small userland, spec.network and spec.mounts, and
 * real host state released on close and collected by gc().
 *
 * @example
 * ```ts
 * import { register } from '@execenv/core';
 * import { FakeDriver } from '@execenv/core/testing';
 * const driver = new FakeDriver({ commands: { make: ({ cwd }) => ({ stdout: `built in ${cwd}\n` }) } });
 * register('fake', driver); // the code under test calls open('fake', spec)
 * await buildProject({ driver: 'fake' });
 * expect(driver.openEnvironments.size).toBe(0); // it closed every environment it opened
 * ```
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
    const aborted = () =>
      new AbortedError(`execenv: opening a ${this.name} environment was aborted`, {
        driver: this.name,
        op: 'open',
        cause: opts.signal?.reason,
      });
    if (opts.signal?.aborted) throw aborted();
    if (this.#options.leases)
      return openWithLease({
        driver: this.name,
        spec: checked,
        opts,
        undo: hostUndo(hostRunner()),
        create: async ({ id, lease, stateDir }) => {
          await this.#holdHostState(id, lease, stateDir);
          await this.#starting(opts.signal, aborted);
          return this.#environment(id, checked, opts, () => lease.release(hostUndo(hostRunner())));
        },
      });
    const id = newEnvironmentId();
    const started = performance.now();
    emit(opts.onEvent, { type: 'create', envId: id, driver: this.name });
    await this.#starting(opts.signal, aborted);
    const env = await this.#environment(id, checked, opts);
    if (opts.signal?.aborted) {
      await env.close();
      throw aborted();
    }
    emit(opts.onEvent, {
      type: 'ready',
      envId: id,
      driver: this.name,
      durationMs: Math.round(performance.now() - started),
    });
    return env;
  }

  /** Waits openDelayMs, as a backend starting up; rejects with `aborted()` when the signal fires first. */
  #starting(signal: AbortSignal | undefined, aborted: () => Error): Promise<void> {
    const ms = this.#options.openDelayMs ?? 0;
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(aborted());
      if (ms <= 0) return resolve();
      const onAbort = () => {
        clearTimeout(timer);
        reject(aborted());
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** A host directory and a host process naming the id, each recorded in the lease right after it exists. */
  async #holdHostState(id: string, lease: Lease, stateDir: string): Promise<void> {
    const dir = join(stateDir, 'fake', id);
    await lease.add({ kind: 'dir', path: dir });
    await mkdir(dir, { recursive: true });
    const helper = hostRunner().spawn([process.execPath, '-e', 'setInterval(() => {}, 1 << 30)', id], {
      detached: true,
      stdin: 'ignore',
      stdout: 'ignore',
      stderr: 'ignore',
    });
    helper.exited.catch(() => {});
    const pid = helper.pid;
    const startTime = pid === undefined ? undefined : await processStartTime(pid);
    if (pid !== undefined && startTime !== undefined) await lease.add({ kind: 'process', pid, startTime });
  }

  /** A new environment: the driver's files, spec.mounts copied in, /proc/net/dev for spec.network. */
  async #environment(
    id: string,
    spec: Readonly<EnvSpec>,
    opts: OpenOptions,
    release?: () => Promise<void>,
  ): Promise<FakeEnvironment> {
    const files = new FakeFileSystem();
    for (const [path, data] of Object.entries(this.#options.files ?? {})) files.writeFile(path, bytes(data));
    if (this.#options.utilities) {
      files.mkdir('/tmp', 0o1777);
      const network = spec.network ?? 'none';
      files.writeFile('/proc/net/dev', encoder.encode(netDev(network === 'none' ? ['lo'] : ['lo', 'eth0'])));
    }
    for (const m of spec.mounts ?? []) await copyIn(m.source, m.target, files);
    const env: FakeEnvironment = new FakeEnvironment(
      {
        id,
        driver: this.name,
        capabilities: this.#options.capabilities ?? ['isolation-container', 'root'],
        onEvent: opts.onEvent,
      },
      withoutCommands(
        { ...BUILTINS, ...(this.#options.utilities ? FAKE_UTILITIES : {}), ...this.#options.commands },
        this.#options.lacks ?? [],
      ),
      files,
      { ...spec.env },
      () => this.openEnvironments.delete(env),
      { mounts: spec.mounts, release },
    );
    this.openEnvironments.add(env);
    return env;
  }

  async list(opts: { stateDir?: string } = {}): Promise<EnvironmentInfo[]> {
    if (this.#options.leases) return leaseList(opts.stateDir ?? defaultStateDir(), this.name);
    return [...this.openEnvironments].map((e) => ({ id: e.id, driver: this.name, ownerAlive: true, resources: [] }));
  }

  async gc(opts: { stateDir?: string } = {}): Promise<GcReport> {
    if (this.#options.leases) return leaseGc(opts.stateDir ?? defaultStateDir(), this.name, hostUndo(hostRunner()));
    return { removed: [], errors: [] };
  }
}

/** /proc/net/dev listing these interfaces. */
function netDev(interfaces: string[]): string {
  return [
    'Inter-|   Receive                                                |  Transmit',
    ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed',
    ...interfaces.map((i) => `${i.padStart(6)}: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0`),
    '',
  ].join('\n');
}

/** Copies a host tree into the fake's files at `target`, keeping modes. */
async function copyIn(source: string, target: string, files: FakeFileSystem): Promise<void> {
  files.mkdir(target);
  for (const e of await readdir(source, { withFileTypes: true })) {
    const from = join(source, e.name);
    const to = posix.join(target, e.name);
    if (e.isDirectory()) await copyIn(from, to, files);
    else if (e.isFile()) files.writeFile(to, await readFile(from), { mode: (await stat(from)).mode & 0o7777 });
  }
}

function withoutCommands(commands: Record<string, FakeCommand>, lacks: readonly string[]): Record<string, FakeCommand> {
  return Object.fromEntries(Object.entries(commands).filter(([name]) => !lacks.includes(name)));
}
