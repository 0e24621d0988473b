import { createHash } from 'node:crypto';
import { type ExecenvEvent, emit, ImageVerifyFailedError } from '@execenv/core';
import { download } from './download.js';
import { getDocument } from './http-get.js';
import type { CacheEntry, ImageCache } from './image-cache.js';
import { type IndexEntry, type IndexQuery, resolveIndex } from './lxc-index.js';
import { loadKeys, type TrustedKeys, verifyDetached } from './signature.js';

/** Options of fetchIndexImage. */
export interface IndexImageOptions {
  /** Base URL of the lxc-download server. */
  server: string;
  /** Where files are stored. */
  cache: ImageCache;
  /** Keys that may sign the images. Required unless verify is false. */
  keys?: TrustedKeys;
  /** Check the detached signatures. Only an explicit false skips it. @default true */
  verify?: boolean;
  /** See ResolveIndexOptions. */
  mode?: 'system' | 'user';
  /** See ResolveIndexOptions. */
  compatLevel?: number;
  onEvent?: (e: ExecenvEvent) => void;
  signal?: AbortSignal;
}

/** A fetched lxc-download image: its index entry, root filesystem and metadata tarballs. */
export interface IndexImage {
  entry: IndexEntry;
  rootfs: CacheEntry;
  meta: CacheEntry;
}

async function signatureOf(url: string, signal?: AbortSignal): Promise<string> {
  const asc = await getDocument(`${url}.asc`, signal);
  if (asc === undefined)
    throw new ImageVerifyFailedError(
      `execenv: ${url} is not signed (no ${url}.asc); refusing it. Pass verify: false to accept unsigned images`,
      { op: 'download' },
    );
  return asc;
}

/**
 * Resolves `q` on an lxc-download server and downloads its rootfs.tar.xz and
 * meta.tar.xz into the cache, each checked against its detached `.asc`
 * signature before it enters the cache (unless `verify: false`).
 */
export async function fetchIndexImage(q: IndexQuery, opts: IndexImageOptions): Promise<IndexImage> {
  const reference = `index:${q.distribution}/${q.release}/${q.architecture}/${q.variant}`;
  emit(opts.onEvent, { type: 'image-resolve', reference });
  const { entry, base } = await resolveIndex(opts.server, q, opts);
  const verify = opts.verify !== false;
  const keys = verify ? await loadKeys(opts.keys ?? []) : [];
  const fetchOne = async (file: string): Promise<CacheEntry> => {
    const url = `${base}/${file}`;
    if (!verify)
      return download(url, {
        cache: opts.cache,
        onEvent: opts.onEvent,
        signal: opts.signal,
        cacheKey: `${url}\nunverified`,
      });
    const asc = await signatureOf(url, opts.signal);
    const signed = createHash('sha256').update(asc).digest('hex');
    return download(url, {
      cache: opts.cache,
      onEvent: opts.onEvent,
      signal: opts.signal,
      // The signature is part of the key: a copy fetched unverified is never taken for a verified one.
      cacheKey: `${url}\nsigned ${signed}`,
      verify: async (path) => {
        await verifyDetached(path, asc, keys, url);
        emit(opts.onEvent, { type: 'image-verify', reference: url, ok: true });
      },
    });
  };
  const rootfs = await fetchOne('rootfs.tar.xz');
  const meta = await fetchOne('meta.tar.xz');
  return { entry, rootfs, meta };
}
