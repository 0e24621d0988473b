import { access, mkdir, readdir, realpath, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  isPublishable,
  isRebootable,
  isRevertable,
  isSnapshottable,
  publish,
  reboot,
  restore,
  revert,
  snapshot,
} from '../../capabilities.js';
import type { Environment } from '../../contract.js';
import { ExecenvError } from '../../errors.js';
import type { ExecenvEvent } from '../../events.js';
import { type Check, type CheckContext, codeOf, HUNG, rejection, unique } from '../context.js';
import { archiveOf } from './archive-of.js';
import { settledEvidence } from './evidence.js';
import { hostState } from './host.js';

const ISOLATION = ['isolation-chroot', 'isolation-container', 'isolation-machine'];

/** Ids the driver's list() shows, or undefined when it has none. */
export async function listedIds(ctx: CheckContext): Promise<string[] | undefined> {
  const { driver, openOptions } = ctx.options;
  if (!driver.list) return undefined;
  return (await driver.list({ stateDir: openOptions?.stateDir })).map((e) => e.id);
}

/**
 * Two environments get distinct, well-formed ids and one isolation
 * capability; close is idempotent, operations after it reject with CLOSED,
 * and `await using` closes. Every environment is opened through ctx.open,
 * so whatever path the check takes (a close that throws, a missed
 * deadline), cleanup closes it.
 */
async function openClose(ctx: CheckContext): Promise<void> {
  const { driver } = ctx.options;
  const a = await ctx.open();
  const b = await ctx.open();
  for (const env of [a, b]) {
    if (!/^execenv-[a-z0-9]+$/.test(env.id))
      ctx.problem(env.id, 'id', env.id, 'execenv-<lower-case letters and digits>');
    ctx.expect(env.id, 'driver', env.driver, driver.name);
    const isolation = [...env.capabilities].filter((c) => ISOLATION.includes(c));
    if (isolation.length !== 1) ctx.problem(env.id, 'capabilities', isolation, 'exactly one isolation-* capability');
  }
  if (a.id === b.id) ctx.problem(a.id, 'ids of two environments', 'the same id', 'different ids');
  for (const [env, op] of [
    [b, 'close'],
    [a, 'close'],
    [a, 'close again'],
  ] as const) {
    const closed = await ctx.within(60_000, env.id, op, 'closed', rejection(env.close()));
    if (closed === HUNG) {
      ctx.abandon(env);
      return;
    }
    if (closed !== undefined) ctx.problem(env.id, op, closed, 'no error');
  }
  for (const [op, p] of [
    ['exec after close', a.exec(['true'])],
    ['push after close', a.push(new Uint8Array(), '/tmp/x')],
    ['stat after close', a.stat('/')],
  ] as const)
    ctx.expect(a.id, op, codeOf(await rejection(p)), 'CLOSED');
  let disposed: Environment | undefined;
  {
    await using env = await ctx.open();
    disposed = env;
    ctx.expect(env.id, 'exec inside await using', (await env.exec(['true'])).exitCode, 0);
  }
  ctx.expect(disposed.id, 'exec after await using ended', codeOf(await rejection(disposed.exec(['true']))), 'CLOSED');
}

/** Resolves when a stream ends, rejects with its error. */
export function drained(stream: Readable): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    stream.on('error', reject);
    stream.on('end', resolve);
    stream.resume();
  });
}

function emptyTar(): Readable {
  return archiveOf([]);
}

