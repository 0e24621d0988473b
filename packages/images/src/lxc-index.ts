import { type ExecenvEvent, emit, ImageNotFoundError, ImageVerifyFailedError } from '@execenv/core';
import { getDocument } from './http-get.js';
import type { ImageCache } from './image-cache.js';
import { type IndexFreshness, readIndexDocument } from './index-documents.js';
import type { RetryPolicy } from './retry.js';
import { KeyRing, type TrustedKeys } from './signature.js';

/**
 * One line of an lxc-download index (`distribution;release;architecture;variant;build;path`).
 *
 * @example
 * ```ts
 * import { type IndexEntry, parseIndex } from '@execenv/images';
 * const line = 'debian;bookworm;amd64;default;20250101_05:24;/images/debian/bookworm/amd64/default/20250101_05:24/';
 * const [entry]: IndexEntry[] = parseIndex(`${line}\n`);
 * console.log(`https://images.linuxcontainers.org${entry?.path}rootfs.tar.xz`);
 * ```
 */
export interface IndexEntry {
  distribution: string;
  release: string;
  architecture: string;
  variant: string;
  build: string;
  path: string;
}

/**
 * Parses an lxc-download `index-system` or `index-user` file; malformed lines are skipped.
 *
 * @example
 * ```ts
 * import { findEntry, parseIndex } from '@execenv/images';
 * import { readFile } from 'node:fs/promises';
 * const entries = parseIndex(await readFile('./index-system', 'utf8')); // checked against its .asc beforehand
 * const q = { distribution: 'debian', release: 'bookworm', architecture: 'amd64', variant: 'default' };
 * console.log(findEntry(entries, q)?.build);
 * ```
 */
export function parseIndex(text: string): IndexEntry[] {
  const entries: IndexEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(';');
    if (f.length !== 6 || f.some((x) => x === '')) continue;
    const [distribution, release, architecture, variant, build, path] = f as [
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    if (!path.startsWith('/') || path.includes('..')) continue;
    entries.push({ distribution, release, architecture, variant, build, path });
  }
  return entries;
}

/**
 * What to look for in an index.
 *
 * @example
 * ```ts
 * import { type IndexQuery, resolveIndex } from '@execenv/images';
 * const q: IndexQuery = { distribution: 'alpine', release: '3.20', architecture: 'arm64', variant: 'default' };
 * const { entry, base } = await resolveIndex('https://images.linuxcontainers.org', q, { keys: ['./lxc.gpg'] });
 * ```
 */
export interface IndexQuery {
  distribution: string;
  release: string;
  architecture: string;
  variant: string;
}

/**
 * The newest build (by build string) of the entries matching `q`, or undefined.
 *
 * @example
 * ```ts
 * import { findEntry, parseIndex } from '@execenv/images';
 * const entries = parseIndex(indexText);
 * const q = { distribution: 'debian', release: 'bookworm', architecture: 'amd64', variant: 'cloud' };
 * const newest = findEntry(entries, q); // the newest build of that variant
 * if (!newest) throw new Error('not in the index');
 * console.log(newest.build, newest.path);
 * ```
 */
export function findEntry(entries: readonly IndexEntry[], q: IndexQuery): IndexEntry | undefined {
  return entries
    .filter(
      (e) =>
        e.distribution === q.distribution &&
        e.release === q.release &&
        e.architecture === q.architecture &&
        e.variant === q.variant,
    )
    .sort((a, b) => (a.build < b.build ? 1 : a.build > b.build ? -1 : 0))[0];
}

/**
 * Options of resolveIndex.
 *
 * @example
 * ```ts
 * import { ImageCache, resolveIndex, type ResolveIndexOptions } from '@execenv/images';
 * const opts: ResolveIndexOptions = {
 *   mode: 'user',
 *   compatLevel: 5, // index-user.5 when the server has it, else index-user
 *   keys: ['/etc/execenv/keys/linuxcontainers.gpg'],
 *   cache: new ImageCache(), // keeps the verified index for warm and offline resolves
 * };
 * const { entry, base } = await resolveIndex('https://images.linuxcontainers.org', query, opts);
 * ```
 */
export interface ResolveIndexOptions extends IndexFreshness, RetryPolicy {
  /** `system` (images for privileged containers) or `user` (unprivileged), as lxc-download's modes. @default 'system' */
  mode?: 'system' | 'user';
  /** lxc-download compatibility level: `index-<mode>.<N>` is used when the server has it. */
  compatLevel?: number;
  /** Keys that may sign the index (its detached `.asc`). Required unless verify is false. */
  keys?: TrustedKeys | KeyRing;
  /** Check the index's detached signature. Only an explicit false skips it. @default true */
  verify?: boolean;
  /** Keeps the last verified index, for warm and offline resolves (see IndexRefresh). @default none: always fetched */
  cache?: ImageCache;
  /** Receives `image-verify` and `warning` events. */
  onEvent?: (e: ExecenvEvent) => void;
  signal?: AbortSignal;
}

