import { ImageNotFoundError, TransportError } from '@execenv/core';
import { archNames } from './arch.js';
import { download } from './download.js';
import { getDocument } from './http-get.js';
import type { CacheEntry, ImageCache } from './image-cache.js';
import type { IndexQuery } from './lxc-index.js';

/** One file of a simplestreams product version. */
export interface StreamItem {
  ftype: string;
  path: string;
  sha256: string;
  size?: number;
}

/** A resolved simplestreams image: the product, its newest version and that version's files. */
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

async function getJson(url: string, signal?: AbortSignal): Promise<unknown> {
  const text = await getDocument(url, signal);
  if (text === undefined) throw new ImageNotFoundError(url, 'the server answered 404', { op: 'resolve' });
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new TransportError(`execenv: ${url} is not JSON: ${(err as Error).message}`, { op: 'resolve', cause: err });
  }
}

function matches(p: Product, q: IndexQuery): boolean {
  if (p.os?.toLowerCase() !== q.distribution.toLowerCase() || p.release !== q.release) return false;
  if (!p.arch || archNames(p.arch, 'image').debian !== q.architecture) return false;
  return (p.variant ?? 'default') === q.variant;
}

/**
 * Finds `q` on a simplestreams server (as LXD and Incus use): the
 * image-downloads products of `streams/v1/index.json`, the product whose
 * os/release/arch/variant match, and its newest version's items. Throws
 * ImageNotFoundError listing what the server offers.
 */
export async function resolveSimplestreams(server: string, q: IndexQuery, signal?: AbortSignal): Promise<StreamImage> {
  const root = server.replace(/\/+$/, '');
  const index = (await getJson(`${root}/streams/v1/index.json`, signal)) as {
    index?: Record<string, { datatype?: string; path?: string }>;
  };
  const offered: string[] = [];
  for (const entry of Object.values(index.index ?? {})) {
    if (entry.datatype !== 'image-downloads' || !entry.path || entry.path.includes('..')) continue;
    const products =
      ((await getJson(`${root}/${entry.path}`, signal)) as { products?: Record<string, Product> }).products ?? {};
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
 */
export async function fetchStreamItems(
  server: string,
  image: StreamImage,
  opts: { cache: ImageCache; items?: string[]; signal?: AbortSignal },
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
    out[name] = await download(`${root}/${item.path}`, {
      cache: opts.cache,
      expectedSha256: item.sha256,
      signal: opts.signal,
    });
  }
  return out;
}
