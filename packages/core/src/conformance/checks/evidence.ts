import { readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { mountPoints } from '../../lifecycle/mounts.js';
import { defaultStateDir } from '../../lifecycle/state-dir.js';
import type { ConformanceOptions } from '../context.js';

/** How deep the state directory is searched for names holding an environment id. */
const STATE_DEPTH = 4;

/**
 * What the host itself shows of an environment, whatever the driver says:
 * mounts whose point or source names `id`, processes whose command line,
 * root or working directory names `id` or whose environment holds one of
 * `markers`, names under the state directory holding `id`, and what the
 * driver's `backendResources` hook lists. One line each; empty when nothing
 * is left.
 */
export async function hostEvidence(
  id: string,
  options: Pick<ConformanceOptions, 'openOptions' | 'backendResources'>,
  markers: readonly string[] = [],
): Promise<string[]> {
  const stateDir = options.openOptions?.stateDir ?? defaultStateDir();
  const mounts = await mountsNaming(id);
  const found = [
    ...mounts.map((m) => `mount ${m}`),
    ...(await processesNaming(id, markers)),
    ...(await namesWith(stateDir, id, new Set(await mountPoints().catch(() => [])))).map((p) => `state ${p}`),
  ];
  if (options.backendResources) found.push(...(await options.backendResources(id)).map((r) => `backend ${r}`));
  return found;
}

/**
 * Polls hostEvidence until it is empty or `ms` passed, for what a close may
 * leave for an instant (a killed process not yet reaped).
 */
export async function settledEvidence(
  id: string,
  options: Pick<ConformanceOptions, 'openOptions' | 'backendResources'>,
  markers: readonly string[] = [],
  ms = 2000,
): Promise<string[]> {
  const until = Date.now() + ms;
  for (;;) {
    const found = await hostEvidence(id, options, markers);
    if (found.length === 0 || Date.now() >= until) return found;
    await new Promise((r) => setTimeout(r, 100));
  }
}

function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

/** Mount points of this mount namespace whose point or source names `id`. */
async function mountsNaming(id: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const points: string[] = [];
  for (const line of text.split('\n')) {
    if (!line.includes(id)) continue;
    const fields = line.split(' ');
    points.push(unescapeMountField(fields[4] ?? line));
  }
  return points;
}

/** Live processes (not zombies) that name `id` in argv, root or cwd, or hold a marker in their environment. */
async function processesNaming(id: string, markers: readonly string[]): Promise<string[]> {
  const found: string[] = [];
  const pids = (await readdir('/proc').catch(() => [])).filter((n) => /^\d+$/.test(n) && Number(n) !== process.pid);
  for (const pid of pids) {
    const dir = join('/proc', pid);
    const stat = await readFile(join(dir, 'stat'), 'utf8').catch(() => '');
    if (stat === '' || /^\d+ \(.*\) [ZX] /s.test(stat)) continue;
    const cmdline = (await readFile(join(dir, 'cmdline')).catch(() => Buffer.alloc(0)))
      .toString()
      .replaceAll('\0', ' ')
      .trim();
    const root = await readlink(join(dir, 'root')).catch(() => '');
    const cwd = await readlink(join(dir, 'cwd')).catch(() => '');
    let why = [cmdline, root, cwd].some((s) => s.includes(id));
    if (!why && markers.length > 0) {
      const environ = (await readFile(join(dir, 'environ')).catch(() => Buffer.alloc(0))).toString();
      why = markers.some((m) => environ.includes(m));
    }
    if (why) found.push(`process ${pid} ${JSON.stringify(cmdline.slice(0, 120))}`);
  }
  return found;
}

/**
 * Names at or below dir holding `id`, not descending into matches, mount
 * points or past `depth` levels, so another environment's root is never walked.
 */
export async function namesWith(
  dir: string,
  id: string,
  mounts: ReadonlySet<string> = new Set(),
  depth = STATE_DEPTH,
): Promise<string[]> {
  const found: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.name.includes(id)) found.push(p);
    else if (e.isDirectory() && depth > 0 && !mounts.has(p)) found.push(...(await namesWith(p, id, mounts, depth - 1)));
  }
  return found;
}
