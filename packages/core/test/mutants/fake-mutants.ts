/**
 * The mutant corpus: one-bug variants of the fake driver, each naming the
 * conformance check that must catch it. Every check comes with the mutant it
 * kills; a mutant that survives, or is caught only by a check's deadline,
 * fails the unit tests.
 */

import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { extract as tarExtract, pack as tarPack } from 'tar-stream';
import type { CheckName, ConformanceOptions } from '../../src/conformance/context.js';
import { AbortedError, type EnvSpec, type ExecOptions, type ExecProcess, type OpenOptions } from '../../src/index.js';
import { hostRunner } from '../../src/runner.js';
import {
  FakeDriver,
  type FakeDriverOptions,
  type FakeEnvironment,
  type FakeFileSystem,
} from '../../src/testing/index.js';

/** One mutant: a driver with one bug and the check that must catch it. */
export interface Mutant {
  /** Short kebab-case name. */
  name: string;
  /** The bug, as a driver author would make it. */
  bug: string;
  /** The check that must catch it. */
  caughtBy: CheckName;
  /** Makes the mutant driver. */
  driver(): FakeDriver;
  /** Hold host state (leases, host directory and process), as real drivers do. */
  leases?: boolean;
  /** Options of the unmutated fake that passes the same check (a slow open, for one). */
  fake?: FakeDriverOptions;
  /** Conformance options the check runs with, for the mutant and the unmutated fake alike. */
  conformance?: Pick<ConformanceOptions, 'visibleOnHost'>;
}

type Mutate = (env: FakeEnvironment, spec: EnvSpec, opts: OpenOptions) => Promise<void> | void;

/** The fake every mutant starts from: the conformance utilities, optionally leases. */
export function baseDriver(options: FakeDriverOptions = {}): FakeDriver {
  return new FakeDriver({ utilities: true, ...options });
}

/** A fake whose opened environments are changed by `mutate`, as a broken driver would be. */
export class MutantDriver extends FakeDriver {
  readonly #mutate: Mutate;
  readonly #spec: (spec: EnvSpec, opts: OpenOptions) => [EnvSpec, OpenOptions];

  constructor(
    mutate: Mutate,
    options: FakeDriverOptions = {},
    spec: (spec: EnvSpec, opts: OpenOptions) => [EnvSpec, OpenOptions] = (s, o) => [s, o],
  ) {
    super({ utilities: true, ...options });
    this.#mutate = mutate;
    this.#spec = spec;
  }

  override async open(spec: EnvSpec, opts: OpenOptions = {}): Promise<FakeEnvironment> {
    const [s, o] = this.#spec(spec, opts);
    const env = await super.open(s, o);
    await this.#mutate(env, s, o);
    return env;
  }
}

/** The host path a fake path reaches when an absolute symlink on it is followed onto the host. */
export function throughHostLink(files: FakeFileSystem, path: string, finalOnly = false): string | undefined {
  const parts = path.split('/').filter(Boolean);
  for (let i = finalOnly ? parts.length : 1; i <= parts.length; i++) {
    const st = files.stat(`/${parts.slice(0, i).join('/')}`);
    if (st?.type === 'symlink' && st.linkTarget?.startsWith('/')) return posix.join(st.linkTarget, ...parts.slice(i));
  }
  return undefined;
}

/** Rewrites every header of a tar stream with `change`. */
function rewriteTar(tar: Readable, change: (h: Record<string, unknown>) => Record<string, unknown>): Readable {
  const out = tarPack();
  const extractor = tarExtract();
  // A consumer that refuses the archive stops reading: the pipe's errors then have nowhere to go.
  tar.on('error', () => {});
  extractor.on('error', () => {});
  tar.pipe(extractor);
  (async () => {
    for await (const entry of extractor) {
      const chunks: Buffer[] = [];
      for await (const c of entry as AsyncIterable<Buffer>) chunks.push(c);
      const h = change({ ...entry.header });
      // The consumer may have refused the archive already; an entry written then fails on its own.
      if (out.destroyed) break;
      const sink = h.type === 'file' ? out.entry(h as never, Buffer.concat(chunks)) : out.entry(h as never);
      sink.on('error', () => {});
    }
    out.finalize();
  })().catch((err: Error) => out.destroy(err));
  return out as unknown as Readable;
}

