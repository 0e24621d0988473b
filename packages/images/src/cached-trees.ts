import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { isAlive, type Owner, ownerOf } from '@execenv/core';

/**
 * Extracted root filesystems live in the cache as trees:
 * `converted/directory-v<N>/<sha256>/` holding `root/` and a completion
 * marker that records the tree's size; the marker's mtime is when the tree
 * was last used. A running environment may have a tree as the lower layer of
 * its overlay, so it holds the tree: a file under `converted/holds/<sha256>/`
 * naming the holding process. Pruning never removes a held tree.
 */

/**
 * The file that marks a tree complete, beside its root/.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { ImageCache, rootfsDirectory, TREE_COMPLETE } from '@execenv/images';
 * import { stat } from 'node:fs/promises';
 * import { dirname, join } from 'node:path';
 * const root = await rootfsDirectory('./bookworm.tar.zst', { cache: new ImageCache(), runner: hostRunner() });
 * const marker = await stat(join(dirname(root), TREE_COMPLETE)); // beside the tree's root/
 * console.log('tree last used', marker.mtime);
 * ```
 */
export const TREE_COMPLETE = '.execenv-complete';

/**
 * One extracted tree in the cache.
 *
 * @example
 * ```ts
 * import { ImageCache } from '@execenv/images';
 * for (const tree of await new ImageCache().listTrees()) {
 *   const used = new Date(tree.lastUsed).toISOString();
 *   console.log(tree.digest.slice(0, 12), `v${tree.version}`, tree.size, used, tree.inUse ? 'held' : '');
 * }
 * ```
 */
export interface TreeEntry {
  /** sha256 of the tarball it was extracted from. */
  digest: string;
  /** The converter version that made it. */
  version: number;
  /** The tree's directory (its root filesystem is `root/` inside). */
  path: string;
  /** Bytes of regular file content, as the tarball gave them. */
  size: number;
  /** Last time it was extracted or looked up (ms since the epoch). */
  lastUsed: number;
  /** A live process holds it (a running environment's lower layer). */
  inUse: boolean;
}

/**
 * A tree looked up within this window is kept by prune: it may be about to be held.
 *
 * @example
 * ```ts
 * import { ImageCache, RECENT_USE_MS } from '@execenv/images';
 * const trees = await new ImageCache().listTrees();
 * const prunable = trees.filter((t) => !t.inUse && Date.now() - t.lastUsed >= RECENT_USE_MS);
 * console.log(`prune may remove ${prunable.length} of ${trees.length} trees`);
 * ```
 */
export const RECENT_USE_MS = 60_000;

const HEX64 = /^[a-f0-9]{64}$/;
const VERSION_DIR = /^directory-v(\d+)$/;

function convertedDir(cacheDir: string): string {
  return join(cacheDir, 'converted');
}

function holdsDir(cacheDir: string, digest: string): string {
  return join(convertedDir(cacheDir), 'holds', digest);
}

/** Records a complete tree of `size` bytes, used now. */
export async function markTreeComplete(treeDir: string, record: Record<string, unknown>, size: number) {
  await writeFile(join(treeDir, TREE_COMPLETE), JSON.stringify({ ...record, size }));
}

/** Marks a tree as used now; false when it is not complete. */
export async function touchTree(treeDir: string): Promise<boolean> {
  const now = new Date();
  return utimes(join(treeDir, TREE_COMPLETE), now, now).then(
    () => true,
    () => false,
  );
}

/** The digest of the cached tree that `path` lies in, if it lies in one. */
export function treeDigestOf(cacheDir: string, path: string): string | undefined {
  const [versionDir, digest] = relative(convertedDir(cacheDir), path).split(sep);
  return versionDir && VERSION_DIR.test(versionDir) && digest && HEX64.test(digest) ? digest : undefined;
}

/**
 * Holds the cached tree `path` lies in for the calling process, so prune
 * leaves it alone; returns the hold's file, which the holder removes when
 * done (a hold of a dead process counts for nothing). Undefined when `path`
 * is not in a cached tree (a directory image of the caller's own).
 */
export async function holdTree(cacheDir: string, path: string, name: string): Promise<string | undefined> {
  const digest = treeDigestOf(cacheDir, path);
  if (!digest) return undefined;
  const dir = holdsDir(cacheDir, digest);
  await mkdir(dir, { recursive: true });
  const hold = join(dir, `${name}-${randomBytes(4).toString('hex')}`);
  await writeFile(hold, JSON.stringify(await ownerOf()));
  return hold;
}

async function isHeld(cacheDir: string, digest: string): Promise<boolean> {
  const dir = holdsDir(cacheDir, digest);
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const owner = await readFile(join(dir, name), 'utf8').then(
      (text) => JSON.parse(text) as Owner,
      () => undefined,
    );
    if (owner && (await isAlive(owner))) return true;
  }
  return false;
}

/** Every complete tree in the cache, of any converter version, least recently used first. */
export async function listTrees(cacheDir: string): Promise<TreeEntry[]> {
  const trees: TreeEntry[] = [];
  for (const versionDir of await readdir(convertedDir(cacheDir)).catch(() => [] as string[])) {
    const version = VERSION_DIR.exec(versionDir)?.[1];
    if (!version) continue;
    for (const digest of await readdir(join(convertedDir(cacheDir), versionDir)).catch(() => [] as string[])) {
      if (!HEX64.test(digest)) continue;
      const path = join(convertedDir(cacheDir), versionDir, digest);
      const marker = join(path, TREE_COMPLETE);
      const [record, info] = await Promise.all([
        readFile(marker, 'utf8').then(
          (text) => JSON.parse(text) as { size?: number },
          () => undefined,
        ),
        stat(marker).catch(() => undefined),
      ]);
      if (!record || !info) continue;
      trees.push({
        digest,
        version: Number(version),
        path,
        size: record.size ?? 0,
        lastUsed: info.mtimeMs,
        inUse: await isHeld(cacheDir, digest),
      });
    }
  }
  return trees.sort((a, b) => a.lastUsed - b.lastUsed);
}

/** Removes a tree unless it is held; false when it is held or not there. */
export async function removeTree(cacheDir: string, tree: TreeEntry): Promise<boolean> {
  if (await isHeld(cacheDir, tree.digest)) return false;
  if (!(await lstat(tree.path).catch(() => undefined))) return false;
  // The marker goes first: a half-removed tree is never taken for a complete one.
  await rm(join(tree.path, TREE_COMPLETE), { force: true });
  await removeDirectory(tree.path);
  return true;
}

/**
 * Removes a directory extracted from an image. Directories the tarball made
 * read-only are opened up first, so a tree extracted without root can always
 * be removed by the user who made it.
 */
export async function removeDirectory(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true });
  } catch {
    await makeWritable(path);
    await rm(path, { recursive: true, force: true });
  }
}

async function makeWritable(dir: string): Promise<void> {
  const info = await lstat(dir).catch(() => undefined);
  if (!info?.isDirectory()) return;
  await chmod(dir, (info.mode & 0o7777) | 0o700).catch(() => {});
  for (const name of await readdir(dir).catch(() => [] as string[])) await makeWritable(join(dir, name));
}
