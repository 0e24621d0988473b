import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Environment } from '../../contract.js';
import type { EnvSpec } from '../../spec.js';
import { type Check, type CheckContext, codeOf, HUNG, rejection } from '../context.js';

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

/**
 * The script of dev-stdio: writes through /dev/stdout and /dev/stderr and
 * reads one line through /dev/stdin. One line, not to EOF: opening a pipe
 * whose writer has closed blocks, so stdin stays open until the command ends.
 *
 * @example
 * ```ts
 * import { text } from 'node:stream/consumers';
 * import { DEV_STDIO_SCRIPT } from '@execenv/core/conformance';
 * // dev-stdio by hand, as nobody; stdin stays open until the command ends.
 * const p = env.spawn(['sh', '-c', DEV_STDIO_SCRIPT], { user: 'nobody' });
 * const out = text(p.stdout);
 * p.stdin?.write('in\n');
 * console.log((await p.result).exitCode, await out); // want 0 'out\nin\n'
 * p.stdin?.end();
 * ```
 */
export const DEV_STDIO_SCRIPT = 'echo out > /dev/stdout; echo err > /dev/stderr; head -n 1 /dev/stdin';

/** Collects a stream as text. */
function text(stream: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve(Buffer.concat(chunks).toString()));
    stream.on('error', () => resolve(Buffer.concat(chunks).toString()));
  });
}

/**
 * A command, as root and as nobody, can open its own /dev/stdout,
 * /dev/stderr and /dev/stdin: the streams are pipes it may open, not
 * sockets, and belong to (or are open to) the command's user.
 */
async function devStdio(ctx: CheckContext): Promise<void> {
  const env = await ctx.env();
  for (const user of ['root', 'nobody']) {
    const op = `sh -c '${DEV_STDIO_SCRIPT}' as ${user}`;
    const p = env.spawn(['sh', '-c', DEV_STDIO_SCRIPT], { user, timeout: ctx.ms(20_000) });
    const out = text(p.stdout);
    const err = text(p.stderr);
    p.stdin?.write('in\n');
    const r = await ctx.within(30_000, env.id, op, 'an exit', p.result);
    p.stdin?.end();
    if (r === HUNG) {
      p.kill();
      continue;
    }
    ctx.expect(
      env.id,
      op,
      { exitCode: r.exitCode, stdout: await out, stderr: await err },
      { exitCode: 0, stdout: 'out\nin\n', stderr: 'err\n' },
    );
  }
}

/**
 * Opens `spec`; a driver that cannot honour `field` may refuse with
 * UNSUPPORTED or INVALID_SPEC naming it, which ends the check as a declared
 * gap. Any other refusal is a problem.
 */
async function openWith(ctx: CheckContext, spec: EnvSpec, field: string): Promise<Environment | undefined> {
  let env: Environment | undefined;
  const err = await rejection(
    ctx.open(spec).then((e) => {
      env = e;
    }),
  );
  if (err === undefined) return env;
  const code = codeOf(err);
  const text = `${(err as Error).message ?? ''} ${(err as { field?: string }).field ?? ''}`;
  if ((code === 'UNSUPPORTED' || code === 'INVALID_SPEC') && text.includes(field))
    ctx.skip(`the driver refuses ${field} (${code}): ${(err as Error).message}`);
  ctx.problem(ctx.options.driver.name, `open with ${field}`, err, `an environment, or UNSUPPORTED naming ${field}`);
  return undefined;
}

/** network 'none' leaves a command only the loopback interface. */
async function networkNone(ctx: CheckContext): Promise<void> {
  const env = await openWith(ctx, { ...ctx.options.spec, network: 'none' }, 'network');
  if (!env) return;
  const r = await ctx.within(30_000, env.id, 'cat /proc/net/dev', 'an exit', env.exec(['cat', '/proc/net/dev']));
  if (r === HUNG) return;
  if (r.exitCode !== 0) {
    ctx.problem(env.id, "cat /proc/net/dev with network 'none'", `exit ${r.exitCode}: ${r.stderr.trim()}`, 'exit 0');
    return;
  }
  const interfaces = r.stdout
    .split('\n')
    .filter((l) => l.includes(':'))
    .map((l) => l.split(':')[0]!.trim());
  ctx.expect(env.id, "network interfaces with network 'none'", interfaces, ['lo']);
}

/**
 * spec.mounts shows host directories inside: read-write ones both ways,
 * read-only ones refusing writes; close leaves the host directories and
 * their files in place.
 */
async function mounts(ctx: CheckContext): Promise<void> {
  const rw = await ctx.hostDir();
  const ro = await ctx.hostDir();
  await writeFile(join(rw, 'hello'), 'from the host\n');
  await mkdir(join(rw, 'sub'));
  await writeFile(join(ro, 'file'), 'read only\n');
  const spec: EnvSpec = {
    ...ctx.options.spec,
    mounts: [
      { source: rw, target: '/mnt/execenv-rw' },
      { source: ro, target: '/mnt/execenv-ro', readOnly: true },
    ],
  };
  const env = await openWith(ctx, spec, 'mounts');
  if (!env) return;
  const run = async (argv: string[]) => {
    const r = await ctx.within(30_000, env.id, argv.join(' '), 'an exit', env.exec(argv));
    return r === HUNG ? undefined : r;
  };
  const hello = await run(['cat', '/mnt/execenv-rw/hello']);
  if (hello) ctx.expect(env.id, `cat /mnt/execenv-rw/hello (mounted from ${rw})`, hello.stdout, 'from the host\n');
  const readOnly = await run(['cat', '/mnt/execenv-ro/file']);
  if (readOnly) ctx.expect(env.id, `cat /mnt/execenv-ro/file (mounted from ${ro})`, readOnly.stdout, 'read only\n');
  const touched = await run(['touch', '/mnt/execenv-rw/from-inside']);
  if (touched) {
    ctx.expect(env.id, 'touch /mnt/execenv-rw/from-inside', touched.exitCode, 0);
    ctx.expect(env.id, `host ${rw}/from-inside after touch inside`, await exists(join(rw, 'from-inside')), true);
  }
  const refused = await run(['touch', '/mnt/execenv-ro/from-inside']);
  if (refused && refused.exitCode === 0)
    ctx.problem(env.id, 'touch /mnt/execenv-ro/from-inside (readOnly)', 'exit 0', 'a refusal');
  if (await exists(join(ro, 'from-inside')))
    ctx.problem(env.id, `host ${ro} after touch in a readOnly mount`, 'a new file from-inside', 'unchanged');
  if ((await ctx.within(60_000, env.id, 'close', 'closed', env.close())) === HUNG) {
    ctx.abandon(env);
    return;
  }
  ctx.expect(
    env.id,
    `host ${rw}/hello and ${ro}/file after close`,
    [
      await readFile(join(rw, 'hello'), 'utf8').catch(() => 'gone'),
      await readFile(join(ro, 'file'), 'utf8').catch(() => 'gone'),
      await exists(join(rw, 'sub')),
    ],
    ['from the host\n', 'read only\n', true],
  );
}

/** Checks of spec fields that change what a command sees: users' stdio, network, mounts. */
export const specChecks: Check[] = [
  { name: 'dev-stdio', run: devStdio },
  { name: 'network-none', run: networkNone },
  { name: 'mounts', run: mounts },
];
