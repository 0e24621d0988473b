import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CheckContext, ConformanceOptions } from '../../src/conformance/context.js';
import { CHECKS, deadlineOf, runCheck, runConformance, runnerTimeoutOf } from '../../src/conformance/run.js';
import type { EnvSpec, OpenOptions } from '../../src/index.js';
import {
  type FakeCommand,
  FakeDriver,
  type FakeDriverOptions,
  type FakeEnvironment,
  type FakeFileSystem,
} from '../../src/testing/index.js';

const check = (name: string) => CHECKS.find((c) => c.name === name)!;
const tick = () => new Promise((r) => setImmediate(r));

/** Splits a line of sh words, honouring single quotes (the only quoting the checks use). */
function words(line: string): string[] {
  return [...line.matchAll(/'((?:[^']|'\\'')*)'|(\S+)/g)].map((m) => m[2] ?? m[1]!.replaceAll("'\\''", "'"));
}

/** Runs one simple command of the checks' loops against the fake's files. */
function simple(files: FakeFileSystem, line: string): void {
  const w = words(line.trim());
  if (w[0] === 'rm') files.remove(w[2]!);
  else if (w[0] === 'mkdir') files.mkdir(w[2]!);
  else if (w[0] === 'ln') files.symlink(w[2]!, w[3]!);
  else if (w[0] === 'echo' && w[2] === '>') files.writeFile(w[3]!, new TextEncoder().encode(`${w[1]}\n`));
  else throw new Error(`scripted sh: cannot run ${line}`);
}

/**
 * A scripted sh for the fake: the swapping loops of file-race (one yield
 * after each command, until killed) and the deep tree of deep-tree-close.
 */
const sh: FakeCommand = async ({ argv, files, signal }) => {
  const script = argv[2] ?? '';
  const swap = /^(mkdir -p \S+); while :; do (.*); done$/.exec(script);
  if (swap) {
    simple(files, swap[1]!);
    while (!signal.aborted)
      for (const line of swap[2]!.split('; ')) {
        simple(files, line);
        // A random number of turns, so the host side does not fall into step with the loop.
        for (let n = Math.floor(Math.random() * 3); n >= 0; n--) await tick();
      }
    return {};
  }
  const deep = /^cd \/tmp && mkdir (\S+) && cd \S+ && i=0; while \[ \$i -lt (\d+) \]/.exec(script);
  if (deep) {
    let dir = `/tmp/${deep[1]}`;
    files.mkdir(dir);
    for (let i = 0; i < Number(deep[2]); i++) files.mkdir((dir = `${dir}/d0`));
    return { stdout: `${deep[2]}\n` };
  }
  return { exitCode: 2, stderr: `scripted sh: ${script}\n` };
};

/** The host path a fake path reaches when an absolute symlink on it is followed onto the host. */
function throughHostLink(files: FakeFileSystem, path: string): string | undefined {
  const parts = path.split('/').filter(Boolean);
  for (let i = 1; i <= parts.length; i++) {
    const st = files.stat(`/${parts.slice(0, i).join('/')}`);
    if (st?.type === 'symlink' && st.linkTarget?.startsWith('/')) return posix.join(st.linkTarget, ...parts.slice(i));
  }
  return undefined;
}

/** A fake whose opened environments are changed by `mutate`, as a broken driver would be. */
class MutantDriver extends FakeDriver {
  readonly #mutate: (env: FakeEnvironment, spec: EnvSpec, opts: OpenOptions) => Promise<void> | void;

  constructor(
    mutate: (env: FakeEnvironment, spec: EnvSpec, opts: OpenOptions) => Promise<void> | void,
    options: FakeDriverOptions = {},
  ) {
    super({ commands: { sh }, ...options });
    this.#mutate = mutate;
  }

  override async open(spec: EnvSpec, opts: OpenOptions = {}): Promise<FakeEnvironment> {
    const env = await super.open(spec, opts);
    await this.#mutate(env, spec, opts);
    return env;
  }
}

