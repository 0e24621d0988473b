import { createHash } from 'node:crypto';
import { lstat, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isAlive, type Owner } from '@execenv/core';
import { removeDirectory } from './cached-trees.js';
import { tempOwnerState } from './temp-names.js';

/** A temporary whose name records no owner is taken for abandoned after this long. */
const UNOWNED_GRACE_MS = 24 * 3600_000;

const STAGING = /^([a-f0-9]{64})\.(.+)\.tmp$/;

async function lockHolderAlive(cacheDir: string, key: string): Promise<boolean> {
  const name = createHash('sha256').update(key).digest('hex');
  const holder = await readFile(join(cacheDir, 'locks', `${name}.lock`), 'utf8').then(
    (text) => JSON.parse(text) as Owner,
    () => undefined,
  );
  return holder !== undefined && (await isAlive(holder));
}

async function olderThan(path: string, ms: number): Promise<boolean> {
  const info = await lstat(path).catch(() => undefined);
  return info !== undefined && Date.now() - info.mtimeMs > ms;
}

/**
 * Removes, from the cache at `cacheDir`, the temporaries of processes that
 * are gone: files and directories under `tmp/` (partial downloads, disk
 * builds, index copies being written), and staging trees
 * `converted/directory-v<N>/<sha256>.<owner>.tmp` of interrupted
 * extractions. Staging trees named before owners were recorded count as
 * abandoned when no live process holds their extraction's lock. Returns the
 * paths removed. The caller holds the cache's sweep lock.
 */
export async function sweepStaleTemporaries(cacheDir: string): Promise<string[]> {
  const removed: string[] = [];
  const tmp = join(cacheDir, 'tmp');
  for (const name of await readdir(tmp).catch(() => [] as string[])) {
    const path = join(tmp, name);
    const state = await tempOwnerState(name);
    if (state === 'alive' || (state === 'unknown' && !(await olderThan(path, UNOWNED_GRACE_MS)))) continue;
    await removeDirectory(path);
    removed.push(path);
  }
  const converted = join(cacheDir, 'converted');
  for (const versionDir of await readdir(converted).catch(() => [] as string[])) {
    if (versionDir === 'holds') continue;
    for (const name of await readdir(join(converted, versionDir)).catch(() => [] as string[])) {
      const staging = STAGING.exec(name);
      if (!staging) continue;
      const path = join(converted, versionDir, name);
      const state = await tempOwnerState(staging[2]!);
      if (state === 'alive') continue;
      if (state === 'unknown' && (await lockHolderAlive(cacheDir, `directory\n${staging[1]}`))) continue;
      await removeDirectory(path);
      removed.push(path);
    }
  }
  return removed;
}
