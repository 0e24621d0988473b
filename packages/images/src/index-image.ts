import { type ExecenvEvent, emit, ImageNotFoundError, ImageVerifyFailedError } from '@execenv/core';
import { download } from './download.js';
import { exists, getDocument } from './http-get.js';
import type { CacheEntry, ImageCache } from './image-cache.js';
import type { IndexFreshness } from './index-documents.js';
import { type IndexEntry, type IndexQuery, keyRingOf, resolveIndex } from './lxc-index.js';
import type { RetryPolicy } from './retry.js';
import type { KeyRing, TrustedKeys } from './signature.js';

/**
 * Options of fetchIndexImage.
 *
 * @example
 * ```ts
 * import { fetchIndexImage, ImageCache, type IndexImageOptions } from '@execenv/images';
 * const opts: IndexImageOptions = {
 *   server: 'https://images.linuxcontainers.org',
 *   cache: new ImageCache(),
 *   mode: 'user', // images for unprivileged containers (index-user)
 *   keys: ['/etc/execenv/keys/linuxcontainers.gpg'],
 * };
 * const q = { distribution: 'debian', release: 'bookworm', architecture: 'amd64', variant: 'default' };
 * const img = await fetchIndexImage(q, opts);
 * ```
 */
export interface IndexImageOptions extends IndexFreshness, RetryPolicy {
  /** Base URL of the lxc-download server. */
  server: string;
  /** Where files (and the last verified index) are stored. */
  cache: ImageCache;
  /** Keys that may sign the index and the images. Required unless verify is false. */
  keys?: TrustedKeys | KeyRing;
  /** Check the detached signatures of the index and the images. Only an explicit false skips it. @default true */
  verify?: boolean;
  /** See ResolveIndexOptions. */
  mode?: 'system' | 'user';
  /** See ResolveIndexOptions. */
  compatLevel?: number;
  onEvent?: (e: ExecenvEvent) => void;
  signal?: AbortSignal;
}

/**
 * A fetched lxc-download image: its index entry, root filesystem tarball and
 * lxc-download metadata tarball (`config`, `templates`, ... for LXC: not an
 * LXD metadata tarball; lxdImageFiles converts it).
 *
 * @example
 * ```ts
 * import { fetchIndexImage, type IndexImage } from '@execenv/images';
 * const img: IndexImage = await fetchIndexImage(query, { server, cache, keys });
 * console.log(`${img.entry.distribution} ${img.entry.release}, build ${img.entry.build}`);
 * console.log(img.rootfs.path, img.meta.path); // both checked against their .asc, in the cache
 * ```
 */
export interface IndexImage {
  entry: IndexEntry;
  rootfs: CacheEntry;
  meta: CacheEntry;
}

/**
 * The detached signature of `url`. A missing signature is
 * ImageVerifyFailedError, unless the file itself is missing too: then the
 * index names a build the server does not have, and that is
 * ImageNotFoundError naming the URL.
 */
async function signatureOf(url: string, opts: IndexImageOptions): Promise<string> {
  const asc = await getDocument(`${url}.asc`, opts);
  if (asc !== undefined) return asc;
  if (!(await exists(url, opts)))
    throw new ImageNotFoundError(url, 'the server has no such file (the index names a build it does not serve)', {
      op: 'download',
    });
  throw new ImageVerifyFailedError(
    `execenv: ${url} is not signed (no ${url}.asc); refusing it. Pass verify: false to accept unsigned images`,
    { op: 'download' },
  );
}

/**
 * Resolves `q` on an lxc-download server (its index checked against its
 * signature, see resolveIndex) and downloads its rootfs.tar.xz and
 * meta.tar.xz into the cache, each checked against its detached `.asc`
 * signature before it enters the cache (unless `verify: false`). A file
 * verified once against the same keys is taken from the cache without
 * touching the network: with a fresh or fallback index, a warm resolve works
 * offline.
 *
 * @example
 * ```ts
 * import { fetchIndexImage, ImageCache } from '@execenv/images';
 * const img = await fetchIndexImage(
 *   { distribution: 'alpine', release: '3.20', architecture: 'amd64', variant: 'default' },
 *   { server: 'https://images.linuxcontainers.org', cache: new ImageCache(), keys: ['./linuxcontainers.gpg'] },
 * );
 * console.log(img.entry.build, img.rootfs.path, img.meta.path);
 * ```
 */
export async function fetchIndexImage(q: IndexQuery, opts: IndexImageOptions): Promise<IndexImage> {
  const reference = `index:${q.distribution}/${q.release}/${q.architecture}/${q.variant}`;
  emit(opts.onEvent, { type: 'image-resolve', reference });
  const verify = opts.verify !== false;
  const ring = verify ? await keyRingOf(opts.keys) : undefined;
  const { entry, base } = await resolveIndex(opts.server, q, { ...opts, keys: ring });
  const fetchOne = async (file: string): Promise<CacheEntry> => {
    const url = `${base}/${file}`;
    const { cache, onEvent, signal, attempts, backoffMs, timeoutMs } = opts;
    const common = { cache, onEvent, signal, attempts, backoffMs, timeoutMs };
    if (!ring) return download(url, { ...common, cacheKey: `${url}\nunverified` });
    // The keys are part of the key: a copy fetched unverified, or checked against other keys, is never reused.
    const cacheKey = `${url}\nverified ${ring.id}`;
    const cached = await opts.cache.lookup(cacheKey);
    if (cached) return cached;
    const asc = await signatureOf(url, opts);
    return download(url, {
      ...common,
      cacheKey,
      verify: async (path) => {
        await ring.verifyDetached({ path }, asc, url);
        emit(opts.onEvent, { type: 'image-verify', reference: url, ok: true });
      },
    });
  };
  const rootfs = await fetchOne('rootfs.tar.xz');
  const meta = await fetchOne('meta.tar.xz');
  return { entry, rootfs, meta };
}
