import { readFile } from 'node:fs/promises';

function unescapeMountPath(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

/**
 * Mount points of this process's mount namespace, from /proc/self/mountinfo, in mount order.
 *
 * @example
 * ```ts
 * import { mountPoints } from '@execenv/core';
 * const mounts = await mountPoints(); // ['/', '/proc', '/sys', ...] in mount order
 * if (!mounts.includes('/sys/fs/cgroup')) console.warn('no cgroup filesystem mounted');
 * ```
 */
export async function mountPoints(mountinfo = '/proc/self/mountinfo'): Promise<string[]> {
  const text = await readFile(mountinfo, 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => unescapeMountPath(line.split(' ')[4] ?? ''));
}

/**
 * Mount points equal to `path` or below it.
 *
 * @example
 * ```ts
 * import { mountsUnder } from '@execenv/core';
 * const left = await mountsUnder('/var/lib/foo/e1/rootfs');
 * if (left.length > 0) throw new Error(`still mounted: ${left.join(', ')}`);
 * ```
 */
export async function mountsUnder(path: string): Promise<string[]> {
  const prefix = path.endsWith('/') ? path : `${path}/`;
  return (await mountPoints()).filter((m) => m === path || m.startsWith(prefix));
}