// The in-memory fake has no shell: a suite that passed it would be checking nothing.
describe('the conformance suite can fail', () => {
  it('reports problems, one line each, naming the environment and the operation', async () => {
    const report = await runConformance({
      name: 'fake',
      driver: new FakeDriver(),
      spec: {},
      largeFileBytes: 1024,
      streamBytes: 1024,
      raceMs: 100,
    });
    expect(report.results.map((r) => r.name)).toEqual(CHECKS.map((c) => c.name));
    const exit = report.results.find((r) => r.name === 'exit-codes');
    expect(
      exit?.problems.some((p) =>
        /^execenv-[a-z0-9]+: exec \["sh","-c","kill -KILL \$\$"\]: got \{"exitCode":127,"signal":null\}, want \{"exitCode":null,"signal":"SIGKILL"\}$/.test(
          p,
        ),
      ),
    ).toBe(true);
    expect(report.results.find((r) => r.name === 'cwd')?.problems.length).toBeGreaterThan(0);
    expect(report.problems.length).toBeGreaterThan(10);
  }, 60_000);

  it('passes checks the fake does satisfy', async () => {
    const options = { name: 'fake', driver: new FakeDriver(), spec: {} };
    for (const name of ['open-close', 'invalid-spec', 'open-abort'] as const) {
      const check = CHECKS.find((c) => c.name === name)!;
      expect(await runCheck(check, options)).toEqual({ name, problems: [] });
    }
  });

  it('skips leaks, saying so, where the host shows nothing of an open environment and the driver declares nothing', async () => {
    const r = await runCheck(check('leaks'), { name: 'fake', driver: new FakeDriver(), spec: {} });
    expect(r).toEqual({
      name: 'leaks',
      problems: [],
      skipped: expect.stringMatching(/^could not see the environment on the host: .*declare what the host shows/),
    });
  });

  it('requires every kind of host evidence a driver declares while its environment is open', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'execenv-conformance-unit-'));
    try {
      const options = { name: 'fake', spec: {}, openOptions: { stateDir } };
      const seen = await runCheck(check('leaks'), {
        ...options,
        driver: new FakeDriver({ leases: true, utilities: true }),
        visibleOnHost: ['state', 'process'],
      });
      expect(seen).toEqual({ name: 'leaks', problems: [] });
      const unseen = await runCheck(check('leaks'), {
        ...options,
        driver: new FakeDriver({ leases: true, utilities: true }),
        visibleOnHost: ['mount', 'state'],
      });
      expect(unseen.problems).toEqual([
        expect.stringMatching(
          /^execenv-[a-z0-9]+: what the host shows while open \(visibleOnHost: mount, state\): got \[.*"state .*, want "entries of every declared kind, none of mount seen"$/,
        ),
      ]);
    } finally {
      await new FakeDriver({ leases: true }).gc({ stateDir });
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it('open-close closes what it opened when a close throws', async () => {
    const driver = new FakeDriver({ utilities: true });
    const open = driver.open.bind(driver);
    let opens = 0;
    driver.open = async (spec, opts) => {
      const env = await open(spec, opts);
      if (++opens === 2) {
        const close = env.close.bind(env);
        let first = true;
        env.close = async () => {
          if (first) {
            first = false;
            throw new Error('backend refused');
          }
          await close();
        };
      }
      return env;
    };
    const r = await runCheck(check('open-close'), { name: 'fake', driver, spec: {} });
    expect(r.problems).toEqual([
      expect.stringMatching(/^execenv-[a-z0-9]+: close: got Error\(: backend refused\), want "no error"$/),
    ]);
    expect(driver.openEnvironments.size).toBe(0);
  });

  it('open-close closes every environment it opened when it misses its deadline', async () => {
    const driver = new FakeDriver({ utilities: true, commands: { true: () => new Promise(() => {}) } });
    const r = await runCheck({ ...check('open-close'), timeoutMs: 500 }, { name: 'fake', driver, spec: {} });
    expect(r.deadlineMissed).toBe(true);
    expect(driver.openEnvironments.size).toBe(0);
  });

  it('finds an open that ignores a signal firing while it runs, however fast the open', async () => {
    const atCreate =
      /^execenv-[a-z0-9]+: open aborted at its create event: got "an environment, after the signal fired", want "a rejection with ABORTED"$/;
    const halfWay =
      /^execenv-[a-z0-9]+: open aborted \d+ ms in \(an open takes \d+ ms\): got "an environment, after the signal fired", want "a rejection with ABORTED"$/;
    const deaf = (options: FakeDriverOptions) => {
      const driver = new FakeDriver(options);
      const open = driver.open.bind(driver);
      driver.open = (spec, opts = {}) => open(spec, opts.signal?.aborted ? opts : { ...opts, signal: undefined });
      return driver;
    };
    const slow = deaf({ openDelayMs: 100 });
    const r = await runCheck(check('open-abort'), { name: 'fake', driver: slow, spec: {} });
    expect(r.problems).toEqual([expect.stringMatching(atCreate), expect.stringMatching(halfWay)]);
    expect(slow.openEnvironments.size).toBe(0);
    // An open that ends within a millisecond or two: the half-way abort may land after it, the one at create never does.
    const fast = deaf({});
    const quick = await runCheck(check('open-abort'), { name: 'fake', driver: fast, spec: {} });
    expect(quick.problems).toContainEqual(expect.stringMatching(atCreate));
    expect(fast.openEnvironments.size).toBe(0);
  });

  it('finds a driver that leaks environments past close', async () => {
    const leaky = new FakeDriver();
    const list = leaky.list.bind(leaky);
    const seen: string[] = [];
    leaky.list = async () => {
      for (const e of await list()) if (!seen.includes(e.id)) seen.push(e.id);
      return seen.map((id) => ({ id, driver: 'fake', ownerAlive: true, resources: [] }));
    };
    const r = await runCheck(CHECKS.find((c) => c.name === 'leaks')!, { name: 'leaky', driver: leaky, spec: {} });
    expect(r.problems).toEqual([expect.stringMatching(/: list\(\) after close: got "still listed", want "gone"$/)]);
  });

  it('finds a driver that holds a whole stream in memory', async () => {
    // This fake produces all of head's output at once, as a driver that buffers before streaming would.
    const holding = new FakeDriver({ commands: { head: ({ argv }) => ({ stdout: new Uint8Array(Number(argv[2])) }) } });
    const r = await runCheck(CHECKS.find((c) => c.name === 'streaming-memory')!, {
      name: 'holding',
      driver: holding,
      spec: {},
    });
    expect(r.problems).toEqual([
      expect.stringMatching(
        /: host memory held while the reader paused: got "\d+ bytes", want "< \d+ \(backpressure\)"$/,
      ),
    ]);
  });

  it('fails a check that hangs by its own deadline, naming the step it stood on', async () => {
    const hanging = {
      name: 'leaks' as const,
      timeoutMs: 200,
      run: async (ctx: CheckContext) => {
        ctx.step = 'waiting for a close that never ends';
        await new Promise(() => {});
      },
    };
    const r = await runCheck(hanging, { name: 'fake', driver: new FakeDriver(), spec: {} });
    expect(r).toEqual({
      name: 'leaks',
      problems: ['fake: leaks: did not finish within 200 ms (at: waiting for a close that never ends)'],
      deadlineMissed: true,
    });
  });

  it('stretches deadlines and waits by timeScale, for backends slow by nature', async () => {
    const slow = {
      name: 'leaks' as const,
      timeoutMs: 100,
      run: async (ctx: CheckContext) => {
        await new Promise((r) => setTimeout(r, 150));
        await ctx.within(40, 'env', 'a slow answer', 'an answer', new Promise((r) => setTimeout(r, 60)));
      },
    };
    const options = { name: 'fake', driver: new FakeDriver(), spec: {} };
    expect((await runCheck(slow, { ...options, timeScale: 3 })).problems).toEqual([]);
    expect((await runCheck(slow, options)).problems).toEqual([
      'fake: leaks: did not finish within 100 ms (at: starting)',
    ]);
    expect(deadlineOf(slow, { timeScale: 2.5 })).toBe(250);
    expect(runnerTimeoutOf(slow, { timeScale: 2 })).toBe(200 + 4 * 60_000 + 10_000);
  });

  it('names a wait that missed its own deadline as the broken promise', async () => {
    const waiting = {
      name: 'close-while-running' as const,
      run: async (ctx: CheckContext) => {
        await ctx.within(50, 'env', 'close while sleep runs', 'closed', new Promise(() => {}));
      },
    };
    const r = await runCheck(waiting, { name: 'fake', driver: new FakeDriver(), spec: {} });
    expect(r).toEqual({
      name: 'close-while-running',
      problems: ['env: close while sleep runs: got no answer within 50 ms, want closed'],
    });
  });

  it('skips, with the reason, what the driver declares as a gap', async () => {
    const r = await runCheck(CHECKS.find((c) => c.name === 'user')!, {
      name: 'fake',
      driver: new FakeDriver(),
      spec: {},
      skip: { user: 'no users here' },
    });
    expect(r).toEqual({ name: 'user', problems: [], skipped: 'no users here' });
  });
});

describe('the checks of hostile paths and images', () => {
  let stateDir: string;
  beforeEach(async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'execenv-conformance-state-'));
  });
  afterEach(async () => {
    await rm(stateDir, { recursive: true, force: true });
  });
  const options = (driver: FakeDriver): ConformanceOptions => ({
    name: driver.name,
    driver,
    spec: {},
    openOptions: { stateDir },
    // Long enough for the swapping loop to be seen in every state on a loaded host.
    raceMs: 1000,
    imageWithSymlinks: async (links) => ({ driverOptions: { symlinks: links } }),
  });

  it('pass a fake that keeps to the contract', async () => {
    const fake = new FakeDriver({ commands: { sh } });
    for (const name of ['file-race', 'hostile-image-symlinks', 'deep-tree-close'] as const)
      expect(await runCheck(check(name), options(fake))).toEqual({ name, problems: [] });
    expect(fake.openEnvironments.size).toBe(0);
  }, 30_000);

  it('skip hostile-image-symlinks, with the reason, when there is no imageWithSymlinks', async () => {
    const r = await runCheck(check('hostile-image-symlinks'), {
      ...options(new FakeDriver()),
      imageWithSymlinks: undefined,
    });
    expect(r.problems).toEqual([]);
    expect(r.skipped).toMatch(/give imageWithSymlinks in the conformance options$/);
  });

  it('find a push that follows a symlink swapped in onto the host', async () => {
    const mutant = new MutantDriver((env) => {
      const push = env.push.bind(env);
      env.push = async (src, dest, opts) => {
        const host = throughHostLink(env.files, dest);
        if (host && src instanceof Uint8Array) await writeFile(host, src);
        else await push(src, dest, opts);
      };
    });
    const r = await runCheck(check('file-race'), options(mutant));
    expect(r.problems.length).toBeGreaterThan(0);
    expect(r.problems).toContainEqual(
      expect.stringMatching(
        /^execenv-[a-z0-9]+: host directory \S+ after racing \/tmp\/race-[0-9a-f]+\/d -> \S+: got \{"added":\[.*"x file/,
      ),
    );
  }, 30_000);

  it('find a pull that reads through a symlink swapped in onto the host', async () => {
    const mutant = new MutantDriver((env) => {
      const pull = env.pull.bind(env);
      env.pull = async (src, dest) => {
        const host = throughHostLink(env.files, src);
        if (host) await copyFile(host, dest);
        else await pull(src, dest);
      };
    });
    const r = await runCheck(check('file-race'), options(mutant));
    expect(r.problems).toContainEqual(
      expect.stringMatching(
        /^execenv-[a-z0-9]+: pull \/tmp\/race-[0-9a-f]+\/d\/secret \(\/tmp\/race-[0-9a-f]+\/d -> \S+\): got "the host file's content", want /,
      ),
    );
    expect(r.problems).toContainEqual(
      expect.stringMatching(/: pull \/tmp\/race-[0-9a-f]+\/f \(.*\): got "the host file's content"/),
    );
  }, 30_000);

  it('go on racing past raceMs while a slow backend has not yet seen the swap', async () => {
    // A backend whose first answers for a path all come before the loop's first swap is seen:
    // a loaded daemon, a few stats in raceMs. The loops did run; the race must last until it shows.
    const raceMs = 1000;
    const slow = new MutantDriver((env) => {
      const stat = env.stat.bind(env);
      const firstAsked = new Map<string, number>();
      env.stat = async (path) => {
        const st = await stat(path);
        if (!firstAsked.has(path)) firstAsked.set(path, Date.now());
        return st?.type === 'symlink' && Date.now() - firstAsked.get(path)! < raceMs + 500 ? null : st;
      };
    });
    expect(await runCheck(check('file-race'), { ...options(slow), raceMs })).toEqual({
      name: 'file-race',
      problems: [],
    });
  }, 60_000);

  it('find a race loop that never ran', async () => {
    const r = await runCheck(check('file-race'), { ...options(new FakeDriver()), raceMs: 50 });
    expect(r.problems).toContainEqual(
      expect.stringMatching(
        /^execenv-[a-z0-9]+: sh loop swapping \/tmp\/race-[0-9a-f]+\/d: got "exit 127: fake: sh: command not found", want "running until killed"$/,
      ),
    );
    expect(r.problems).toContainEqual(
      expect.stringMatching(
        /: stat \/tmp\/race-[0-9a-f]+\/f while a sh loop swaps it: got \[.*\], want "a symlink at least once"$/,
      ),
    );
  });

  it('find an open that writes through a symlinked /tmp of the image', async () => {
    const mutant = new MutantDriver(async (_env, spec) => {
      const links = (spec.driverOptions as { symlinks?: Record<string, string> } | undefined)?.symlinks;
      if (links?.['/tmp']) await writeFile(join(links['/tmp'], '.X11-unix'), '');
    });
    const r = await runCheck(check('hostile-image-symlinks'), options(mutant));
    expect(r.problems).toEqual([
      expect.stringMatching(/^fake: host directory \S+ \(the image's \/tmp\) while open: got \[.*\.X11-unix/),
      expect.stringMatching(/: host directory \S+ \(the image's \/tmp\) after close: got /),
    ]);
  });

  it('find an open that fails without an ExecenvError', async () => {
    const mutant = new MutantDriver(() => {
      throw new Error('mount: /proc is a symlink');
    });
    const r = await runCheck(check('hostile-image-symlinks'), options(mutant));
    expect(r.problems).toEqual([
      expect.stringMatching(
        /^fake: open of an image with symlinked \/dev, \/proc, \/tmp: got Error\(: mount: \/proc is a symlink\), want "an environment, or an ExecenvError with a code"$/,
      ),
    ]);
  });

  it('find a close that leaves state named after the environment', async () => {
    const mutant = new MutantDriver(async (env, _spec, opts) => {
      await writeFile(join(opts.stateDir!, `${env.id}.lease`), '{}');
    });
    const r = await runCheck(check('deep-tree-close'), options(mutant));
    expect(r.problems).toEqual([
      expect.stringMatching(/^(execenv-[a-z0-9]+): names in \S+ after close: got \[".*\/\1\.lease"\], want /),
    ]);
  });

  it('find a close that fails on a tree deeper than PATH_MAX', async () => {
    const mutant = new MutantDriver((env) => {
      const close = env.close.bind(env);
      env.close = async () => {
        if (env.files.entries('/tmp').some(([path]) => path.length > 4096)) {
          env.close = close;
          throw new Error('ENAMETOOLONG');
        }
        await close();
      };
    });
    const r = await runCheck(check('deep-tree-close'), options(mutant));
    expect(r.problems).toContainEqual(
      expect.stringMatching(
        /: close with a tree deeper than PATH_MAX inside: got Error\(: ENAMETOOLONG\), want "no error"$/,
      ),
    );
  });
});