/** Host processes mutants start and leave behind; killed when the corpus is done. */
export const strayProcesses: number[] = [];

const closedThen = (env: FakeEnvironment, after: () => Promise<void>) => {
  const close = env.close.bind(env);
  let once: Promise<void> | undefined;
  env.close = () => {
    once ??= close().then(after);
    return once;
  };
};

const afterClose =
  <A extends unknown[], R>(env: FakeEnvironment, real: (...a: A) => R, fake: (...a: A) => R) =>
  (...a: A): R =>
    env.closed ? fake(...a) : real(...a);

const idle = (): ExecProcess => {
  const result = Promise.resolve({
    argv: [],
    exitCode: 0,
    signal: null,
    stdout: '',
    stderr: '',
    stdoutBytes: new Uint8Array(),
    stderrBytes: new Uint8Array(),
    timedOut: false,
    durationMs: 0,
  });
  return {
    stdin: null,
    stdout: new PassThrough().end() as unknown as Readable,
    stderr: new PassThrough().end() as unknown as Readable,
    result,
    kill: () => {},
    [Symbol.asyncDispose]: async () => {},
  };
};

const emptyStream = (): Readable => {
  const p = tarPack();
  p.finalize();
  return p as unknown as Readable;
};

/** The corpus. */
export const MUTANTS: readonly Mutant[] = [
  {
    name: 'host-env-copied-at-open',
    bug: "copies the host's environment once at open() into every command's environment",
    caughtBy: 'env-isolation',
    driver: () =>
      new MutantDriver((env) => {
        const host = Object.fromEntries(
          Object.entries(process.env).filter(
            (e): e is [string, string] => e[1] !== undefined && /^[A-Za-z_][A-Za-z0-9_]*$/.test(e[0]),
          ),
        );
        const exec = env.exec.bind(env);
        env.exec = (argv, opts = {}) => exec(argv, { ...opts, env: { ...host, ...opts.env } });
      }),
  },
  {
    name: 'push-follows-final-host-link',
    bug: 'push follows a final symlink inside onto the host path it names',
    caughtBy: 'host-symlinks',
    driver: () =>
      new MutantDriver((env) => {
        const push = env.push.bind(env);
        env.push = async (src, dest, opts) => {
          const host = throughHostLink(env.files, dest, true);
          if (host && src instanceof Uint8Array) await writeFile(host, src);
          else if (host && typeof src === 'string') await copyFile(src, host);
          else await push(src, dest, opts);
        };
      }),
  },
  {
    name: 'pull-follows-parent-host-link',
    bug: 'pull follows a symlinked parent directory inside onto the host (/tmp/etclink/x, etclink -> /etc)',
    caughtBy: 'host-symlinks',
    driver: () =>
      new MutantDriver((env) => {
        const pull = env.pull.bind(env);
        env.pull = async (src, dest) => {
          const host = throughHostLink(env.files, posix.dirname(src));
          if (host) await copyFile(posix.join(host, posix.basename(src)), dest);
          else await pull(src, dest);
        };
      }),
  },
  {
    name: 'close-leaves-host-directory',
    bug: "close() forgets the environment's host directory while list() no longer shows it",
    caughtBy: 'leaks',
    leases: true,
    driver: () =>
      new MutantDriver(
        (env, _spec, opts) =>
          closedThen(env, async () => {
            await mkdir(join(opts.stateDir!, 'fake', env.id), { recursive: true });
          }),
        { leases: true },
      ),
  },
  {
    name: 'close-leaves-host-process',
    bug: 'close() leaves a host process of the environment running',
    caughtBy: 'leaks',
    leases: true,
    driver: () =>
      new MutantDriver(
        (env) =>
          closedThen(env, async () => {
            const p = hostRunner().spawn([process.execPath, '-e', 'setInterval(() => {}, 1 << 30)', env.id], {
              stdin: 'ignore',
              stdout: 'ignore',
              stderr: 'ignore',
            });
            p.exited.catch(() => {});
            if (p.pid) strayProcesses.push(p.pid);
          }),
        { leases: true },
      ),
  },
  {
    name: 'close-keeps-listing',
    bug: 'close() leaves the environment in list()',
    caughtBy: 'leaks',
    leases: true,
    driver: () => {
      const d = baseDriver({ leases: true });
      const list = d.list.bind(d);
      const seen: string[] = [];
      d.list = async (opts) => {
        for (const e of await list(opts)) if (!seen.includes(e.id)) seen.push(e.id);
        return seen.map((id) => ({ id, driver: 'fake', ownerAlive: true, resources: [] }));
      };
      return d;
    },
  },
  {
    name: 'no-list-undeclared',
    bug: 'has no list() and does not say why',
    caughtBy: 'leaks',
    leases: true,
    driver: () => {
      const d = baseDriver({ leases: true });
      (d as { list?: unknown }).list = undefined;
      return d;
    },
  },
  {
    name: 'stdin-left-open',
    bug: 'leaves stdin open when none is given, so cat waits forever',
    caughtBy: 'stdin',
    driver: () =>
      new MutantDriver((env) => {
        const exec = env.exec.bind(env);
        env.exec = (argv, opts: ExecOptions = {}) =>
          exec(
            argv,
            opts.stdin === undefined || opts.stdin === 'ignore' ? { ...opts, stdin: new PassThrough() } : opts,
          );
      }),
  },
  {
    name: 'host-file-mode-dropped',
    bug: "pushes a single host file without its mode (0644 whatever the host's)",
    caughtBy: 'mode-bits',
    driver: () =>
      new MutantDriver((env) => {
        const push = env.push.bind(env);
        env.push = async (src, dest, opts) =>
          typeof src === 'string' && !(await import('node:fs/promises').then((f) => f.stat(src))).isDirectory()
            ? push(await readFile(src), dest, opts)
            : push(src, dest, opts);
      }),
  },
  {
    name: 'special-mode-bits-dropped',
    bug: 'drops setuid, setgid and sticky bits (mode & 0o777)',
    caughtBy: 'mode-bits',
    driver: () =>
      new MutantDriver((env) => {
        const push = env.push.bind(env);
        const pushArchive = env.pushArchive.bind(env);
        env.push = (src, dest, opts = {}) =>
          push(src, dest, opts.mode === undefined ? opts : { ...opts, mode: opts.mode & 0o777 });
        env.pushArchive = (tar, dir) =>
          pushArchive(
            rewriteTar(tar, (h) => ({ ...h, mode: (h.mode as number) & 0o777 })),
            dir,
          );
      }),
  },
  ...(['spawn', 'pull', 'readDir', 'pullArchive', 'pushArchive'] as const).map(
    (op): Mutant => ({
      name: `${op.toLowerCase()}-after-close-works`,
      bug: `${op} after close() does not reject with CLOSED`,
      caughtBy: 'closed-operations',
      driver: () =>
        new MutantDriver((env) => {
          const fakes = {
            spawn: () => idle(),
            pull: async () => {},
            readDir: async () => [],
            pullArchive: () => emptyStream(),
            pushArchive: async (tar: Readable) => {
              tar.resume();
            },
          };
          const target = env as unknown as Record<string, (...a: unknown[]) => unknown>;
          target[op] = afterClose(env, target[op]!.bind(env), fakes[op] as (...a: unknown[]) => unknown);
        }),
    }),
  ),
  {
    name: 'open-ignores-abort',
    bug: 'open() ignores its AbortSignal',
    caughtBy: 'open-abort',
    driver: () =>
      new MutantDriver(
        () => {},
        {},
        (spec, opts) => [spec, { ...opts, signal: undefined }],
      ),
  },
  {
    name: 'open-ignores-abort-mid-open',
    bug: 'open() honours a signal that has already fired but ignores one that fires while it runs',
    caughtBy: 'open-abort',
    fake: { openDelayMs: 200 },
    driver: () =>
      new MutantDriver(
        () => {},
        { openDelayMs: 200 },
        (spec, opts) => [spec, opts.signal?.aborted ? opts : { ...opts, signal: undefined }],
      ),
  },
  {
    name: 'push-missing-host-path-raw-error',
    bug: "push of a missing host path rejects with Node's raw ENOENT, not NOT_FOUND",
    caughtBy: 'missing-path',
    driver: () =>
      new MutantDriver((env) => {
        const push = env.push.bind(env);
        env.push = async (src, dest, opts) => {
          if (typeof src === 'string') await stat(src);
          return push(src, dest, opts);
        };
      }),
  },
  {
    name: 'host-state-not-named-after-id',
    bug: 'keeps a host directory and a host process named after nothing the host can tie to the environment, and close() leaves both',
    caughtBy: 'leaks',
    leases: true,
    conformance: { visibleOnHost: ['state', 'process'] },
    driver: () =>
      new MutantDriver(async (_env, _spec, opts) => {
        await mkdir(join(opts.stateDir!, 'fake-anonymous', randomBytes(6).toString('hex')), { recursive: true });
        const p = hostRunner().spawn([process.execPath, '-e', 'setInterval(() => {}, 1 << 30)'], {
          stdin: 'ignore',
          stdout: 'ignore',
          stderr: 'ignore',
        });
        p.exited.catch(() => {});
        if (p.pid) strayProcesses.push(p.pid);
      }),
  },
  {
    name: 'network-none-not-isolated',
    bug: "network 'none' leaves the host's interfaces visible",
    caughtBy: 'network-none',
    driver: () =>
      new MutantDriver(
        () => {},
        {},
        (spec, opts) => [{ ...spec, network: 'nat' }, opts],
      ),
  },
  {
    name: 'mounts-ignored',
    bug: 'spec.mounts is accepted and ignored',
    caughtBy: 'mounts',
    driver: () =>
      new MutantDriver(
        () => {},
        {},
        (spec, opts) => [{ ...spec, mounts: undefined }, opts],
      ),
  },
  {
    name: 'read-only-mount-writable',
    bug: 'a readOnly mount is mounted read-write',
    caughtBy: 'mounts',
    driver: () =>
      new MutantDriver(
        () => {},
        {},
        (spec, opts) => [{ ...spec, mounts: spec.mounts?.map((m) => ({ ...m, readOnly: false })) }, opts],
      ),
  },
  {
    name: 'close-deletes-through-mount',
    bug: "close() removes the environment's root while a mount is still in it, deleting the host's files",
    caughtBy: 'mounts',
    driver: () =>
      new MutantDriver((env, spec) =>
        closedThen(env, async () => {
          for (const m of spec.mounts ?? []) await rm(join(m.source, 'hello'), { force: true });
        }),
      ),
  },
  {
    name: 'kill-lost-while-starting',
    bug: 'an abort that comes while the command is being started rejects the exec but never kills the command',
    caughtBy: 'abort',
    driver: () =>
      new MutantDriver((env) => {
        const exec = env.exec.bind(env);
        env.exec = (argv, opts) => {
          const signal = opts?.signal;
          if (!signal || signal.aborted) return exec(argv, opts);
          const started = Date.now();
          const late = new AbortController();
          return new Promise((resolve, reject) => {
            signal.addEventListener('abort', () => {
              if (Date.now() - started > 20) late.abort(signal.reason);
              else reject(new AbortedError('execenv: exec aborted', { envId: env.id, op: 'exec' }));
            });
            exec(argv, { ...opts, signal: late.signal }).then(resolve, reject);
          });
        };
      }),
  },
  {
    name: 'close-waits-for-commands',
    bug: 'close() waits for running commands to end instead of killing them',
    caughtBy: 'close-while-running',
    driver: () =>
      new MutantDriver((env) => {
        const running = new Set<Promise<unknown>>();
        const track = <T>(p: Promise<T>) => {
          const settled = p.catch(() => {});
          running.add(settled);
          settled.finally(() => running.delete(settled));
          return p;
        };
        const exec = env.exec.bind(env);
        const spawn = env.spawn.bind(env);
        env.exec = (argv, opts) => track(exec(argv, opts));
        env.spawn = (argv, opts) => {
          const p = spawn(argv, opts);
          track(p.result);
          return p;
        };
        const close = env.close.bind(env);
        env.close = async () => {
          await Promise.all(running);
          await close();
        };
      }),
  },
  {
    name: 'dev-stdio-root-only',
    bug: 'a command run as another user gets Permission denied on /dev/stdout (stdio pipes owned by root, mode 0600)',
    caughtBy: 'dev-stdio',
    driver: () =>
      new MutantDriver((env) => {
        const spawn = env.spawn.bind(env);
        env.spawn = (argv, opts = {}) =>
          opts.user && opts.user !== 'root' && argv.join(' ').includes('/dev/stdout')
            ? spawn(['sh', '-c', 'exit 1'], opts)
            : spawn(argv, opts);
      }),
  },
  {
    name: 'no-destroy-event',
    bug: 'close() emits no destroy event',
    caughtBy: 'events',
    driver: () =>
      new MutantDriver(
        () => {},
        {},
        (spec, opts) => [spec, { ...opts, onEvent: (e) => e.type !== 'destroy' && opts.onEvent?.(e) }],
      ),
  },
  {
    name: 'no-ready-event',
    bug: 'open() emits no ready event',
    caughtBy: 'events',
    driver: () =>
      new MutantDriver(
        () => {},
        {},
        (spec, opts) => [spec, { ...opts, onEvent: (e) => e.type !== 'ready' && opts.onEvent?.(e) }],
      ),
  },
  {
    name: 'archive-symlinks-as-files',
    bug: 'extracts symlink entries of an archive as empty regular files',
    caughtBy: 'archive-links',
    driver: () =>
      new MutantDriver((env) => {
        const pushArchive = env.pushArchive.bind(env);
        env.pushArchive = (tar, dir) =>
          pushArchive(
            rewriteTar(tar, (h) => (h.type === 'symlink' ? { ...h, type: 'file', linkname: undefined, size: 0 } : h)),
            dir,
          );
      }),
  },
  {
    name: 'archive-hardlink-escapes',
    bug: 'accepts a hardlink entry whose target lies outside the destination',
    caughtBy: 'archive-links',
    driver: () =>
      new MutantDriver((env) => {
        const pushArchive = env.pushArchive.bind(env);
        env.pushArchive = (tar, dir) =>
          pushArchive(
            rewriteTar(tar, (h) =>
              h.type === 'link' && String(h.linkname).startsWith('..')
                ? { ...h, type: 'file', linkname: undefined, size: 0 }
                : h,
            ),
            dir,
          );
      }),
  },
  {
    name: 'signal-as-exit-128-plus-n',
    bug: 'reports a command killed by SIGKILL as exit code 137',
    caughtBy: 'exit-codes',
    driver: () =>
      new MutantDriver((env) => {
        const exec = env.exec.bind(env);
        env.exec = async (argv, opts) => {
          const r = await exec(argv, opts);
          return r.signal === 'SIGKILL' ? { ...r, exitCode: 137, signal: null } : r;
        };
      }),
  },
  {
    name: 'image-without-stat',
    bug: 'an image that lacks the stat applet',
    caughtBy: 'image-prerequisites',
    driver: () => new FakeDriver({ utilities: true, lacks: ['stat'] }),
  },
  {
    name: 'gc-ignores-dead-owners',
    bug: 'gc() removes nothing that a killed owner left',
    caughtBy: 'gc-after-kill',
    leases: true,
    driver: () => {
      const d = baseDriver({ leases: true });
      d.gc = async () => ({ removed: [], errors: [] });
      return d;
    },
  },
  {
    name: 'gc-removes-twice',
    bug: 'gc() reports the same environments removed again on every run',
    caughtBy: 'gc-after-kill',
    leases: true,
    driver: () => {
      const d = baseDriver({ leases: true });
      const gc = d.gc.bind(d);
      const removed = new Set<string>();
      d.gc = async (opts) => {
        const r = await gc(opts);
        for (const id of r.removed) removed.add(id);
        return { removed: [...removed], errors: r.errors };
      };
      return d;
    },
  },
];
