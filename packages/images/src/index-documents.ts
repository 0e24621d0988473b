import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ExecenvEvent, emit, TransportError } from '@execenv/core';
import type { ImageCache } from './image-cache.js';

/**
 * When an index (lxc-download `index-system`, simplestreams documents) is
 * fetched again rather than read from the last verified copy in the cache:
 * - `if-stale`: the copy is used while younger than `maxIndexAgeMs`;
 * - `always`: every resolve fetches it;
 * - `never`: any copy is used, however old; only a missing one is fetched.
 * With `if-stale` and `never`, a server that cannot be reached (network
 * errors, 5xx after every retry) falls back to the last verified copy, with
 * a `warning` event saying so; with `always` it fails with TransportError.
 *
 * @example
 * ```ts
 * import { imageCacheOf, imageSettings, type IndexRefresh, resolveImage } from '@execenv/images';
 * const refresh: IndexRefresh = process.env.OFFLINE ? 'never' : 'if-stale';
 * const settings = await imageSettings();
 * const cache = imageCacheOf(settings);
 * const image = await resolveImage('index:debian/bookworm/amd64', { ...settings, cache, refresh });
 * ```
 */
export type IndexRefresh = 'always' | 'if-stale' | 'never';

/**
 * How old a verified index may be before `if-stale` fetches it again: six hours.
 *
 * @example
 * ```ts
 * import { DEFAULT_MAX_INDEX_AGE_MS, imageCacheOf, imageSettings, resolveImage } from '@execenv/images';
 * const settings = await imageSettings();
 * const image = await resolveImage('index:debian/bookworm/amd64', {
 *   ...settings,
 *   cache: imageCacheOf(settings),
 *   maxIndexAgeMs: DEFAULT_MAX_INDEX_AGE_MS / 2, // look for new builds every three hours
 * });
 * ```
 */
export const DEFAULT_MAX_INDEX_AGE_MS = 6 * 3600_000;

/**
 * How indexes are kept between resolves.
 *
 * @example
 * ```ts
 * import { ImageCache, type IndexFreshness, resolveIndex } from '@execenv/images';
 * const offline: IndexFreshness = { refresh: 'never' }; // any verified copy in the cache, however old
 * const { entry } = await resolveIndex(
 *   'https://images.linuxcontainers.org',
 *   { distribution: 'debian', release: 'bookworm', architecture: 'amd64', variant: 'default' },
 *   { ...offline, cache: new ImageCache(), keys: ['/etc/execenv/keys/linuxcontainers.gpg'] },
 * );
 * ```
 */
export interface IndexFreshness {
  /** @default 'if-stale' */
  refresh?: IndexRefresh;
  /** @default DEFAULT_MAX_INDEX_AGE_MS (six hours) */
  maxIndexAgeMs?: number;
}

/** A verified document as stored: `text` null records that the server had none (a 404). */
interface StoredDocument {
  key: string;
  fetchedAt: number;
  text: string | null;
}

function storedPath(cache: ImageCache, key: string): string {
  return join(cache.dir, 'indexes', `${createHash('sha256').update(key).digest('hex')}.json`);
}

async function readStored(cache: ImageCache, key: string): Promise<StoredDocument | undefined> {
  try {
    const doc = JSON.parse(await readFile(storedPath(cache, key), 'utf8')) as StoredDocument;
    return doc.key === key && typeof doc.fetchedAt === 'number' ? doc : undefined;
  } catch {
    return undefined;
  }
}

async function store(cache: ImageCache, doc: StoredDocument): Promise<void> {
  await mkdir(join(cache.dir, 'indexes'), { recursive: true });
  const tmp = await cache.tempPath('index');
  await writeFile(tmp, JSON.stringify(doc));
  await rename(tmp, storedPath(cache, doc.key));
}

/**
 * Reads a verified document through the cache: the stored copy when the
 * refresh policy allows, else `fetchVerified()` (which fetches and checks
 * it, resolving undefined when the server has none), whose answer is stored
 * with its fetch time. `key` names the document and how it was verified
 * (URL and keys), so an unverified copy never stands in for a verified one.
 */
export async function readIndexDocument(
  cache: ImageCache | undefined,
  key: string,
  fetchVerified: () => Promise<string | undefined>,
  opts: IndexFreshness & { onEvent?: (e: ExecenvEvent) => void; url: string },
): Promise<string | undefined> {
  const refresh = opts.refresh ?? 'if-stale';
  const stored = cache && refresh !== 'always' ? await readStored(cache, key) : undefined;
  const maxAge = opts.maxIndexAgeMs ?? DEFAULT_MAX_INDEX_AGE_MS;
  if (stored && (refresh === 'never' || Date.now() - stored.fetchedAt < maxAge)) return stored.text ?? undefined;
  let text: string | undefined;
  try {
    text = await fetchVerified();
  } catch (err) {
    if (!(err instanceof TransportError) || !stored) throw err;
    emit(opts.onEvent, {
      type: 'warning',
      message: `execenv: cannot reach ${opts.url} (${err.message}); using the copy verified at ${new Date(stored.fetchedAt).toISOString()}`,
    });
    return stored.text ?? undefined;
  }
  if (cache) await store(cache, { key, fetchedAt: Date.now(), text: text ?? null });
  return text;
}
