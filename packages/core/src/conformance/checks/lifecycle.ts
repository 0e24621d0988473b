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
import { type Check, type CheckContext, codeOf, rejection, unique } from '../context.js';

const ISOLATION = ['isolation-chroot', 'isolation-container', 'isolation-machine'];

async function listedIds(ctx: CheckContext): Promise<string[] | undefined> {
  const { driver, openOptions } = ctx.options;
  if (!driver.list) return undefined;
  return (await driver.list({ stateDir: openOptions?.stateDir })).map((e) => e.id);
}

async function openClose(ctx: CheckContext): Promise<void> {
  const { driver, spec, openOptions } = ctx.options;
  const a = await driver.open(spec, openOptions);
  const b = await driver.open(spec, openOptions);
  try {
    for (const env of [a, b]) {
      if (!/^execenv-[a-z0-9]+$/.test(env.id))
        ctx.problem(env.id, 'id', env.id, 'execenv-<lower-case letters and digits>');
      ctx.expect(env.id, 'driver', env.driver, driver.name);
      const isolation = [...env.capabilities].filter((c) => ISOLATION.includes(c));
      if (isolation.length !== 1) ctx.problem(env.id, 'capabilities', isolation, 'exactly one isolation-* capability');
    }
    if (a.id === b.id) ctx.problem(a.id, 'ids of two environments', 'the same id', 'different ids');
  } finally {
    await b.close();
  }
  await a.close();
  await a.close();
  for (const [op, p] of [
    ['exec after close', a.exec(['true'])],
    ['push after close', a.push(new Uint8Array(), '/tmp/x')],
    ['stat after close', a.stat('/')],
  ] as const)
    ctx.expect(a.id, op, codeOf(await rejection(p)), 'CLOSED');
  let disposed: Environment | undefined;
  {
    await using env = await driver.open(spec, openOptions);
    disposed = env;
    ctx.expect(env.id, 'exec inside await using', (await env.exec(['true'])).exitCode, 0);
  }
  ctx.expect(disposed.id, 'exec after await using ended', codeOf(await rejection(disposed.exec(['true']))), 'CLOSED');
}

async function invalidSpec(ctx: CheckContext): Promise<void> {
  const { driver, spec, openOptions } = ctx.options;
  const before = await listedIds(ctx);
  for (const [field, bad] of [
    ['arch', { ...spec, arch: 'vax' }],
    ['resources.memory', { ...spec, resources: { memory: 'lots' } }],
    ['mounts[0].source', { ...spec, mounts: [{ source: 'relative', target: '/mnt' }] }],
  ] as const) {
    const err = await rejection(driver.open(bad as never, openOptions));
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

async function leaks(ctx: CheckContext): Promise<void> {
  if (!ctx.options.driver.list) ctx.skip('driver has no list()');
  const env = await ctx.options.driver.open(ctx.options.spec, ctx.options.openOptions);
  await env.exec(['sh', '-c', 'sleep 30 & echo started'], { timeout: 10_000 });
  const listed = await listedIds(ctx);
  if (listed && !listed.includes(env.id))
    ctx.problem(env.id, 'list() while open', listed, `a list including ${env.id}`);
  await env.close();
  const after = await listedIds(ctx);
  if (after?.includes(env.id)) ctx.problem(env.id, 'list() after close', 'still listed', 'gone');
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

/** Checks of the environment lifecycle, isolation between environments, leaks and capabilities. */
export const lifecycleChecks: Check[] = [
  { name: 'open-close', run: openClose },
  { name: 'invalid-spec', run: invalidSpec },
  { name: 'concurrency', run: concurrency, timeoutMs: 120_000 },
  { name: 'leaks', run: leaks },
  { name: 'capabilities', run: capabilities, timeoutMs: 300_000 },
];
