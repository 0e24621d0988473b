import { lstat, mkdir, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import type { Readable } from 'node:stream';
import { extract as tarExtract } from 'tar-stream';
import type { Environment, ExecProcess } from '../../contract.js';
import { type Check, type CheckContext, unique } from '../context.js';
import { archiveOf } from './archive-of.js';
import { hostState } from './host.js';

/** Longest wait for one file operation; past it the operation counts as hung. */
const OP_TIMEOUT_MS = 15_000;
/** Longest wait for a swapping loop to end after kill. */
const KILL_TIMEOUT_MS = 10_000;
/** Most bytes of a pulled archive read before it is cut off. */
const ARCHIVE_LIMIT = 1 << 20;
const HUNG = Symbol('hung');

/**
 * What every race compares against: a host directory holding `secret` (a file
 * whose content, SECRET_BYTES long, differs in size from anything written
 * inside during the race, alone or two writes interleaved) and a
 * directory named `marker`; pulls land in `out`.
 */
interface HostSide {
  dir: string;
  secret: string;
  marker: string;
  out: string;
}

/** One race: a directory inside swapped with a symlink to a host path above or at the host directory. */
interface Race {
  env: Environment;
  host: HostSide;
  /** The swapped directory, e.g. /tmp/race-1/d. */
  dir: string;
  /** The swapped final component, a file or a symlink to the host's secret. */
  file: string;
  /** The path inside that lands on the host directory while `dir` is the symlink. */
  inside: string;
  /** Records an escape once per distinct line. */
  escape(op: string, got: string): void;
}

/**
 * Size of the host's secret file. A stat that finds a regular file of this size where the host
 * file could show is an escape, so no write of the race may add up to it: the loop's `inside\n`
 * (7 bytes) and a host push (19) interleaved on one file once made 26 bytes, the size of an earlier,
 * shorter secret.
 */
const SECRET_BYTES = 4093;

/** The secret's content: `name`, a newline, and padding to SECRET_BYTES. */
function secretText(name: string): string {
  return `${name}\n${'s'.repeat(SECRET_BYTES - name.length - 2)}\n`;
}

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
const bytes = (s: string) => new TextEncoder().encode(s);

/** Resolves to what p gives, or to HUNG after ms; p's own rejection is swallowed. */
function bounded<T>(p: Promise<T>, ms: number): Promise<T | typeof HUNG> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<typeof HUNG>((r) => {
    timer = setTimeout(() => r(HUNG), ms);
  });
  return Promise.race([p, hung]).finally(() => clearTimeout(timer));
}

function tarOf(name: string, content: string): Readable {
  return archiveOf([{ name, content }]);
}

/** What an archive pulled during the race gave away, if anything; reads at most ARCHIVE_LIMIT bytes. */
async function archiveLeak(stream: Readable, host: HostSide): Promise<string | undefined> {
  const extractor = tarExtract();
  stream.on('error', (err) => extractor.destroy(err));
  stream.pipe(extractor);
  let total = 0;
  try {
    for await (const entry of extractor) {
      if (basename(entry.header.name) === host.marker) return "the host directory's names";
      const chunks: Buffer[] = [];
      for await (const chunk of entry as AsyncIterable<Buffer>) {
        total += chunk.length;
        if (total > ARCHIVE_LIMIT) return undefined;
        chunks.push(chunk);
      }
      if (Buffer.concat(chunks).toString() === host.secret) return "the host file's content";
    }
  } catch {
    // A failed pull (NOT_FOUND while the loop swaps) is fine; only what came through counts.
  } finally {
    stream.destroy();
    extractor.destroy();
  }
  return undefined;
}

/** Pulls src and says whether a regular file with the host's secret came out. */
async function pullLeak(race: Race, src: string): Promise<string | undefined> {
  const dest = join(race.host.out, unique('pull'));
  try {
    await race.env.pull(src, dest);
    const st = await lstat(dest);
    if (st.isFile() && (await readFile(dest, 'utf8')) === race.host.secret) return "the host file's content";
    return undefined;
  } finally {
    await rm(dest, { recursive: true, force: true });
  }
}

