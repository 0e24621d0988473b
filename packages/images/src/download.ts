import type { IncomingMessage } from 'node:http';
import { type ExecenvEvent, emit, ImageNotFoundError, TransportError } from '@execenv/core';
import { get } from './http-get.js';
import type { CacheEntry, ImageCache } from './image-cache.js';

/** Options of download. */
export interface DownloadOptions {
  /** Where the file is stored. */
  cache: ImageCache;
  /** The sha256 the index gives; a mismatch deletes the download. */
  expectedSha256?: string;
  /** Runs on the complete file before it enters the cache (signature checks). */
  verify?: (path: string) => Promise<void>;
  /** Receives `image-download` progress events. */
  onEvent?: (e: ExecenvEvent) => void;
  /** Attempts for transient failures (network errors, 5xx, 429, truncation). @default 4 */
  attempts?: number;
  /** First delay between attempts, doubled each time. @default 250 ms */
  backoffMs?: number;
  /** Cancels the download. */
  signal?: AbortSignal;
  /** What makes two downloads the same one. @default the URL and expectedSha256 */
  cacheKey?: string;
}

class Transient extends Error {}

const PERMANENT = new Set([400, 401, 403, 404, 410]);

async function attempt(url: string, opts: DownloadOptions): Promise<CacheEntry> {
  let res: IncomingMessage;
  try {
    res = await get(url, opts.signal);
  } catch (err) {
    if (opts.signal?.aborted) throw err;
    throw new Transient(`${url}: ${(err as Error).message}`, { cause: err });
  }
  const status = res.statusCode ?? 0;
  if (PERMANENT.has(status)) {
    res.resume();
    throw new ImageNotFoundError(url, `the server answered ${status} ${res.statusMessage ?? ''}`.trim(), {
      op: 'download',
    });
  }
  if (status < 200 || status >= 300) {
    res.resume();
    throw new Transient(`${url}: the server answered ${status} ${res.statusMessage ?? ''}`.trim());
  }
  const total = Number(res.headers['content-length']) || undefined;
  let last = 0;
  const entry = await opts.cache
    .put(res, {
      name: url,
      expectedSha256: opts.expectedSha256,
      verify: async (path) => {
        if (total !== undefined && last !== total)
          throw new Transient(`${url}: truncated at ${last} of ${total} bytes`);
        await opts.verify?.(path);
      },
      onProgress: (bytes) => {
        last = bytes;
        emit(opts.onEvent, { type: 'image-download', reference: url, bytes, total });
      },
    })
    .catch((err: unknown) => {
      // A connection cut mid-body surfaces as a stream error: worth another attempt.
      if (err instanceof Error && !('code' in err && typeof err.code === 'string' && err.code.startsWith('IMAGE')))
        throw err instanceof Transient ? err : new Transient(`${url}: ${err.message}`, { cause: err });
      throw err;
    });
  return entry;
}

/**
 * Downloads `url` into the cache, once per key across processes: a cached
 * copy (same URL and sha256) is returned without touching the network.
 * Transient failures are retried with exponential backoff; a permanent one
 * (404, 403, ...) throws ImageNotFoundError naming the URL; a sha256 or
 * signature mismatch throws ImageVerifyFailedError and keeps nothing.
 */
export async function download(url: string, opts: DownloadOptions): Promise<CacheEntry> {
  const key = opts.cacheKey ?? `${url}\n${opts.expectedSha256 ?? ''}`;
  return opts.cache.withKey(key, async () => {
    const cached = await opts.cache.lookup(key);
    if (cached) return cached;
    const attempts = opts.attempts ?? 4;
    let delay = opts.backoffMs ?? 250;
    for (let i = 1; ; i++) {
      try {
        const entry = await attempt(url, opts);
        await opts.cache.link(key, entry.digest);
        return entry;
      } catch (err) {
        if (!(err instanceof Transient)) throw err;
        if (i >= attempts)
          throw new TransportError(`execenv: download of ${url} failed ${attempts} times: ${err.message}`, {
            op: 'download',
            cause: err,
          });
        emit(opts.onEvent, { type: 'warning', message: `${err.message}; retrying in ${delay} ms` });
        await new Promise((r) => setTimeout(r, delay));
        delay *= 2;
      }
    }
  });
}