/**
 * The key ring of `keys`, loaded unless it is one already.
 *
 * @example
 * ```ts
 * import { type KeyRing, keyRingOf, type TrustedKeys } from '@execenv/images';
 * async function checkIndex(text: string, asc: string, keys: TrustedKeys | KeyRing): Promise<void> {
 *   const ring = await keyRingOf(keys); // key files read now; a KeyRing passes through as it is
 *   await ring.verifyDetached({ bytes: Buffer.from(text, 'utf8') }, asc, 'index-system');
 * }
 * ```
 */
export async function keyRingOf(keys: TrustedKeys | KeyRing | undefined): Promise<KeyRing> {
  return keys instanceof KeyRing ? keys : KeyRing.load(keys ?? []);
}

/**
 * Fetches the index at `url` and, unless `ring` is undefined, checks its
 * detached signature `<url>.asc` as the lxc-download template does. An index
 * without a signature, or with a bad one, throws ImageVerifyFailedError.
 */
async function fetchSignedIndex(url: string, ring: KeyRing | undefined, opts: ResolveIndexOptions) {
  const text = await getDocument(url, opts);
  if (text === undefined || !ring) return text;
  const asc = await getDocument(`${url}.asc`, opts);
  if (asc === undefined)
    throw new ImageVerifyFailedError(
      `execenv: the index ${url} is not signed (no ${url}.asc); refusing it. Pass verify: false to trust it unsigned`,
      { op: 'resolve' },
    );
  await ring.verifyDetached({ bytes: Buffer.from(text, 'utf8') }, asc, url);
  emit(opts.onEvent, { type: 'image-verify', reference: url, ok: true });
  return text;
}

/**
 * Finds `q` on an lxc-download server: `meta/1.0/index-<mode>.<compat>` when
 * a compatibility level is given and the server has it, else
 * `index-<mode>`, as lxc-download does, each checked against its detached
 * `.asc` signature unless `verify: false`. With a cache, the verified index
 * is kept and reused as `refresh` says, and stands in when the server cannot
 * be reached. Returns the entry and the URL of its directory. Throws
 * ImageNotFoundError listing what the server offers, ImageVerifyFailedError
 * for an unsigned or badly signed index.
 *
 * @example
 * ```ts
 * import { ImageCache, resolveIndex } from '@execenv/images';
 * const { entry, base } = await resolveIndex(
 *   'https://images.linuxcontainers.org',
 *   { distribution: 'debian', release: 'bookworm', architecture: 'amd64', variant: 'default' },
 *   { keys: ['/etc/execenv/keys/linuxcontainers.gpg'], cache: new ImageCache() },
 * );
 * console.log(entry.build, `${base}/rootfs.tar.xz`);
 * ```
 */
export async function resolveIndex(
  server: string,
  q: IndexQuery,
  opts: ResolveIndexOptions = {},
): Promise<{ entry: IndexEntry; base: string }> {
  const root = server.replace(/\/+$/, '');
  const plain = `index-${opts.mode ?? 'system'}`;
  const names = [...(opts.compatLevel !== undefined ? [`${plain}.${opts.compatLevel}`] : []), plain];
  const ring = opts.verify === false ? undefined : await keyRingOf(opts.keys);
  const seen: IndexEntry[] = [];
  for (const name of names) {
    const url = `${root}/meta/1.0/${name}`;
    const key = `lxc-index\n${url}\n${ring ? `verified ${ring.id}` : 'unverified'}`;
    const text = await readIndexDocument(opts.cache, key, () => fetchSignedIndex(url, ring, opts), { ...opts, url });
    if (text === undefined) continue;
    const entries = parseIndex(text);
    const entry = findEntry(entries, q);
    if (entry) return { entry, base: `${root}${entry.path.replace(/\/+$/, '')}` };
    seen.push(...entries);
    // An index that exists is the answer: a compat-level one overrides the plain one.
    break;
  }
  const offered = [...new Set(seen.map((e) => `${e.distribution}/${e.release}/${e.architecture}/${e.variant}`))].slice(
    0,
    10,
  );
  throw new ImageNotFoundError(
    `index:${q.distribution}/${q.release}/${q.architecture}/${q.variant}`,
    `not in the index of ${root}${offered.length ? `; it has ${offered.join(', ')}` : ''}`,
    { op: 'resolve' },
  );
}
