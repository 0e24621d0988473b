import { hostRunner } from '../../runner.js';
import type { EnvSpec } from '../../spec.js';
import {
  type Check,
  type CheckContext,
  codeOf,
  type HostEvidenceKind,
  HUNG,
  rejection,
  show,
  unique,
} from '../context.js';
import { hostEvidence, settledEvidence } from './evidence.js';
import { listedIds } from './lifecycle.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * close() leaves nothing, judged by what the host shows (mounts, processes,
 * state files, the backend's own listing), not only by the driver's list().
 * A driver without list() fails unless it declares why (withoutList). What
 * the host shows after close only means something if it showed the
 * environment while open: every kind the driver declares in visibleOnHost
 * must be there then; a driver that declares none, and of which the host
 * shows nothing, has the check skipped with that reason (unless list()
 * already found a problem).
 */
async function leaks(ctx: CheckContext): Promise<void> {
  const { driver, withoutList } = ctx.options;
  if (!driver.list && !withoutList)
    ctx.problem(driver.name, 'list()', 'no list()', 'a list() the leak checks can ask, or withoutList: "<reason>"');
  const mark = unique('execenv-leak-mark');
  const env = await ctx.open();
  const running = env.spawn(['sleep', '30'], { env: { EXECENV_LEAK_MARK: mark } });
  running.result.catch(() => {});
  await sleep(300);
  const listed = await listedIds(ctx);
  if (listed && !listed.includes(env.id))
    ctx.problem(env.id, 'list() while open', listed, `a list including ${env.id}`);
  const whileOpen = await hostEvidence(env.id, ctx.options, [mark]);
  const declared = ctx.options.visibleOnHost ?? [];
  const seen = new Set(whileOpen.map(evidenceKind));
  const unseen = declared.filter((kind) => !seen.has(kind));
  if (unseen.length > 0)
    ctx.problem(
      env.id,
      `what the host shows while open (visibleOnHost: ${declared.join(', ')})`,
      whileOpen,
      `entries of every declared kind, none of ${unseen.join(', ')} seen`,
    );
  if ((await ctx.within(30_000, env.id, 'close while sleep 30 runs', 'closed', env.close())) === HUNG) {
    ctx.abandon(env);
    return;
  }
  const after = await listedIds(ctx);
  if (after?.includes(env.id)) ctx.problem(env.id, 'list() after close', 'still listed', 'gone');
  const left = await settledEvidence(env.id, ctx.options, [mark]);
  if (left.length > 0)
    ctx.problem(env.id, `what the host shows after close (while open: ${whileOpen.length} entries)`, left, []);
  if (whileOpen.length === 0 && declared.length === 0)
    ctx.skip(
      `could not see the environment on the host: while ${env.id} was open, no mount, process, state entry ` +
        'or backendResources line named it, so an empty host after close proves nothing (list() was checked); ' +
        'declare what the host shows with visibleOnHost, or give backendResources',
    );
}

/** The kind of a hostEvidence line: its first word. */
function evidenceKind(line: string): HostEvidenceKind {
  return line.slice(0, line.indexOf(' ')) as HostEvidenceKind;
}

/**
 * close() while commands run ends them and resolves promptly; the commands'
 * results settle too, never hang.
 */
async function closeWhileRunning(ctx: CheckContext): Promise<void> {
  const env = await ctx.open();
  const spawned = env.spawn(['sleep', '60']);
  spawned.result.catch(() => {});
  const executing = env.exec(['sleep', '60']);
  executing.catch(() => {});
  await sleep(500);
  const closed = await ctx.within(
    15_000,
    env.id,
    'close while two sleep 60 run',
    'closed, the commands killed',
    rejection(env.close()),
  );
  if (closed === HUNG) {
    ctx.abandon(env);
    return;
  }
  if (closed !== undefined) ctx.problem(env.id, 'close while two sleep 60 run', closed, 'no error');
  for (const [what, result] of [
    ['spawn sleep 60', spawned.result],
    ['exec sleep 60', executing],
  ] as const) {
    const settled = await ctx.within(
      10_000,
      env.id,
      `${what} across close`,
      'a result (killed) or a rejection',
      result.then(
        (r) => `exit ${r.exitCode ?? r.signal}`,
        (e: unknown) => codeOf(e),
      ),
    );
    if (settled !== HUNG && settled === 'exit 0')
      ctx.problem(env.id, `${what} across close`, 'it ran to the end', 'killed by close');
  }
}