/** The host-side operations raced against the loops, each recording what escaped. */
function operations(race: Race, seen: { dir: Set<string>; file: Set<string> }): [string, () => Promise<void>][] {
  const { env, host, inside, file } = race;
  const secretSize = Buffer.byteLength(host.secret);
  const statLeak = async (op: string, path: string) => {
    const st = await env.stat(path);
    if (st?.type === 'file' && st.size === secretSize) race.escape(op, `the host file's stat (size ${st.size})`);
    return st;
  };
  const check = async (op: string, leak: Promise<string | undefined>) => {
    const got = await leak;
    if (got) race.escape(op, got);
  };
  return [
    [`push ${inside}/x`, () => env.push(bytes('pushed by the host\n'), `${inside}/x`)],
    [`pushArchive into ${inside}`, () => env.pushArchive(tarOf('from-archive', 'archived\n'), inside)],
    [`pull ${inside}/secret`, () => check(`pull ${inside}/secret`, pullLeak(race, `${inside}/secret`))],
    [`pullArchive ${inside}`, () => check(`pullArchive ${inside}`, archiveLeak(env.pullArchive(inside), host))],
    [`stat ${inside}/secret`, async () => void (await statLeak(`stat ${inside}/secret`, `${inside}/secret`))],
    [
      `readDir ${inside}`,
      async () => {
        if ((await env.readDir(inside)).includes(host.marker))
          race.escape(`readDir ${inside}`, "the host directory's names");
      },
    ],
    [`stat ${race.dir}`, async () => void seen.dir.add((await env.stat(race.dir))?.type ?? 'missing')],
    [`push ${file}`, () => env.push(bytes('pushed by the host\n'), file)],
    [`pull ${file}`, () => check(`pull ${file}`, pullLeak(race, file))],
    [`pullArchive ${file}`, () => check(`pullArchive ${file}`, archiveLeak(env.pullArchive(file), host))],
    [`stat ${file}`, async () => void seen.file.add((await statLeak(`stat ${file}`, file))?.type ?? 'missing')],
  ];
}

/** Longest the race goes on past `raceMs` while neither swapped path has yet been seen as a symlink. */
const SWAP_UNSEEN_EXTRA_MS = 10_000;

/**
 * Runs `op` again and again while `going()`, yielding to the event loop
 * between calls so a driver that answers without I/O cannot starve the
 * others; returns false when one call hung.
 */
async function lane(going: () => boolean, opTimeoutMs: number, op: () => Promise<void>): Promise<boolean> {
  while (going()) {
    const settled = await bounded(
      op().catch(() => {}),
      opTimeoutMs,
    );
    if (settled === HUNG) return false;
    // One or two turns at random, so the lanes do not fall into a fixed order with each other or the loops.
    for (let n = Math.random() < 0.5 ? 1 : 2; n > 0; n--) await new Promise((r) => setImmediate(r));
  }
  return true;
}

/** A loop running inside: its process, whether it has ended, and the start of its stderr. */
interface Loop {
  /** The path it swaps. */
  path: string;
  proc: ExecProcess;
  ended: boolean;
  stderr: string;
}

/** Starts a loop inside; its output is drained so it never blocks on a full pipe. */
function loop(env: Environment, path: string, script: string): Loop {
  const proc = env.spawn(['sh', '-c', script], { stdin: 'ignore', buffer: false });
  const l: Loop = { path, proc, ended: false, stderr: '' };
  proc.stdout.resume();
  proc.stderr.on('data', (c: Buffer) => {
    if (l.stderr.length < 1024) l.stderr += c.toString();
  });
  proc.result.then(
    () => {
      l.ended = true;
    },
    () => {
      l.ended = true;
    },
  );
  return l;
}

