import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { defaultCacheDir, ImageVerifyFailedError, withLock } from '@execenv/core';
import { holdTree, listTrees, RECENT_USE_MS, removeTree, type TreeEntry } from './cached-trees.js';
import { sweepStaleTemporaries } from './stale-temporaries.js';
import { ownedTempName } from './temp-names.js';

/**
 * One blob in the cache.
 *
 * @example
 * ```ts
 * import { ImageCache } from '@execenv/images';
 * for (const e of await new ImageCache().list()) {
 *   console.log(e.digest.slice(0, 12), e.size, e.name, new Date(e.lastUsed).toISOString());
 * }
 * ```
 */
export interface CacheEntry {
  /** sha256 of the content, hex. */
  digest: string;
  /** Where the content is. Read it; never write it. */
  path: string;
  /** Bytes. */
  size: number;
  /** What it was stored as (a URL, a file name). */
  name: string;
  /** Last time it was stored or looked up (ms since the epoch). */
  lastUsed: number;
}

/**
 * Options of ImageCache.
 *
 * @example
 * ```ts
 * import { ImageCache, type ImageCacheOptions } from '@execenv/images';
 * const opts: ImageCacheOptions = { dir: '/var/cache/execenv/images', budgetBytes: 20 * 2 ** 30 };
 * const cache = new ImageCache(opts); // put() evicts least recently used blobs past 20 GiB
 * ```
 */
export interface ImageCacheOptions {
  /** @default `<defaultCacheDir()>/images` */
  dir?: string;
  /** Bytes the cache may hold; put() evicts least recently used blobs past it. @default no limit */
  budgetBytes?: number;
}

/**
 * Options of ImageCache.put.
 *
 * @example
 * ```ts
 * import { ImageCache, type PutOptions } from '@execenv/images';
 * import { createReadStream } from 'node:fs';
 * const opts: PutOptions = {
 *   name: 'rootfs.tar.xz',
 *   expectedSha256: '2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae', // other content is refused
 *   onProgress: (bytes) => console.error(bytes, 'bytes'),
 * };
 * const entry = await new ImageCache().put(createReadStream('./rootfs.tar.xz'), opts);
 * ```
 */
export interface PutOptions {
  /** What the content is (a URL, a file name), for list(). */
  name: string;
  /** When given, content with another sha256 is refused and deleted. */
  expectedSha256?: string;
  /** Runs on the complete content before it enters the cache (signature checks); throwing keeps it out. */
  verify?: (path: string) => Promise<void>;
  /** Bytes written so far. */
  onProgress?: (bytes: number) => void;
}

const HEX64 = /^[a-f0-9]{64}$/;

/**
 * ImageCache stores image files by the sha256 of their content. Writes go to
 * a temporary file and are renamed into place, so a reader never sees a
 * partial blob; `withKey` serialises work on the same key across processes.
 *
 * @example
 * ```ts
 * import { ImageCache } from '@execenv/images';
 * const cache = new ImageCache(); // <defaultCacheDir()>/images
 * for (const e of await cache.list()) console.log(e.name, e.size);
 * const removed = await cache.prune(20 * 2 ** 30); // down to 20 GiB; held and just-used trees stay
 * console.log(`freed ${removed.reduce((n, e) => n + e.size, 0)} bytes`);
 * ```
 */
export class ImageCache {
  /** The cache directory. */
  readonly dir: string;
  readonly #budget: number | undefined;
  #swept: Promise<void> | undefined;

  constructor(opts: ImageCacheOptions = {}) {
    this.dir = opts.dir ?? join(defaultCacheDir(), 'images');
    this.#budget = opts.budgetBytes;
  }

  /** Bytes the cache may hold, when a budget was given. */
  get budgetBytes(): number | undefined {
    return this.#budget;
  }