/** The child that opens an environment, starts a command, prints the id and waits to be killed. */
const OWNER_SCRIPT = `
const [module, exportName, args, spec, openOptions] = JSON.parse(process.argv[1]);
const m = await import(module);
const driver = new m[exportName](...args);
const env = await driver.open(spec, { ...openOptions, closeOnSignal: false });
env.spawn(['sleep', '60']).result.catch(() => {});
await new Promise((r) => setTimeout(r, 300));
process.stdout.write(env.id + '\\n');
setInterval(() => {}, 1 << 30);
`;

/** Reads lines of a stream until one matches, or rejects when it ends first. */
function firstLine(stream: NodeJS.ReadableStream, re: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    stream.on('data', (c: Buffer) => {
      text += c.toString();
      const m = re.exec(text);
      if (m) resolve(m[0]);
    });
    stream.on('end', () =>
      reject(new Error(`owner ended without printing an id: ${JSON.stringify(text.slice(-300))}`)),
    );
  });
}

/**
 * A process that opened an environment and ran a command is killed with
 * SIGKILL: gc() then removes everything it left (nothing shows on the
 * host), and a second gc() removes nothing more of it.
 */
async function gcAfterKill(ctx: CheckContext): Promise<void> {
  const { driver, ownerProcess, spec, openOptions } = ctx.options;
  if (!driver.gc) {
    ctx.problem(driver.name, 'gc()', 'no gc()', 'a gc() that removes what dead owners left');
    return;
  }
  if (!ownerProcess)
    ctx.skip(
      'needs a separate owner process: give ownerProcess { module, exportName, args } in the conformance options',
    );
  const stateDir = openOptions?.stateDir;
  const payload = JSON.stringify([
    ownerProcess.module,
    ownerProcess.exportName,
    ownerProcess.args ?? [],
    spec as EnvSpec,
    stateDir ? { stateDir } : {},
  ]);
  const child = hostRunner().spawn([process.execPath, '--input-type=module', '-e', OWNER_SCRIPT, payload], {
    cwd: process.cwd(),
    stdin: 'ignore',
    env: Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined)),
  });
  const errors: string[] = [];
  child.stderr?.on('data', (c: Buffer) => errors.push(c.toString()));
  let id: string | typeof HUNG;
  try {
    id = await ctx.within(
      300_000,
      driver.name,
      'owner process opening an environment',
      'an environment id on its stdout',
      firstLine(child.stdout!, /execenv-[a-z0-9]+(?=\n)/),
    );
  } catch (err) {
    ctx.problem(
      driver.name,
      'owner process opening an environment',
      `${show(err)} ${errors.join('').slice(-500)}`,
      'an environment id',
    );
    child.kill('SIGKILL');
    return;
  } finally {
    child.kill('SIGKILL');
    await child.exited.catch(() => {});
  }
  if (id === HUNG) return;
  const listed = driver.list ? await driver.list({ stateDir }) : undefined;
  const entry = listed?.find((e) => e.id === id);
  if (listed && !entry) ctx.problem(id, 'list() after its owner was killed', 'not listed', 'listed, ownerAlive false');
  else if (entry?.ownerAlive)
    ctx.problem(id, 'list() after its owner was killed', 'ownerAlive true', 'ownerAlive false');
  const first = await ctx.within(
    120_000,
    driver.name,
    'gc() after the owner was killed',
    'a report',
    driver.gc({ stateDir }),
  );
  if (first === HUNG) return;
  if (!first.removed.includes(id))
    ctx.problem(id, 'gc() after the owner was killed: removed', first.removed, `a list including ${id}`);
  if (first.errors.length > 0) ctx.problem(id, 'gc() after the owner was killed: errors', first.errors, []);
  const left = await settledEvidence(id, ctx.options);
  if (left.length > 0) ctx.problem(id, 'what the host shows after gc()', left, []);
  const again = await ctx.within(120_000, driver.name, 'a second gc()', 'a report', driver.gc({ stateDir }));
  if (again === HUNG) return;
  if (again.removed.includes(id)) ctx.problem(id, 'a second gc(): removed', again.removed, `nothing of ${id}`);
  if (again.errors.length > 0) ctx.problem(id, 'a second gc(): errors', again.errors, []);
}

/** Checks that close and gc leave nothing, judged by the host. */
export const leakChecks: Check[] = [
  { name: 'leaks', run: leaks },
  { name: 'close-while-running', run: closeWhileRunning },
  { name: 'gc-after-kill', run: gcAfterKill, timeoutMs: 300_000 },
];
