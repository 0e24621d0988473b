import type { Check, CheckContext, ConformanceOptions } from '../context.js';
import { HUNG } from '../context.js';

/**
 * The commands the suite runs inside an environment: busybox applets or
 * coreutils. The image also needs a user `nobody` with uid and gid 65534
 * and a world-writable, sticky `/tmp`.
 *
 * @example
 * ```ts
 * import { missingCommandsScript, REQUIRED_COMMANDS } from '@execenv/core/conformance';
 * // The suite's commands, plus those the driver's own helpers run inside:
 * const r = await env.exec(['sh', '-c', missingCommandsScript([...REQUIRED_COMMANDS, 'tar', 'mount'])]);
 * if (r.stdout) throw new Error(`the image lacks ${r.stdout.trim().split('\n').join(', ')}`);
 * ```
 */
export const REQUIRED_COMMANDS: readonly string[] = [
  'sh',
  'cat',
  'echo',
  'env',
  'false',
  'head',
  'id',
  'kill',
  'ln',
  'mkdir',
  'printf',
  'pwd',
  'rm',
  'sleep',
  'stat',
  'test',
  'touch',
  'true',
];

const missingByOptions = new WeakMap<ConformanceOptions, string[]>();

/** What the image-prerequisites check found missing for these options; empty before it ran or when nothing is. */
export function missingPrerequisites(options: ConformanceOptions): string[] {
  return missingByOptions.get(options) ?? [];
}

/**
 * The script that prints each required command the image lacks, one a line.
 *
 * @example
 * ```ts
 * import { missingCommandsScript } from '@execenv/core/conformance';
 * // Is this image good enough for the suite? Prints what it lacks, one a line.
 * const r = await env.exec(['sh', '-c', missingCommandsScript()]);
 * if (r.stdout) console.log(`the image lacks ${r.stdout.trim().split('\n').join(', ')}`);
 * ```
 */
export function missingCommandsScript(commands: readonly string[] = REQUIRED_COMMANDS): string {
  return `for c in ${commands.join(' ')}; do command -v "$c" >/dev/null 2>&1 || echo "$c"; done`;
}

/**
 * Checks what the suite needs from the image before anything else, so a
 * missing applet reads as "the image lacks X", not as a driver failure.
 */
async function imagePrerequisites(ctx: CheckContext): Promise<void> {
  const env = await ctx.env();
  const lacks: string[] = [];
  const want = `${REQUIRED_COMMANDS.join(', ')} (busybox or coreutils), user nobody 65534:65534, /tmp mode 1777`;
  const sh = await ctx.within(30_000, env.id, 'sh -c "exit 0"', 'exit 0', env.exec(['sh', '-c', 'exit 0']));
  if (sh === HUNG) return;
  if (sh.exitCode !== 0) lacks.push('sh');
  else {
    const r = await ctx.within(
      30_000,
      env.id,
      'looking for the commands the suite runs',
      'a list of missing commands',
      env.exec(['sh', '-c', missingCommandsScript()]),
    );
    if (r === HUNG) return;
    lacks.push(...r.stdout.split('\n').filter(Boolean));
  }
  for (const flag of ['-u', '-g']) {
    const r = await ctx.within(30_000, env.id, `id ${flag} nobody`, '65534', env.exec(['id', flag, 'nobody']));
    if (r === HUNG) return;
    if (r.exitCode !== 0 || r.stdout.trim() !== '65534')
      lacks.push(
        `a user nobody with ${flag === '-u' ? 'uid' : 'gid'} 65534 (id ${flag} nobody: ${r.stdout.trim() || r.stderr.trim()})`,
      );
  }
  const tmp = await env.stat('/tmp');
  if (tmp?.type !== 'directory' || (tmp.mode & 0o1777) !== 0o1777)
    lacks.push(
      `a /tmp directory with mode 1777 (got ${tmp ? `${tmp.type} ${(tmp.mode & 0o7777).toString(8)}` : 'none'})`,
    );
  missingByOptions.set(ctx.options, lacks);
  if (lacks.length > 0)
    ctx.problems.push(`${env.id}: image prerequisites: the image lacks ${lacks.join('; ')}; want ${want}`);
}

/** The first check: what the suite needs from the image. */
export const prerequisitesCheck: Check = { name: 'image-prerequisites', run: imagePrerequisites };
