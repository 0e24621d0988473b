import { appendFile } from 'node:fs/promises';
import { posix } from 'node:path';
import type { FakeCommand, FakeCommandContext, FakeCommandResult } from './fake-driver.js';
import type { FakeFileSystem } from './fake-filesystem.js';

const encoder = new TextEncoder();
const tick = () => new Promise((r) => setImmediate(r));

/** Waits `ms`, or less when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });
}

/**
 * uid and gid of a fake user: root, nobody (65534) or `uid[:gid]`.
 *
 * @example
 * ```ts
 * import { type FakeCommand, fakeIds } from '@execenv/core/testing';
 * fakeIds('nobody'); // [65534, 65534]; '1000:100' gives [1000, 100], an unknown name undefined
 * // A `build` that leaves its output owned by the user it ran as:
 * const build: FakeCommand = ({ user, files }) => {
 *   const [uid, gid] = fakeIds(user) ?? [0, 0];
 *   files.writeFile('/out/app', new Uint8Array(), { uid, gid });
 *   return {};
 * };
 * ```
 */
export function fakeIds(user: string): [number, number] | undefined {
  if (user === 'root') return [0, 0];
  if (user === 'nobody') return [65534, 65534];
  const m = /^(\d+)(?::(\d+))?$/.exec(user);
  return m ? [Number(m[1]), Number(m[2] ?? m[1])] : undefined;
}

/** Splits a line of sh words, honouring single quotes. */
function words(line: string): string[] {
  return [...line.matchAll(/'((?:[^']|'\\'')*)'|(\S+)/g)].map((m) => m[2] ?? m[1]!.replaceAll("'\\''", "'"));
}

/** Runs one simple command of a swapping loop against the fake's files. */
function simple(files: FakeFileSystem, line: string): void {
  const w = words(line.trim());
  if (w[0] === 'rm') files.remove(w[2]!);
  else if (w[0] === 'mkdir') files.mkdir(w[w.length - 1]!);
  else if (w[0] === 'ln') files.symlink(w[2]!, w[3]!);
  else if (w[0] === 'echo' && w[2] === '>') files.writeFile(w[3]!, encoder.encode(`${w[1]}\n`));
  else throw new Error(`fake sh: cannot run ${line}`);
}

/**
 * Scripts the fake `sh -c` knows: exactly those the conformance suite runs.
 * Each is a pattern and what running it does to the fake's files.
 */
const SCRIPTS: [RegExp, (m: RegExpExecArray, ctx: FakeCommandContext) => Promise<FakeCommandResult>][] = [
  [/^exit (\d+)$/, async (m) => ({ exitCode: Number(m[1]) })],
  [/^kill -(KILL|TERM) \$\$$/, async (m) => ({ signal: `SIG${m[1]}` })],
  [
    /^for c in ([^;]+); do command -v "\$c" >\/dev\/null 2>&1 \|\| echo "\$c"; done$/,
    async (m, ctx) => ({
      stdout: m[1]!
        .split(' ')
        .filter((c) => !ctx.hasCommand(c))
        .map((c) => `${c}\n`)
        .join(''),
    }),
  ],
  [
    /^echo out > \/dev\/stdout; echo err > \/dev\/stderr; head -n 1 \/dev\/stdin$/,
    async (_m, ctx) => ({ stdout: `out\n${await ctx.stdinLine()}`, stderr: 'err\n' }),
  ],
  [/^echo out; echo err >&2; echo out2$/, async () => ({ stdout: 'out\nout2\n', stderr: 'err\n' })],
  [
    /^echo "\$\(id -u\) \$\(id -g\)"$/,
    async (_m, ctx) => {
      const ids = fakeIds(ctx.user);
      return ids ? { stdout: `${ids[0]} ${ids[1]}\n` } : { exitCode: 1, stderr: `id: unknown user ${ctx.user}\n` };
    },
  ],
  [
    /^echo (\S+) > (\S+)$/,
    async (m, ctx) => {
      ctx.files.writeFile(m[2]!, encoder.encode(`${m[1]}\n`));
      return {};
    },
  ],
  [
    /^echo (\d+) > (\S+); sleep ([\d.]+); cat (\S+)$/,
    async (m, ctx) => {
      ctx.files.writeFile(m[2]!, encoder.encode(`${m[1]}\n`));
      await pause(Number(m[3]) * 1000, ctx.signal);
      return { stdout: ctx.files.readFile(m[4]!) ?? '' };
    },
  ],
  [
    /^\(sleep (\d+); touch (\S+)\) & sleep (\d+)$/,
    async (m, ctx) => {
      // The background half touches its marker unless the command's whole tree is killed first.
      void pause(Number(m[1]) * 1000, ctx.signal).then(() => {
        if (!ctx.signal.aborted) ctx.files.writeFile(m[2]!, new Uint8Array());
      });
      await pause(Number(m[3]) * 1000, ctx.signal);
      return {};
    },
  ],
  [
    /^for m; do test -e "\$m" && echo "\$m"; done; true$/,
    async (_m, ctx) => ({
      stdout: ctx.argv
        .slice(4)
        .filter((path) => ctx.files.stat(path) !== null)
        .map((path) => `${path}\n`)
        .join(''),
    }),
  ],
  [/^sleep (\d+) & echo started$/, async () => ({ stdout: 'started\n' })],
  [
    /^(mkdir -p \S+); while :; do (.*); done$/,
    async (m, ctx) => {
      simple(ctx.files, m[1]!);
      while (!ctx.signal.aborted)
        for (const line of m[2]!.split('; ')) {
          simple(ctx.files, line);
          // A random number of turns, so the host side does not fall into step with the loop.
          for (let n = Math.floor(Math.random() * 3); n >= 0; n--) await tick();
        }
      return {};
    },
  ],
  [
    /^cd \/tmp && mkdir (\S+) && cd \S+ && i=0; while \[ \$i -lt (\d+) \]/,
    async (m, ctx) => {
      let dir = `/tmp/${m[1]}`;
      ctx.files.mkdir(dir);
      for (let i = 0; i < Number(m[2]); i++) ctx.files.mkdir((dir = `${dir}/d0`));
      return { stdout: `${m[2]}\n` };
    },
  ],
];