/** Every operation after close rejects with CLOSED, promptly, and changes nothing on the host. */
async function closedOperations(ctx: CheckContext): Promise<void> {
  const env = await ctx.open();
  const host = await ctx.hostDir();
  const dest = join(host, 'pulled');
  if ((await ctx.within(60_000, env.id, 'close', 'closed', env.close())) === HUNG) {
    ctx.abandon(env);
    return;
  }
  const ops: [string, () => Promise<unknown>][] = [
    ['exec', () => env.exec(['true'])],
    ['spawn', () => env.spawn(['true']).result],
    ['push', () => env.push(new Uint8Array(), '/tmp/after-close')],
    ['pull', () => env.pull('/tmp', dest)],
    ['pushArchive', () => env.pushArchive(emptyTar(), '/tmp')],
    ['pullArchive', () => drained(env.pullArchive('/tmp'))],
    ['stat', () => env.stat('/')],
    ['readDir', () => env.readDir('/')],
  ];
  for (const [op, run] of ops) {
    const err = await ctx.within(
      10_000,
      env.id,
      `${op} after close`,
      'a rejection with CLOSED',
      rejection(Promise.resolve().then(run)),
    );
    if (err !== HUNG) ctx.expect(env.id, `${op} after close`, codeOf(err), 'CLOSED');
  }
  const pulled = await access(dest).then(
    () => true,
    () => false,
  );
  if (pulled) ctx.problem(env.id, 'pull after close', `host path ${dest} created`, 'nothing written on the host');
}

/**
 * An open whose signal has fired, or fires while it runs, rejects with
 * ABORTED and leaves nothing: no environment listed, nothing on the host.
 * The signal fires mid-open twice: at the driver's create event (so the case
 * holds whatever the backend's speed) and half-way through an open as long
 * as one just measured (for drivers whose slow part comes after that event).
 */
async function openAbort(ctx: CheckContext): Promise<void> {
  const { driver, spec, openOptions } = ctx.options;
  const created = new Set<string>();
  const opened = new Set<string>();
  const before = new Set((await listedIds(ctx)) ?? []);

  /**
   * Opens with a signal that `arm` fires, at once, at the create event or
   * on a timer; wants ABORTED once it fired. Resolves to whether the driver
   * emitted a create event.
   */
  const attempt = async (
    what: string,
    arm: (abort: () => void) => { onCreate?: () => void; disarm?: () => void },
    waitMs = 60_000,
  ): Promise<boolean> => {
    const ac = new AbortController();
    let fired = false;
    let sawCreate = false;
    const trigger = arm(() => {
      fired = true;
      ac.abort();
    });
    const opening = driver.open(spec, {
      ...openOptions,
      signal: ac.signal,
      onEvent: (e) => {
        if (e.type === 'create') {
          created.add(e.envId);
          if (!sawCreate) trigger.onCreate?.();
          sawCreate = true;
        }
        openOptions?.onEvent?.(e);
      },
    });
    const err = await ctx.within(
      waitMs,
      driver.name,
      what,
      'a rejection with ABORTED',
      rejection(
        opening.then((env) => {
          opened.add(env.id);
          ctx.adopt(env);
          if (fired) ctx.problem(env.id, what, 'an environment, after the signal fired', 'a rejection with ABORTED');
          return env;
        }),
      ),
    );
    trigger.disarm?.();
    if (err !== HUNG && err !== undefined) ctx.expect(driver.name, what, codeOf(err), 'ABORTED');
    return sawCreate;
  };

  await attempt('open with an aborted signal', (abort) => {
    abort();
    return {};
  });

  // A microtask, not at once: the abort then lands in the driver's open, after its emit returned.
  const sawCreate = await attempt('open aborted at its create event', (abort) => ({
    onCreate: () => queueMicrotask(abort),
  }));
  if (!sawCreate)
    ctx.problem(
      driver.name,
      'open aborted at its create event',
      'an environment without a create event',
      'a create event, then a rejection with ABORTED',
    );

  const started = performance.now();
  const timed = await ctx.open();
  const openMs = performance.now() - started;
  if ((await ctx.within(60_000, timed.id, 'close', 'closed', timed.close())) === HUNG) {
    ctx.abandon(timed);
    return;
  }
  const abortAfter = Math.max(1, Math.round(openMs / 2));
  await attempt(
    `open aborted ${abortAfter} ms in (an open takes ${Math.round(openMs)} ms)`,
    (abort) => {
      const timer = setTimeout(abort, abortAfter);
      return { disarm: () => clearTimeout(timer) };
    },
    Math.max(60_000, Math.round(openMs * 3)),
  );

  const listed = (await listedIds(ctx)) ?? [];
  const extra = listed.filter((id) => !before.has(id) && !opened.has(id));
  if (extra.length > 0) ctx.problem(driver.name, 'list() after aborted opens', extra, 'no new environments');
  for (const id of created) {
    if (opened.has(id)) continue;
    const left = await settledEvidence(id, ctx.options);
    if (left.length > 0) ctx.problem(id, 'what the host shows after an aborted open', left, []);
  }
}