  /** The first operation of each ImageCache sweeps what killed processes left behind. */
  #ready(): Promise<void> {
    this.#swept ??= this.sweep().then(
      () => {},
      () => {},
    );
    return this.#swept;
  }

  /**
   * Removes the temporaries killed processes left: partial downloads under
   * `tmp/` and half-extracted trees under `converted/` whose owner is gone.
   * Runs under the cache's sweep lock; what a live process is writing stays.
   * Returns the paths removed. The first operation of every ImageCache, and
   * every prune, sweeps.
   */
  sweep(): Promise<string[]> {
    return withLock(join(this.dir, 'locks', 'sweep.lock'), () => sweepStaleTemporaries(this.dir));
  }

  /**
   * A fresh path under the cache's `tmp/` named for this process, so that
   * sweep() removes it should the process die before renaming it into place.
   */
  async tempPath(label?: string): Promise<string> {
    await mkdir(join(this.dir, 'tmp'), { recursive: true });
    return join(this.dir, 'tmp', `${label ? `${label}.` : ''}${await ownedTempName()}`);
  }

  #blob(digest: string): string {
    return join(this.dir, 'blobs', 'sha256', digest);
  }

  #ref(key: string): string {
    return join(this.dir, 'refs', createHash('sha256').update(key).digest('hex'));
  }

  /** Streams `source` into the cache, verifying it on the way; returns the stored entry. */
  async put(source: Readable, opts: PutOptions): Promise<CacheEntry> {
    await this.#ready();
    await mkdir(join(this.dir, 'blobs', 'sha256'), { recursive: true });
    const tmp = await this.tempPath();
    const hash = createHash('sha256');
    let size = 0;
    // 1 MiB buffers: with node's 16 KiB default, a download spends more time in small writes than in hashing.
    const count = new Transform({
      highWaterMark: 1 << 20,
      transform(chunk: Buffer, _e, done) {
        hash.update(chunk);
        size += chunk.length;
        opts.onProgress?.(size);
        done(null, chunk);
      },
    });
    try {
      await pipeline(source, count, createWriteStream(tmp, { flags: 'wx', mode: 0o644, highWaterMark: 1 << 20 }));
      const digest = hash.digest('hex');
      if (opts.expectedSha256 && opts.expectedSha256.toLowerCase() !== digest)
        throw new ImageVerifyFailedError(
          `execenv: ${opts.name}: sha256 is ${digest}, the index says ${opts.expectedSha256}; the download was deleted`,
          { op: 'download' },
        );
      await opts.verify?.(tmp);
      await rename(tmp, this.#blob(digest));
      const entry: CacheEntry = { digest, path: this.#blob(digest), size, name: opts.name, lastUsed: Date.now() };
      await writeFile(`${entry.path}.json`, JSON.stringify(entry));
      if (this.#budget !== undefined) await this.prune(this.#budget, digest);
      return entry;
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /** The entry of `digest`, marked as used now; undefined when it is not cached. */
  async get(digest: string): Promise<CacheEntry | undefined> {
    if (!HEX64.test(digest)) return undefined;
    const entry = await this.#read(digest);
    if (!entry) return undefined;
    entry.lastUsed = Date.now();
    await writeFile(`${entry.path}.json`, JSON.stringify(entry));
    return entry;
  }

  async #read(digest: string): Promise<CacheEntry | undefined> {
    try {
      const entry = JSON.parse(await readFile(`${this.#blob(digest)}.json`, 'utf8')) as CacheEntry;
      await stat(entry.path);
      return entry;
    } catch {
      return undefined;
    }
  }

  /** Records that `key` (a URL plus what must match, a file identity) resolved to `digest`. */
  async link(key: string, digest: string): Promise<void> {
    await mkdir(join(this.dir, 'refs'), { recursive: true });
    const tmp = await this.tempPath('ref');
    await writeFile(tmp, digest);
    await rename(tmp, this.#ref(key));
  }

  /** The entry `key` was linked to, if it is still cached. */
  async lookup(key: string): Promise<CacheEntry | undefined> {
    const digest = await this.lookupDigest(key);
    return digest ? this.get(digest) : undefined;
  }

  /** The digest linked to `key`, whether or not its blob is cached (links may name digests of files kept elsewhere). */
  async lookupDigest(key: string): Promise<string | undefined> {
    await this.#ready();
    const digest = await readFile(this.#ref(key), 'utf8').catch(() => undefined);
    return digest && HEX64.test(digest.trim()) ? digest.trim() : undefined;
  }

  /** Runs `fn` holding the inter-process lock of `key`: two processes fetching one image download it once. */
  async withKey<T>(key: string, fn: () => Promise<T>): Promise<T> {
    await this.#ready();
    const name = createHash('sha256').update(key).digest('hex');
    return withLock(join(this.dir, 'locks', `${name}.lock`), fn);
  }

  /** Every cached blob, least recently used first. */
  async list(): Promise<CacheEntry[]> {
    await this.#ready();
    const names = await readdir(join(this.dir, 'blobs', 'sha256')).catch(() => [] as string[]);
    const entries: CacheEntry[] = [];
    for (const n of names.filter((x) => HEX64.test(x))) {
      const e = await this.#read(n);
      if (e) entries.push(e);
    }
    return entries.sort((a, b) => a.lastUsed - b.lastUsed);
  }

  /** Removes a blob; false when it was not there. */
  async remove(digest: string): Promise<boolean> {
    if (!HEX64.test(digest) || !(await this.#read(digest))) return false;
    await rm(this.#blob(digest), { force: true });
    await rm(`${this.#blob(digest)}.json`, { force: true });
    return true;
  }

  /** Every extracted root filesystem tree (rootfsDirectory's), least recently used first. */
  async listTrees(): Promise<TreeEntry[]> {
    await this.#ready();
    return listTrees(this.dir);
  }

  /** Removes the trees extracted from the tarball `digest`, unless held; false when none was removed. */
  async removeTree(digest: string): Promise<boolean> {
    let removed = false;
    for (const tree of await this.listTrees())
      if (tree.digest === digest && (await removeTree(this.dir, tree))) removed = true;
    return removed;
  }

  /**
   * Keeps the tree that `path` (a rootfsDirectory result) lies in from being
   * pruned while the calling process lives; returns the hold's file, to be
   * removed when done, or undefined when `path` is no cached tree.
   */
  holdTree(path: string, name: string): Promise<string | undefined> {
    return holdTree(this.dir, path, name);
  }

  /**
   * Evicts least recently used blobs and extracted trees until the cache
   * holds at most `budgetBytes`; returns what it removed. Trees a running
   * environment holds, or used in the last minute, stay. Sweeps first.
   */
  async prune(budgetBytes: number, keep?: string): Promise<(CacheEntry | TreeEntry)[]> {
    await this.sweep();
    const recent = Date.now() - RECENT_USE_MS;
    const entries = [...(await this.list()), ...(await this.listTrees())].sort((a, b) => a.lastUsed - b.lastUsed);
    let total = entries.reduce((n, e) => n + e.size, 0);
    const removed: (CacheEntry | TreeEntry)[] = [];
    for (const e of entries) {
      if (total <= budgetBytes) break;
      if (e.digest === keep) continue;
      const gone =
        'inUse' in e ? !e.inUse && e.lastUsed < recent && (await removeTree(this.dir, e)) : await this.remove(e.digest);
      if (!gone) continue;
      total -= e.size;
      removed.push(e);
    }
    return removed;
  }
}