/** The fake sh: `sh -c SCRIPT` for the scripts the conformance suite runs, exit 2 for any other. */
const sh: FakeCommand = async (ctx) => {
  const script = ctx.argv[1] === '-c' ? (ctx.argv[2] ?? '') : '';
  for (const [pattern, run] of SCRIPTS) {
    const m = pattern.exec(script);
    if (m) return run(m, ctx);
  }
  return { exitCode: 2, stderr: `fake sh: no script like ${JSON.stringify(script)}\n` };
};

function fileType(files: FakeFileSystem, path: string): string | undefined {
  return files.stat(path)?.type;
}

/**
 * Utilities of a small POSIX userland over the fake's files, enough for
 * the conformance suite: `sh -c` for the suite's own scripts, `env`, `id`,
 * `sleep`, `ln`, `mkdir`, `rm`, `touch`, `test`, `stat -c`, `pwd`, `head -c`,
 * `printf`, `kill` and `cat`. Give them with `new FakeDriver({ utilities: true })`.
 *
 * @example
 * ```ts
 * import { FAKE_UTILITIES, type FakeCommand, FakeDriver } from '@execenv/core/testing';
 * // The fake `id`, recording who ran it; the rest of the userland stays as it is.
 * const users: string[] = [];
 * const id: FakeCommand = (ctx) => {
 *   users.push(ctx.user);
 *   return FAKE_UTILITIES.id!(ctx);
 * };
 * const driver = new FakeDriver({ utilities: true, commands: { id } });
 * ```
 */
export const FAKE_UTILITIES: Readonly<Record<string, FakeCommand>> = {
  sh,
  env: ({ env }) => ({
    stdout: Object.entries(env)
      .map(([k, v]) => `${k}=${v}\n`)
      .join(''),
  }),
  id: ({ argv, user }) => {
    const who = argv.find((a, i) => i > 0 && !a.startsWith('-')) ?? user;
    const ids = fakeIds(who);
    if (!ids) return { exitCode: 1, stderr: `id: ${who}: no such user\n` };
    if (argv.includes('-u')) return { stdout: `${ids[0]}\n` };
    if (argv.includes('-g')) return { stdout: `${ids[1]}\n` };
    return { stdout: `uid=${ids[0]} gid=${ids[1]}\n` };
  },
  sleep: async ({ argv, signal }) => {
    await pause(Number(argv[1] ?? 0) * 1000, signal);
    return {};
  },
  ln: ({ argv, files }) => {
    const [target, path] = argv.slice(-2);
    files.symlink(target!, path!);
    return {};
  },
  mkdir: ({ argv, files }) => {
    for (const p of argv.slice(1).filter((a) => !a.startsWith('-'))) files.mkdir(p);
    return {};
  },
  rm: ({ argv, files }) => {
    for (const p of argv.slice(1).filter((a) => !a.startsWith('-'))) files.remove(p);
    return {};
  },
  touch: async ({ argv, files, hostPathOf }) => {
    for (const p of argv.slice(1)) {
      const host = hostPathOf(p);
      if (host?.readOnly) return { exitCode: 1, stderr: `touch: ${p}: Read-only file system\n` };
      if (host) await appendFile(host.path, '');
      if (!files.stat(p)) files.writeFile(p, new Uint8Array());
    }
    return {};
  },
  test: ({ argv, files }) => {
    const [flag, path] = argv.slice(1);
    const type = fileType(files, path ?? '');
    const ok = flag === '-e' ? type !== undefined : flag === '-d' ? type === 'directory' : type === 'file';
    return { exitCode: ok ? 0 : 1 };
  },
  stat: ({ argv, files }) => {
    const path = argv[argv.length - 1]!;
    const st = files.stat(path);
    if (!st) return { exitCode: 1, stderr: `stat: ${path}: No such file or directory\n` };
    return { stdout: `${(st.mode & 0o7777).toString(8)} ${st.uid} ${st.gid}\n` };
  },
  pwd: ({ cwd }) => ({ stdout: `${cwd}\n` }),
  head: ({ argv }) => ({ stdout: new Uint8Array(Number(argv[2] ?? 0)) }),
  printf: ({ argv }) => ({ stdout: argv.slice(2).join('') || (argv[1] ?? '') }),
  kill: () => ({}),
  cat: async ({ argv, stdin, files }) => {
    if (argv.length === 1) return { stdout: await stdin() };
    const out: Uint8Array[] = [];
    for (const path of argv.slice(1)) {
      const data = files.readFile(followLinks(files, path));
      if (!data)
        return { exitCode: 1, stdout: Buffer.concat(out), stderr: `cat: ${path}: No such file or directory\n` };
      out.push(data);
    }
    return { stdout: Buffer.concat(out) };
  },
};

/** Where a path leads inside the fake's files once its final symlinks are followed (at most 40). */
function followLinks(files: FakeFileSystem, path: string): string {
  let p = path;
  for (let hops = 0; hops < 40; hops++) {
    const st = files.stat(p);
    if (st?.type !== 'symlink' || st.linkTarget === undefined) return p;
    p = posix.resolve(posix.dirname(p), st.linkTarget);
  }
  return p;
}