/** The lifecycle events of one environment, in order: create, ready, exec-start, exec-end, destroy once. */
async function events(ctx: CheckContext): Promise<void> {
  const { openOptions } = ctx.options;
  const seen: ExecenvEvent[] = [];
  const env = await ctx.open(ctx.options.spec, {
    ...openOptions,
    onEvent: (e) => {
      seen.push(e);
      openOptions?.onEvent?.(e);
    },
  });
  const lifecycle = new Set(['create', 'ready', 'exec-start', 'exec-end', 'destroy']);
  const mine = (from = 0) =>
    seen.slice(from).filter((e) => lifecycle.has(e.type) && (e as { envId?: string }).envId === env.id);
  ctx.expect(
    env.id,
    'events of open',
    mine().map((e) => e.type),
    ['create', 'ready'],
  );
  const others = seen.filter((e) => (e as { envId?: string }).envId && (e as { envId?: string }).envId !== env.id);
  if (others.length > 0)
    ctx.problem(
      env.id,
      'events of open',
      others.map((e) => `${e.type} of ${(e as { envId?: string }).envId}`),
      'only events of this environment',
    );
  const mark = seen.length;
  await env.exec(['echo', 'event'], { timeout: ctx.ms(30_000) });
  const exec = mine(mark);
  ctx.expect(
    env.id,
    'events of exec ["echo","event"]',
    exec.map((e) =>
      e.type === 'exec-start'
        ? `exec-start ${JSON.stringify(e.argv)}`
        : e.type === 'exec-end'
          ? `exec-end ${JSON.stringify(e.argv)} ${e.exitCode}`
          : e.type,
    ),
    ['exec-start ["echo","event"]', 'exec-end ["echo","event"] 0'],
  );
  const beforeClose = seen.length;
  if ((await ctx.within(60_000, env.id, 'close', 'closed', env.close())) === HUNG) {
    ctx.abandon(env);
    return;
  }
  await env.close();
  ctx.expect(
    env.id,
    'events of close, close',
    mine(beforeClose).map((e) => e.type),
    ['destroy'],
  );
}

async function invalidSpec(ctx: CheckContext): Promise<void> {
  const { driver, spec, openOptions } = ctx.options;
  const before = await listedIds(ctx);
  for (const [field, bad] of [
    ['arch', { ...spec, arch: 'vax' }],
    ['resources.memory', { ...spec, resources: { memory: 'lots' } }],
    ['mounts[0].source', { ...spec, mounts: [{ source: 'relative', target: '/mnt' }] }],
  ] as const) {
    // An open that wrongly succeeds is closed when the check ends.
    const err = await rejection(ctx.open(bad as never, openOptions));
    ctx.expect(
      driver.name,
      `open with a bad ${field}`,
      [codeOf(err), (err as { field?: string })?.field],
      ['INVALID_SPEC', field],
    );
  }
  const after = await listedIds(ctx);
  if (before && after)
    ctx.expect(
      driver.name,
      'environments listed after refused opens',
      after.filter((id) => !before.includes(id)),
      [],
    );
}

