import { mkdir, mkdtemp, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ExecenvEvent, hostRunner } from '@execenv/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TREE_COMPLETE } from '../src/cached-trees.js';
import { ImageCache } from '../src/image-cache.js';
import { DIRECTORY_CONVERTER_VERSION, rootfsDirectory } from '../src/rootfs-directory.js';
import { tarOf } from '../src/testing/image-files.js';

let dir: string;
let cache: ImageCache;
let tarball: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'execenv-trees-'));
  cache = new ImageCache({ dir: join(dir, 'cache') });
  tarball = join(dir, 'rootfs.tar');
  await writeFile(
    tarball,
    await tarOf([
      { header: { name: './', type: 'directory', mode: 0o755 } },
      { header: { name: './etc/', type: 'directory', mode: 0o755 } },
      { header: { name: './etc/os-release', mode: 0o644 }, body: 'ID=test\n' },
      // Read-only and not empty: a user who extracted it must still be able to remove it.
      { header: { name: './ro/', type: 'directory', mode: 0o555 } },
      { header: { name: './ro/file', mode: 0o444 }, body: 'xy' },
    ]),
  );
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const ctx = (onEvent?: (e: ExecenvEvent) => void) => ({ cache, runner: hostRunner(), onEvent });

/** Makes every tree look last used two minutes ago, out of prune's recent-use window. */
async function age() {
  const old = new Date(Date.now() - 120_000);
  for (const t of await cache.listTrees()) await utimes(join(t.path, TREE_COMPLETE), old, old);
}

describe('extracted trees in the cache', () => {
  it('lists a tree with its size, version and last use, refreshed by each lookup', async () => {
    const root = await rootfsDirectory(tarball, ctx());
    const [tree] = await cache.listTrees();
    expect(tree).toMatchObject({ version: DIRECTORY_CONVERTER_VERSION, size: 10, inUse: false });
    expect(root).toBe(join(tree!.path, 'root'));
    await age();
    const aged = (await cache.listTrees())[0]!.lastUsed;
    await rootfsDirectory(tarball, ctx());
    expect((await cache.listTrees())[0]!.lastUsed).toBeGreaterThan(aged);
  });

  it('prunes trees with blobs by last use, sparing one used in the last minute', async () => {
    await rootfsDirectory(tarball, ctx());
    expect(await cache.prune(0)).toEqual([]);
    expect(await cache.listTrees()).toHaveLength(1);
    await age();
    const [tree] = await cache.listTrees();
    expect((await cache.prune(0)).map((e) => e.digest)).toEqual([tree!.digest]);
    expect(await cache.listTrees()).toEqual([]);
    await expect(stat(tree!.path)).rejects.toMatchObject({ code: 'ENOENT' });
    const events: ExecenvEvent[] = [];
    await rootfsDirectory(
      tarball,
      ctx((e) => events.push(e)),
    );
    expect(events.map((e) => e.type)).toEqual(['image-convert']);
  });

  it('never removes a tree a live process holds; a dead holder counts for nothing', async () => {
    const root = await rootfsDirectory(tarball, ctx());
    const hold = await cache.holdTree(root, 'env-1');
    expect(hold).toBeDefined();
    await age();
    expect((await cache.listTrees())[0]?.inUse).toBe(true);
    expect(await cache.prune(0)).toEqual([]);
    const [tree] = await cache.listTrees();
    expect(await cache.removeTree(tree!.digest)).toBe(false);
    await writeFile(hold!, JSON.stringify({ pid: 2 ** 22 + 1, startTime: 'gone' }));
    expect((await cache.listTrees())[0]?.inUse).toBe(false);
    expect(await cache.removeTree(tree!.digest)).toBe(true);
    expect(await cache.listTrees()).toEqual([]);
  });

  it('holds nothing for a directory outside the cache', async () => {
    expect(await cache.holdTree(dir, 'env-1')).toBeUndefined();
    expect(await cache.holdTree(join(cache.dir, 'converted', 'directory-v2', 'not-a-digest'), 'env-1')).toBeUndefined();
  });

  it('lists and prunes trees an older converter version left', async () => {
    const old = join(cache.dir, 'converted', 'directory-v1', 'a'.repeat(64));
    await mkdir(join(old, 'root'), { recursive: true });
    await writeFile(join(old, TREE_COMPLETE), JSON.stringify({ size: 5 }));
    // An incomplete one (no marker) is no tree: an extraction may be writing it.
    await mkdir(join(cache.dir, 'converted', 'directory-v1', 'b'.repeat(64)), { recursive: true });
    await age();
    expect((await cache.listTrees()).map((t) => [t.version, t.size])).toEqual([[1, 5]]);
    expect((await cache.prune(0)).map((e) => e.digest)).toEqual(['a'.repeat(64)]);
    expect(await readdir(join(cache.dir, 'converted', 'directory-v1'))).toEqual(['b'.repeat(64)]);
  });
});
