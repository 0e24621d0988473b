import { type ExecenvEvent, emit, ImageNotFoundError, ImageVerifyFailedError, TransportError } from '@execenv/core';
import { readCleartextMessage } from 'openpgp';
import { archNames } from './arch.js';
import { download } from './download.js';
import { exists, getDocument } from './http-get.js';
import type { CacheEntry, ImageCache } from './image-cache.js';
import { type IndexFreshness, readIndexDocument } from './index-documents.js';
import { type IndexQuery, keyRingOf } from './lxc-index.js';
import type { RetryPolicy } from './retry.js';
import type { KeyRing, TrustedKeys } from './signature.js';

/**
 * Options of resolveSimplestreams.
 *
 * @example
 * ```ts
 * import { ImageCache, resolveSimplestreams, type SimplestreamsOptions } from '@execenv/images';
 * const opts: SimplestreamsOptions = {
 *   keys: ['/etc/execenv/keys/images.gpg'], // checks index.sjson and the products it lists
 *   cache: new ImageCache(), // keeps the verified documents for warm and offline resolves
 *   refresh: 'if-stale',
 * };
 * const image = await resolveSimplestreams('https://images.example.org', query, opts);
 * ```
 */
export interface SimplestreamsOptions extends IndexFreshness, RetryPolicy {
  /** Keys that may sign the stream documents. Required unless verify is false. */
  keys?: TrustedKeys | KeyRing;
  /** Keeps the last verified documents, for warm and offline resolves (see IndexRefresh). @default none: always fetched */
  cache?: ImageCache;
  /**
   * Read the OpenPGP-signed documents (`index.sjson` and the `.sjson`
   * products they list) and check their signatures; the sha256 they give then
   * vouches for every item. Only an explicit false reads the unsigned
   * `index.json`, trusting the transport (HTTPS) instead.
   * @default true
   */
  verify?: boolean;
  onEvent?: (e: ExecenvEvent) => void;
  signal?: AbortSignal;
}

/**
 * One file of a simplestreams product version.
 *
 * @example
 * ```ts
 * import { resolveSimplestreams, type StreamItem } from '@execenv/images';
 * const image = await resolveSimplestreams(server, query, { keys });
 * const rootfs: StreamItem | undefined = image.items['root.tar.xz'];
 * console.log(rootfs?.path, rootfs?.sha256, rootfs?.size); // path relative to the server
 * ```
 */
export interface StreamItem {
  ftype: string;
  path: string;
  sha256: string;
  size?: number;
}

/**
 * A resolved simplestreams image: the product, its newest version and that version's files.
 *
 * @example
 * ```ts
 * import { fetchStreamItems, resolveSimplestreams, type StreamImage } from '@execenv/images';
 * const image: StreamImage = await resolveSimplestreams(server, query, { keys, cache });
 * console.log(image.product, image.version, Object.keys(image.items)); // the newest version's files
 * const files = await fetchStreamItems(server, image, { cache });
 * ```
 */
export interface StreamImage {
  product: string;
  version: string;
  items: Record<string, StreamItem>;
}

interface Product {
  os?: string;
  release?: string;
  arch?: string;
  variant?: string;
  aliases?: string;
  versions?: Record<string, { items?: Record<string, StreamItem> }>;
}

/** Reads stream documents from one server, signed (`.sjson`, checked against keys) or not. */
class StreamReader {
  readonly #root: string;
  readonly #keys: KeyRing | undefined;
  readonly #opts: SimplestreamsOptions;

  constructor(root: string, keys: KeyRing | undefined, opts: SimplestreamsOptions) {
    this.#root = root;
    this.#keys = keys;
    this.#opts = opts;
  }