async function concurrency(ctx: CheckContext): Promise<void> {
  const envs = await Promise.all([0, 1, 2, 3].map(() => ctx.open()));
  const name = `/tmp/${unique('mine')}`;
  await Promise.all(envs.map((env, i) => env.push(new TextEncoder().encode(`env ${i}`), name)));
  const seen = await Promise.all(envs.map((env) => env.exec(['cat', name]).then((r) => r.stdout)));
  for (const [i, env] of envs.entries())
    ctx.expect(env.id, `cat ${name} in environment ${i} of 4`, seen[i], `env ${i}`);
  const busy = await Promise.all(
    envs.map((env, i) => env.exec(['sh', '-c', `echo ${i} > /tmp/own; sleep 0.2; cat /tmp/own`])),
  );
  for (const [i, r] of busy.entries()) ctx.expect(envs[i]!.id, 'concurrent exec', r.stdout.trim(), String(i));
}

/**
 * An image whose /dev, /proc and /tmp are symlinks to host directories opens
 * (or is refused with an ExecenvError) and closes without anything written
 * to or mounted on those directories, while open and after close.
 */
async function hostileImageSymlinks(ctx: CheckContext): Promise<void> {
  const { imageWithSymlinks } = ctx.options;
  if (!imageWithSymlinks)
    ctx.skip(
      'an image with /dev, /proc and /tmp as symlinks to host paths: give imageWithSymlinks in the conformance options',
    );
  const links: Record<string, string> = {};
  for (const entry of ['/dev', '/proc', '/tmp']) {
    const dir = await realpath(await ctx.hostDir());
    await writeFile(join(dir, 'planted'), `${unique('planted')}\n`);
    await mkdir(join(dir, 'planted-dir'));
    links[entry] = dir;
  }
  const before = new Map<string, string[]>();
  for (const dir of Object.values(links)) before.set(dir, await hostState(dir));
  const unchanged = async (when: string) => {
    for (const [entry, dir] of Object.entries(links))
      ctx.expect(
        ctx.options.driver.name,
        `host directory ${dir} (the image's ${entry}) ${when}`,
        await hostState(dir),
        before.get(dir),
      );
  };
  const spec = await imageWithSymlinks(links);
  let env: Environment | undefined;
  const refused = await rejection(
    ctx.open(spec).then((e) => {
      env = e;
    }),
  );
  if (refused !== undefined && !(refused instanceof ExecenvError && refused.code))
    ctx.problem(
      ctx.options.driver.name,
      'open of an image with symlinked /dev, /proc, /tmp',
      refused,
      'an environment, or an ExecenvError with a code',
    );
  if (env) {
    const r = await env.exec(['echo', 'ok'], { timeout: ctx.ms(30_000) }).catch((err: unknown) => err);
    ctx.expect(
      env.id,
      'echo ok in an image with symlinked /dev, /proc, /tmp',
      (r as { stdout?: string }).stdout ?? r,
      'ok\n',
    );
    await unchanged('while open');
    const closed = await rejection(env.close());
    if (closed !== undefined) ctx.problem(env.id, 'close', closed, 'no error');
  }
  await unchanged(env ? 'after close' : 'after a refused open');
}

/** Names at or below dir containing `id`, not descending into matches or past `depth` levels. */
async function namesWith(dir: string, id: string, depth = 32): Promise<string[]> {
  const found: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.name.includes(id)) found.push(p);
    else if (e.isDirectory() && depth > 0) found.push(...(await namesWith(p, id, depth - 1)));
  }
  return found;
}

/**
 * Close removes an environment holding a tree deeper than PATH_MAX: it
 * resolves, list() no longer shows it, and nothing named after it is left in
 * the state directory.
 */
