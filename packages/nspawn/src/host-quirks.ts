import { mkdir, readFile } from 'node:fs/promises';
import { type ProcessRunner, withLock } from '@execenv/core';
import { hostEnv, pathExists } from '@execenv/core/driver';

/** Where systemd-nspawn keeps its per-machine propagation directories and image locks. */
export const NSPAWN_RUN_DIR = '/run/systemd/nspawn';

/** The propagation directory nspawn creates for a machine (and leaves behind when killed). */
export function propagationDir(machine: string): string {
  return `${NSPAWN_RUN_DIR}/propagate/${machine}`;
}

function unescapeMountPath(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

/** The type of the filesystem `path` lies on, from the longest mount point above it in mountinfo. */
export async function filesystemTypeOf(path: string, mountinfo = '/proc/self/mountinfo'): Promise<string | undefined> {
  const text = await readFile(mountinfo, 'utf8').catch(() => '');
  let best: { point: string; type: string } | undefined;
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    const point = unescapeMountPath(left?.split(' ')[4] ?? '');
    const type = right?.split(' ')[0];
    if (!point || !type) continue;
    const prefix = point.endsWith('/') ? point : `${point}/`;
    if ((path === point || path.startsWith(prefix)) && (!best || point.length >= best.point.length))
      best = { point, type };
  }
  return best?.type;
}

/** Whether the host's PID 1 is systemd (sd_booted: /run/systemd/system exists), which can give a container a scope. */
export function hostRunsSystemd(): Promise<boolean> {
  return pathExists('/run/systemd/system');
}

/**
 * Mounts a tmpfs on /run/systemd/nspawn when /run is disk-backed: nspawn
 * refuses to remove its propagation directories from a disk filesystem
 * ("Attempted to remove disk file system ... and we can't allow that") and
 * warns on every run. Does nothing where it is a tmpfs already. Serialised
 * by a lock so concurrent opens mount it once.
 */
export async function ensurePropagationTmpfs(runner: ProcessRunner, lockDir: string): Promise<void> {
  if ((await filesystemTypeOf(NSPAWN_RUN_DIR)) === 'tmpfs') return;
  await withLock(`${lockDir}/nspawn-run-tmpfs.lock`, async () => {
    if ((await filesystemTypeOf(NSPAWN_RUN_DIR)) === 'tmpfs') return;
    await mkdir(NSPAWN_RUN_DIR, { recursive: true, mode: 0o755 });
    await runner.run(['mount', '-t', 'tmpfs', '-o', 'mode=0755,nosuid,nodev', 'tmpfs', NSPAWN_RUN_DIR], {
      env: hostEnv(),
    });
  });
}
