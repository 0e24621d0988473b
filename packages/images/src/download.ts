import { type ExecenvEvent, emit, ImageNotFoundError } from '@execenv/core';
import { get } from './http-get.js';
import type { CacheEntry, ImageCache } from './image-cache.js';
import { PERMANENT_STATUSES, type RetryPolicy, TransientFetchError, withRetries } from './retry.js';

/**
 * Options of download.
 *
 * @example
 * ```ts
 * import { type DownloadOptions, download, ImageCache, loadKeys } from '@execenv/images';
 * const url = 'https://example.org/rootfs.tar.xz';
 * const [ring, asc] = await Promise.all([loadKeys(['./images.gpg']), fetch(`${url}.asc`).then((r) => r.text())]);
 * const opts: DownloadOptions = {
 *   cache: new ImageCache(),
 *   cacheKey: `${url}\nverified ${ring.id}`, // a copy cached under this key was checked against these keys
 *   verify: (path) => ring.verifyDetached({ path }, asc, url), // throwing keeps the file out of the cache
 * };
 * const entry = await download(url, opts);
 * ```
 */
export interface DownloadOptions extends RetryPolicy {
  /** Where the file is stored. */
  cache: ImageCache;
  /** The sha256 the index gives; a mismatch deletes the download. */
  expectedSha256?: string;
  /** Runs on the complete file before it enters the cache (signature checks). */
  verify?: (path: string) => Promise<void>;
  /** Receives `image-download` progress events. */
  onEvent?: (e: ExecenvEvent) => void;
  /** Cancels the download. */
  signal?: AbortSignal;
  /** What makes two downloads the same one. @default the URL and expectedSha256 */
  cacheKey?: string;
}

const isImageError = (err: unknown) =>
  err instanceof Error && 'code' in err && typeof err.code === 'string' && err.code.startsWith('IMAGE');

async function attempt(url: string, opts: DownloadOptions): Promise<CacheEntry> {
  let res: Awaited<ReturnType<typeof get>>;
  try {
    res = await get(url, { signal: opts.signal, timeoutMs: opts.timeoutMs });
  } catch (err) {
    if (opts.signal?.aborted) throw err;
    throw new TransientFetchError(`${url}: ${(err as Error).message}`, { cause: err });
  }
  const status = res.statusCode ?? 0;
  if (PERMANENT_STATUSES.has(status)) {
    res.resume();
    throw new ImageNotFoundError(url, `the server answered ${status} ${res.statusMessage ?? ''}`.trim(), {
      op: 'download',
    });
  }
  if (status < 200 || status >= 300) {
    res.resume();
    throw new TransientFetchError(`${url}: the server answered ${status} ${res.statusMessage ?? ''}`.trim());
  }
  const total = Number(res.headers['content-length']) || undefined;
  let last = 0;
  return opts.cache
    .put(res, {
      name: url,
      expectedSha256: opts.expectedSha256,
      verify: async (path) => {
        if (total !== undefined && last !== total)
          throw new TransientFetchError(`${url}: truncated at ${last} of ${total} bytes`);
        await opts.verify?.(path);
      },
      onProgress: (bytes) => {
        last = bytes;
        emit(opts.onEvent, { type: 'image-download', reference: url, bytes, total });
      },
    })
    .catch((err: unknown) => {
      // A connection cut mid-body surfaces as a stream error: worth another attempt.
      if (err instanceof Error && !isImageError(err) && !opts.signal?.aborted)
        throw err instanceof TransientFetchError
          ? err
          : new TransientFetchError(`${url}: ${err.message}`, { cause: err });
      throw err;
    });
}

/**
 * Downloads `url` into the cache, once per key across processes: a cached
 * copy (same URL and sha256) is returned without touching the network.
 * Transient failures are retried with exponential backoff; a permanent one
 * (404, 403, ...) throws ImageNotFoundError naming the URL; a sha256 or
 * signature mismatch throws ImageVerifyFailedError and keeps nothing.
 *
 * @example
 * ```ts
 * import { download, ImageCache } from '@execenv/images';
 * const entry = await download('https://example.org/images/rootfs.tar.xz', {
 *   cache: new ImageCache(),
 *   expectedSha256: '2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae',
 *   onEvent: (e) => e.type === 'image-download' && console.error(e.bytes, '/', e.total),
 * });
 * console.log(entry.path); // in the cache: read it, never write it
 * ```
 */
export async function download(url: string, opts: DownloadOptions): Promise<CacheEntry> {
  const key = opts.cacheKey ?? `${url}\n${opts.expectedSha256 ?? ''}`;
  return opts.cache.withKey(key, async () => {
    const cached = await opts.cache.lookup(key);
    if (cached) return cached;
    const entry = await withRetries(`download of ${url}`, 'download', () => attempt(url, opts), opts);
    await opts.cache.link(key, entry.digest);
    return entry;
  });
}