async function deepTreeClose(ctx: CheckContext): Promise<void> {
  const env = await ctx.open();
  const levels = 2100;
  const top = unique('deep');
  // cd -P: a shell's logical cd would chdir through the whole path, which stops at PATH_MAX.
  const made = await env.exec(
    [
      'sh',
      '-c',
      `cd /tmp && mkdir ${top} && cd ${top} && i=0; ` +
        `while [ $i -lt ${levels} ]; do mkdir d0 && cd -P d0 || exit 1; i=$((i+1)); done; echo $i`,
    ],
    { timeout: ctx.ms(120_000) },
  );
  if (made.exitCode !== 0 || made.stdout.trim() !== String(levels))
    ctx.problem(
      env.id,
      `sh loop making a tree ${levels} levels deep (${levels * 3} bytes of path)`,
      `exit ${made.exitCode ?? made.signal}: ${made.stdout.trim()} ${made.stderr.trim()}`.trim(),
      `exit 0: ${levels}`,
    );
  const closed = await rejection(env.close());
  if (closed !== undefined) ctx.problem(env.id, 'close with a tree deeper than PATH_MAX inside', closed, 'no error');
  const listed = await listedIds(ctx);
  if (listed?.includes(env.id)) ctx.problem(env.id, 'list() after close', 'still listed', 'gone');
  const stateDir = ctx.options.openOptions?.stateDir;
  if (stateDir) {
    const left = await namesWith(stateDir, env.id);
    if (left.length > 0) ctx.problem(env.id, `names in ${stateDir} after close`, left, 'none with the environment id');
  }
}

async function capabilities(ctx: CheckContext): Promise<void> {
  const env = await ctx.open();
  const declared = (c: string) => env.capabilities.has(c as never);
  if (isRevertable(env)) {
    const marker = `/tmp/${unique('revert')}`;
    await env.exec(['touch', marker], { check: true });
    await revert(env);
    ctx.expect(env.id, `test -e ${marker} after revert`, (await env.exec(['test', '-e', marker])).exitCode, 1);
  } else {
    if (declared('revert')) ctx.problem(env.id, 'revert', 'declared but not implemented', 'both or neither');
    ctx.expect(
      env.id,
      'revert() without the capability',
      codeOf(await rejection(Promise.resolve().then(() => revert(env)))),
      'UNSUPPORTED',
    );
  }
  if (isSnapshottable(env)) {
    const marker = `/tmp/${unique('snapshot')}`;
    await snapshot(env, 'conformance');
    await env.exec(['touch', marker], { check: true });
    await restore(env, 'conformance');
    ctx.expect(env.id, `test -e ${marker} after restore`, (await env.exec(['test', '-e', marker])).exitCode, 1);
  } else {
    ctx.expect(
      env.id,
      'snapshot() without the capability',
      codeOf(await rejection(Promise.resolve().then(() => snapshot(env, 'x')))),
      'UNSUPPORTED',
    );
  }
  if (isRebootable(env)) {
    await reboot(env);
    ctx.expect(env.id, 'exec after reboot', (await env.exec(['true'])).exitCode, 0);
  } else {
    ctx.expect(
      env.id,
      'reboot() without the capability',
      codeOf(await rejection(Promise.resolve().then(() => reboot(env)))),
      'UNSUPPORTED',
    );
  }
  if (isPublishable(env)) {
    const ref = await publish(env, unique('execenv-conformance'));
    if (typeof ref !== 'string' || ref.length === 0) ctx.problem(env.id, 'publish', ref, 'an image reference');
  } else {
    ctx.expect(
      env.id,
      'publish() without the capability',
      codeOf(await rejection(Promise.resolve().then(() => publish(env, 'x')))),
      'UNSUPPORTED',
    );
  }
}

/** Checks of opening and closing, run first. */
export const openingChecks: Check[] = [
  { name: 'open-close', run: openClose },
  { name: 'closed-operations', run: closedOperations },
  { name: 'open-abort', run: openAbort, timeoutMs: 120_000 },
  { name: 'events', run: events },
  { name: 'invalid-spec', run: invalidSpec },
];

/** Checks of isolation between environments, hostile images, deep trees and capabilities, run last. */
export const closingChecks: Check[] = [
  { name: 'concurrency', run: concurrency, timeoutMs: 120_000 },
  { name: 'hostile-image-symlinks', run: hostileImageSymlinks, timeoutMs: 120_000 },
  { name: 'deep-tree-close', run: deepTreeClose, timeoutMs: 240_000 },
  { name: 'capabilities', run: capabilities, timeoutMs: 300_000 },
];