async function race(ctx: CheckContext, env: Environment, host: HostSide, target: string): Promise<void> {
  const root = `/tmp/${unique('race')}`;
  const suffix = relative(target, host.dir);
  const dir = `${root}/d`;
  const inside = suffix ? `${dir}/${suffix}` : dir;
  const file = `${root}/f`;
  const escapes = new Set<string>();
  const r: Race = {
    env,
    host,
    dir,
    file,
    inside,
    escape(op, got) {
      const line = `${op} (${dir} -> ${target})`;
      if (escapes.has(line)) return;
      escapes.add(line);
      ctx.problem(env.id, line, got, "the environment's own file, or an error");
    },
  };
  const before = await hostState(host.dir);
  const loops = [
    loop(
      env,
      dir,
      `mkdir -p ${quote(root)}; while :; do rm -rf ${quote(dir)}; mkdir -p ${quote(inside)}; echo inside > ${quote(`${inside}/secret`)}; ` +
        `rm -rf ${quote(dir)}; ln -s ${quote(target)} ${quote(dir)}; done`,
    ),
    loop(
      env,
      file,
      `mkdir -p ${quote(root)}; while :; do rm -f ${quote(file)}; echo inside > ${quote(file)}; rm -f ${quote(file)}; ` +
        `ln -s ${quote(join(host.dir, 'secret'))} ${quote(file)}; done`,
    ),
  ];
  const seen = { dir: new Set<string>(), file: new Set<string>() };
  try {
    // On a slow or loaded backend a few stats in raceMs may all miss the swap; the race then goes
    // on while the loops run, until both paths were seen as symlinks (proof the loops swapped while
    // the host side ran), for at most SWAP_UNSEEN_EXTRA_MS more.
    const deadline = Date.now() + (ctx.options.raceMs ?? 4000);
    const last = deadline + ctx.ms(SWAP_UNSEEN_EXTRA_MS);
    const going = () => {
      const now = Date.now();
      if (now < deadline) return true;
      const swapsUnseen = !(seen.dir.has('symlink') && seen.file.has('symlink'));
      return swapsUnseen && now < last && loops.every((l) => !l.ended);
    };
    const ops = operations(r, seen);
    const finished = await Promise.all(ops.map(([, op]) => lane(going, ctx.ms(OP_TIMEOUT_MS), op)));
    for (const [i, ok] of finished.entries())
      if (!ok)
        ctx.problem(
          env.id,
          `${ops[i]![0]} while ${dir} is swapped`,
          'no answer',
          `an answer within ${ctx.ms(OP_TIMEOUT_MS)} ms`,
        );
  } finally {
    for (const l of loops) {
      if (l.ended) {
        const r = await l.proc.result.then(
          (res) => `exit ${res.exitCode ?? res.signal}: ${l.stderr.trim()}`,
          (err: unknown) => err,
        );
        ctx.problem(env.id, `sh loop swapping ${l.path}`, r, 'running until killed');
      }
      l.proc.kill();
    }
    for (const l of loops)
      if ((await bounded(l.proc.result, KILL_TIMEOUT_MS)) === HUNG)
        ctx.problem(env.id, 'kill of a swapping loop', `still running after ${KILL_TIMEOUT_MS} ms`, 'ended');
  }
  // Host-side pushes make directories and files too; only a symlink proves the loop swapped.
  for (const [path, types] of [
    [dir, seen.dir],
    [file, seen.file],
  ] as const)
    if (!types.has('symlink'))
      ctx.problem(env.id, `stat ${path} while a sh loop swaps it`, [...types].sort(), 'a symlink at least once');
  const after = await hostState(host.dir);
  ctx.expect(
    env.id,
    `host directory ${host.dir} after racing ${dir} -> ${target}`,
    { added: after.filter((l) => !before.includes(l)), removed: before.filter((l) => !after.includes(l)) },
    { added: [], removed: [] },
  );
  await env.exec(['rm', '-rf', root], { timeout: ctx.ms(OP_TIMEOUT_MS) }).catch(() => {});
}

/**
 * A process inside swaps a directory with a symlink to a host directory, and
 * a file with a symlink to a host file, as fast as it can, while the host
 * side pushes, pulls, lists and stats through those paths. Operations may
 * fail; nothing may land in or come out of the host directory. The link
 * points at the host directory itself, its parent and `/`.
 */
async function fileRace(ctx: CheckContext): Promise<void> {
  const env = await ctx.open();
  const dir = await realpath(await ctx.hostDir());
  const host: HostSide = {
    dir,
    secret: secretText(unique('execenv-secret')),
    marker: unique('host-only'),
    out: await ctx.hostDir(),
  };
  await writeFile(join(dir, 'secret'), host.secret, { mode: 0o600 });
  await mkdir(join(dir, host.marker));
  for (const target of new Set([dir, dirname(dir), '/'])) await race(ctx, env, host, target);
}

/** The race of host-side file operations against symlinks swapped inside. */
export const fileRaceCheck: Check = { name: 'file-race', run: fileRace, timeoutMs: 120_000 };