  /** The JSON document at `path` (relative to the server), through its signed form when verifying. */
  async read(path: string): Promise<unknown> {
    const signedPath = path.replace(/\.json$/, '.sjson');
    const url = `${this.#root}/${this.#keys ? signedPath : path}`;
    const key = `simplestreams\n${url}\n${this.#keys ? `verified ${this.#keys.id}` : 'unverified'}`;
    const text = await readIndexDocument(this.#opts.cache, key, () => this.#fetch(url, path), {
      ...this.#opts,
      url,
    });
    if (text === undefined) throw new ImageNotFoundError(url, 'the server answered 404', { op: 'resolve' });
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new TransportError(`execenv: ${url} is not JSON: ${(err as Error).message}`, {
        op: 'resolve',
        cause: err,
      });
    }
  }

  /** Fetches `url` and returns the text it vouches for, undefined when the server has no such document. */
  async #fetch(url: string, path: string): Promise<string | undefined> {
    const body = await getDocument(url, this.#opts);
    if (body === undefined) {
      if (this.#keys && !(await exists(`${this.#root}/${path}`, this.#opts)))
        throw new ImageNotFoundError(
          url,
          `the server answered 404 and has no ${path} either: is ${this.#root} a simplestreams server?`,
          { op: 'resolve' },
        );
      if (this.#keys)
        throw new ImageVerifyFailedError(
          `execenv: ${this.#root}/${path} is not signed (no ${url}); refusing it. Pass verify: false to trust the unsigned index over HTTPS`,
          { op: 'resolve' },
        );
      return undefined;
    }
    if (this.#keys) {
      const text = await this.#keys.verifyCleartext(body, url);
      emit(this.#opts.onEvent, { type: 'image-verify', reference: url, ok: true });
      return text;
    }
    // An index may name signed documents: without keys, only their text is read.
    return url.endsWith('.sjson') ? (await readCleartextMessage({ cleartextMessage: body })).getText() : body;
  }
}

function matches(p: Product, q: IndexQuery): boolean {
  if (p.os?.toLowerCase() !== q.distribution.toLowerCase() || p.release !== q.release) return false;
  if (!p.arch || archNames(p.arch, 'image').debian !== q.architecture) return false;
  return (p.variant ?? 'default') === q.variant;
}

/**
 * Finds `q` on a simplestreams server (as LXD and Incus use): the
 * image-downloads products of `streams/v1/index.sjson` (its signature checked
 * against `opts.keys`) or, with `verify: false`, `index.json`; the product
 * whose os/release/arch/variant match, and its newest version's items.
 * Throws ImageNotFoundError listing what the server offers, or naming the
 * URL when the server has no stream documents at all (a wrong server URL),
 * and ImageVerifyFailedError when a document is unsigned or badly signed.
 *
 * @example
 * ```ts
 * import { fetchStreamItems, ImageCache, resolveSimplestreams } from '@execenv/images';
 * const server = 'https://images.example.org';
 * const cache = new ImageCache();
 * const q = { distribution: 'ubuntu', release: 'noble', architecture: 'amd64', variant: 'default' };
 * const image = await resolveSimplestreams(server, q, { keys: ['/etc/execenv/keys/images.gpg'], cache });
 * const files = await fetchStreamItems(server, image, { cache }); // lxd.tar.xz and root.tar.xz
 * ```
 */
export async function resolveSimplestreams(
  server: string,
  q: IndexQuery,
  opts: SimplestreamsOptions = {},
): Promise<StreamImage> {
  const root = server.replace(/\/+$/, '');
  emit(opts.onEvent, {
    type: 'image-resolve',
    reference: `index:${q.distribution}/${q.release}/${q.architecture}/${q.variant}`,
  });
  const keys = opts.verify === false ? undefined : await keyRingOf(opts.keys);
  if (keys?.size === 0)
    throw new ImageVerifyFailedError(
      `execenv: ${root}: no trusted keys configured for its signed index; give keys, or verify: false to trust the unsigned index over HTTPS`,
      { op: 'resolve' },
    );
  const streams = new StreamReader(root, keys, opts);
  const index = (await streams.read('streams/v1/index.json')) as {
    index?: Record<string, { datatype?: string; path?: string }>;
  };
  const offered: string[] = [];
  for (const entry of Object.values(index.index ?? {})) {
    if (entry.datatype !== 'image-downloads' || !entry.path || entry.path.includes('..')) continue;
    const products = ((await streams.read(entry.path)) as { products?: Record<string, Product> }).products ?? {};
    for (const [name, p] of Object.entries(products)) {
      offered.push(`${p.os}/${p.release}/${p.arch}/${p.variant ?? 'default'}`);
      if (!matches(p, q)) continue;
      const version = Object.keys(p.versions ?? {})
        .sort()
        .at(-1);
      const items = version ? p.versions?.[version]?.items : undefined;
      if (version && items) return { product: name, version, items };
    }
  }
  throw new ImageNotFoundError(
    `index:${q.distribution}/${q.release}/${q.architecture}/${q.variant}`,
    `not on ${root}${offered.length ? `; it has ${[...new Set(offered)].slice(0, 10).join(', ')}` : ''}`,
    { op: 'resolve' },
  );
}

/**
 * Downloads the named items (default: the LXD container files `lxd.tar.xz`
 * and `root.tar.xz`) of a resolved simplestreams image into the cache, each
 * checked against the sha256 the index gives.
 *
 * @example
 * ```ts
 * import { fetchStreamItems, resolveSimplestreams } from '@execenv/images';
 * const image = await resolveSimplestreams(server, query, { keys, cache });
 * const files = await fetchStreamItems(server, image, { cache, items: ['lxd.tar.xz', 'root.squashfs'] });
 * console.log(files['lxd.tar.xz']?.path, files['root.squashfs']?.path); // each checked against its sha256
 * ```
 */
export async function fetchStreamItems(
  server: string,
  image: StreamImage,
  opts: RetryPolicy & {
    cache: ImageCache;
    items?: string[];
    onEvent?: (e: ExecenvEvent) => void;
    signal?: AbortSignal;
  },
): Promise<Record<string, CacheEntry>> {
  const root = server.replace(/\/+$/, '');
  const out: Record<string, CacheEntry> = {};
  for (const name of opts.items ?? ['lxd.tar.xz', 'root.tar.xz']) {
    const item = image.items[name];
    if (!item)
      throw new ImageNotFoundError(
        `${image.product}/${image.version}/${name}`,
        `the version has ${Object.keys(image.items).join(', ')}`,
      );
    if (item.path.includes('..')) throw new ImageNotFoundError(item.path, 'item paths must stay on the server');
    const { cache, onEvent, signal, attempts, backoffMs, timeoutMs } = opts;
    out[name] = await download(`${root}/${item.path}`, {
      cache,
      onEvent,
      signal,
      attempts,
      backoffMs,
      timeoutMs,
      expectedSha256: item.sha256,
    });
  }
  return out;
}
