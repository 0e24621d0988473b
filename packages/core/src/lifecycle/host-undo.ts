import { rm } from 'node:fs/promises';
import { hostEnv } from '../driver/host.js';
import type { ProcessRunner } from '../runner.js';
import type { LeaseResource, Undo } from './lease.js';
import { mountsUnder } from './mounts.js';
import { processStartTime } from './owner.js';

async function waitGone(pid: number, startTime: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if ((await processStartTime(pid)) !== startTime) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return false;
}

/**
 * Kills a recorded process (only if it is still the same process) and waits until it is gone.
 *
 * @example
 * ```ts
 * import { killRecordedProcess, processStartTime } from '@execenv/core';
 * const startTime = await processStartTime(pid); // recorded when the process was started
 * // later, even after its pid may have been reused:
 * if (startTime) await killRecordedProcess(pid, startTime); // kills only that same process
 * ```
 */
export async function killRecordedProcess(pid: number, startTime: string): Promise<void> {
  if ((await processStartTime(pid)) !== startTime) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
  if (!(await waitGone(pid, startTime, 5000))) throw new Error(`execenv: process ${pid} did not exit after SIGKILL`);
}

/**
 * Unmounts `path` and everything below it, deepest first; lazily when busy. No-op when not mounted.
 *
 * @example
 * ```ts
 * import { hostRunner, unmountTree } from '@execenv/core';
 * // every mount at or below the path, the last mounted first
 * await unmountTree(hostRunner(), '/var/lib/foo/e1/rootfs');
 * ```
 */
export async function unmountTree(runner: ProcessRunner, path: string): Promise<void> {
  for (const mount of (await mountsUnder(path)).reverse()) {
    const r = await runner.run(['umount', mount], { check: false });
    if (r.exitCode !== 0 && (await mountsUnder(mount)).includes(mount)) await runner.run(['umount', '--lazy', mount]);
  }
}

/**
 * Removes a directory tree, refusing when anything is still mounted below it:
 * deleting through a leftover bind mount would delete host files. With a
 * runner, GNU rm does it, which descends through directory descriptors and
 * so also removes trees deeper than PATH_MAX (a process inside an
 * environment can make one); without, Node's rm, which cannot.
 *
 * @example
 * ```ts
 * import { hostRunner, removeTree } from '@execenv/core';
 * await removeTree('/var/lib/foo/e1', hostRunner()); // throws while anything below is still mounted
 * ```
 */
export async function removeTree(path: string, runner?: ProcessRunner): Promise<void> {
  const mounted = await mountsUnder(path);
  if (mounted.length > 0)
    throw new Error(`execenv: refusing to remove ${path}: still mounted below it: ${mounted.join(', ')}`);
  if (runner) await runner.run(['rm', '-rf', '--one-file-system', '--', path], { env: hostEnv() });
  else await rm(path, { recursive: true, force: true });
}

/**
 * The undo for core's resource kinds (`dir`, `mount`, `process`). Drivers with
 * kinds of their own handle those first and delegate the rest here.
 *
 * @example
 * ```ts
 * import { hostUndo, type Undo } from '@execenv/core';
 * const host = hostUndo(runner);
 * const fooUndo: Undo = (r) => (r.kind === 'foo-container' ? removeContainer(String(r.name)) : host(r));
 * await lease.release(fooUndo);
 * ```
 */
export function hostUndo(runner: ProcessRunner): Undo {
  return async (resource: LeaseResource) => {
    switch (resource.kind) {
      case 'dir':
        return removeTree(resource.path as string, runner);
      case 'mount':
        return unmountTree(runner, resource.path as string);
      case 'process':
        return killRecordedProcess(resource.pid as number, resource.startTime as string);
      default:
        throw new Error(`execenv: no undo for resource kind "${resource.kind}"`);
    }
  };
}
