import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { isAlive, type Owner, ownerOf } from './owner.js';

/**
 * Options of withLock.
 *
 * @example
 * ```ts
 * import { type LockOptions, withLock } from '@execenv/core';
 * const opts: LockOptions = { timeoutMs: 60_000, onWait: (holder) => console.error(`pid ${holder.pid} has it`) };
 * const rootfs = await withLock('/var/cache/foo/images.lock', () => unpackImage(reference), opts);
 * ```
 */
export interface LockOptions {
  /** Give up after this many milliseconds. @default 10 minutes */
  timeoutMs?: number;
  /** Called once when the lock is held by another live process. */
  onWait?: (holder: Owner) => void;
}

async function tryAcquire(path: string, me: Owner): Promise<Owner | undefined> {
  try {
    const fh = await open(path, 'wx', 0o600);
    await fh.writeFile(JSON.stringify(me));
    await fh.close();
    return undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  try {
    return JSON.parse(await readFile(path, 'utf8')) as Owner;
  } catch {
    // being written right now: report a holder that is alive by definition
    return me;
  }
}

/**
 * Runs `fn` while holding an inter-process lock file at `path`. A lock left by
 * a dead process is taken over; a live holder is waited for.
 *
 * @example
 * ```ts
 * import { defaultCacheDir, withLock } from '@execenv/core';
 * // one process builds the image; the others wait, then find it built
 * const image = await withLock(`${defaultCacheDir()}/bookworm.lock`, () => buildImageOnce('bookworm'), {
 *   onWait: (holder) => console.error(`waiting for pid ${holder.pid}`),
 * });
 * ```
 */
export async function withLock<T>(path: string, fn: () => Promise<T>, opts: LockOptions = {}): Promise<T> {
  await mkdir(dirname(path), { recursive: true });
  const me = await ownerOf();
  const deadline = Date.now() + (opts.timeoutMs ?? 600_000);
  let told = false;
  for (;;) {
    const holder = await tryAcquire(path, me);
    if (!holder) break;
    if (holder !== me && !(await isAlive(holder))) {
      await rm(path, { force: true });
      continue;
    }
    if (!told && holder !== me) {
      told = true;
      opts.onWait?.(holder);
    }
    if (Date.now() > deadline) throw new Error(`execenv: timed out waiting for lock ${path} held by pid ${holder.pid}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  try {
    return await fn();
  } finally {
    await rm(path, { force: true });
  }
}
