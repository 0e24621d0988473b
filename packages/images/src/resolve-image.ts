import { open, stat } from 'node:fs/promises';
import { type ExecenvEvent, hostRunner, ImageNotFoundError, InvalidSpecError, type ProcessRunner } from '@execenv/core';
import { extract as tarExtract } from 'tar-stream';
import { download } from './download.js';
import type { ImageCache } from './image-cache.js';
import type { IndexFreshness } from './index-documents.js';
import { fetchIndexImage } from './index-image.js';
import { parseReference } from './reference.js';
import type { RetryPolicy } from './retry.js';
import { openTarball } from './rootfs-directory.js';
import type { KeyRing, TrustedKeys } from './signature.js';
import { fetchStreamItems, resolveSimplestreams } from './simplestreams.js';
import { detectTarball, type TarballFormat } from './tarball-format.js';

/**
 * What an image's index says it is, when it came from one.
 *
 * @example
 * ```ts
 * import { resolveImage } from '@execenv/images';
 * const image = await resolveImage('index:alpine/3.20/amd64', { ...settings, cache });
 * if (image.kind === 'lxc-download' && image.origin) {
 *   const { distribution, release, architecture, variant } = image.origin; // 'alpine', '3.20', 'amd64', 'default'
 *   console.log(`${distribution} ${release} ${architecture} (${variant})`);
 * }
 * ```
 */
export interface ImageOrigin {
  distribution: string;
  release: string;
  /** Debian name. */
  architecture: string;
  variant: string;
}

/**
 * What an image reference resolved to, in the form drivers consume.
 *
 * @example
 * ```ts
 * import { resolveImage, type ResolvedImage } from '@execenv/images';
 * const image: ResolvedImage = await resolveImage(reference, { cache });
 * if (image.kind === 'disk') console.log('boot', image.path, image.format); // 'qcow2' or 'raw'
 * else if (image.kind === 'lxc-download' || image.kind === 'lxd-split') console.log(image.meta, image.rootfs);
 * else if ('path' in image) console.log(image.kind, image.path); // directory, rootfs-tarball, lxd-unified
 * ```
 */
export type ResolvedImage =
  | { kind: 'directory'; path: string }
  | { kind: 'rootfs-tarball'; path: string; format: TarballFormat }
  | { kind: 'lxd-unified'; path: string; format: TarballFormat }
  /** An LXD split image: a metadata tarball holding metadata.yaml, and a rootfs tarball or squashfs. */
  | { kind: 'lxd-split'; meta: string; rootfs: string }
  /**
   * An lxc-download image: a rootfs tarball and LXC's metadata tarball
   * (`config`, `templates`, `create-message`, no metadata.yaml), which LXD
   * does not import as such; lxdImageFiles converts it.
   */
  | { kind: 'lxc-download'; meta: string; rootfs: string; origin?: ImageOrigin }
  | { kind: 'disk'; path: string; format: 'qcow2' | 'raw' }
  | { kind: 'lxd-alias'; alias: string }
  | { kind: 'oci'; name: string };

/**
 * Image servers for `index:` references: an lxc-download server, a simplestreams server, or both (lxc first).
 *
 * @example
 * ```ts
 * import { ImageCache, type ImageServers, resolveImage } from '@execenv/images';
 * const servers: ImageServers = { simplestreams: 'https://images.example.org' }; // used only when no lxc is given
 * const opts = { servers, keys: ['/etc/execenv/keys/images.gpg'], cache: new ImageCache() };
 * const image = await resolveImage('index:ubuntu/noble/amd64', opts); // kind 'lxd-split'
 * ```
 */
export interface ImageServers {
  lxc?: string;
  simplestreams?: string;
}

/**
 * Options of resolveImage.
 *
 * @example
 * ```ts
 * import { ImageCache, type ResolveImageOptions, resolveImage } from '@execenv/images';
 * const opts: ResolveImageOptions = {
 *   cache: new ImageCache(),
 *   servers: { lxc: 'https://images.linuxcontainers.org' },
 *   keys: ['/etc/execenv/keys/linuxcontainers.gpg'],
 *   signal: AbortSignal.timeout(10 * 60_000),
 * };
 * const image = await resolveImage('index:debian/bookworm/arm64', opts);
 * ```
 */
export interface ResolveImageOptions extends IndexFreshness, RetryPolicy {
  cache: ImageCache;
  runner?: ProcessRunner;
  /** Servers for `index:` references. */
  servers?: ImageServers;
  /** Keys that sign the servers' indexes (lxc-download `index-system.asc`, simplestreams `.sjson`) and images (`.asc`). */
  keys?: TrustedKeys | KeyRing;
  /** Only an explicit false accepts unsigned lxc-download indexes and images and unsigned simplestreams indexes. */
  verify?: boolean;
  onEvent?: (e: ExecenvEvent) => void;
  signal?: AbortSignal;
}

const QCOW2_MAGIC = Buffer.from([0x51, 0x46, 0x49, 0xfb]);

/**
 * What the metadata in the first entries of a tarball is: `lxd` when it
 * holds `metadata.yaml` (and, when `withRootfs`, a `rootfs/` tree after it:
 * an LXD unified image), `lxc` when it holds lxc-download's `config` or
 * `templates` files, undefined otherwise.
 */
async function metadataKind(
  path: string,
  format: TarballFormat,
  runner: ProcessRunner,
  withRootfs: boolean,
): Promise<'lxd' | 'lxc' | undefined> {
  const source = openTarball(path, format, runner);
  const extractor = tarExtract();
  source.stream.pipe(extractor);
  let metadata = false;
  let lxc = false;
  let seen = 0;
  try {
    for await (const entry of extractor) {
      const name = entry.header.name.replace(/^\.\//, '');
      entry.resume();
      if (name === 'metadata.yaml') metadata = true;
      if (name === 'config' || name === 'templates') lxc = true;
      if (metadata && (!withRootfs || name.startsWith('rootfs'))) return 'lxd';
      if (++seen >= 16) break;
    }
    return lxc && !withRootfs ? 'lxc' : undefined;
  } finally {
    source.kill();
    extractor.destroy();
    await source.done().catch(() => {});
  }
}

/**
 * Classifies a local file or directory.
 *
 * @example
 * ```ts
 * import { classifyLocal } from '@execenv/images';
 * const image = await classifyLocal('/srv/images/bookworm.img'); // by content, not by name
 * if (image.kind === 'disk') console.log(image.format); // 'qcow2' by its magic, else 'raw'
 * ```
 */
export async function classifyLocal(path: string, runner: ProcessRunner = hostRunner()): Promise<ResolvedImage> {
  const info = await stat(path).catch(() => undefined);
  if (!info) throw new ImageNotFoundError(path, 'no such file or directory on the host', { op: 'resolve' });
  if (info.isDirectory()) return { kind: 'directory', path };
  const format = await detectTarball(path);
  if (format)
    return {
      kind: (await metadataKind(path, format, runner, true)) === 'lxd' ? 'lxd-unified' : 'rootfs-tarball',
      path,
      format,
    };
  return { kind: 'disk', path, format: (await readHead(path, 4)).equals(QCOW2_MAGIC) ? 'qcow2' : 'raw' };
}

const SQUASHFS_MAGIC = Buffer.from('hsqs');

async function readHead(path: string, length: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(length);
    await fh.read(head, 0, length, 0);
    return head;
  } finally {
    await fh.close();
  }
}

/**
 * Checks the two local files of a split image: a metadata tarball holding
 * `metadata.yaml` (LXD) or lxc-download's `config` and `templates`, and a
 * root filesystem tarball or squashfs.
 */
async function classifySplit(meta: string, rootfs: string, runner: ProcessRunner): Promise<ResolvedImage> {
  const reference = `lxd-split:${meta},${rootfs}`;
  for (const path of [meta, rootfs])
    if (!(await stat(path).catch(() => undefined))?.isFile())
      throw new ImageNotFoundError(reference, `${path}: no such file on the host`, { op: 'resolve' });
  const metaFormat = await detectTarball(meta);
  const kind = metaFormat ? await metadataKind(meta, metaFormat, runner, false) : undefined;
  if (!kind)
    throw new InvalidSpecError(
      'image',
      `"${reference}": ${meta} is not an image metadata tarball (no metadata.yaml, nor lxc-download's config)`,
    );
  if (!(await detectTarball(rootfs)) && !(await readHead(rootfs, 4)).equals(SQUASHFS_MAGIC))
    throw new InvalidSpecError('image', `"${reference}": ${rootfs} is neither a tarball nor a squashfs`);
  return kind === 'lxd' ? { kind: 'lxd-split', meta, rootfs } : { kind: 'lxc-download', meta, rootfs };
}

/**
 * Resolves an image reference to local files a driver can use: local paths
 * are classified, URLs downloaded into the cache (then classified), `index:`
 * references fetched from the configured lxc-download or simplestreams
 * server with their checks; `lxd:` and `oci:` pass through for the drivers
 * that own them.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { imageCacheOf, imageRootDirectory, imageSettings, resolveImage } from '@execenv/images';
 * const settings = await imageSettings();
 * const cache = imageCacheOf(settings);
 * const image = await resolveImage('index:debian/bookworm/amd64', { ...settings, cache });
 * console.log(image.kind, await imageRootDirectory(image, { cache, runner: hostRunner() }));
 * ```
 */
export async function resolveImage(reference: string, opts: ResolveImageOptions): Promise<ResolvedImage> {
  const ref = parseReference(reference);
  const runner = opts.runner ?? hostRunner();
  switch (ref.kind) {
    case 'file':
      return classifyLocal(ref.path, runner);
    case 'lxd-split':
      return classifySplit(ref.meta, ref.rootfs, runner);
    case 'url': {
      const { cache, onEvent, signal, attempts, backoffMs, timeoutMs } = opts;
      const entry = await download(ref.url, { cache, onEvent, signal, attempts, backoffMs, timeoutMs });
      return classifyLocal(entry.path, runner);
    }
    case 'index': {
      if (opts.servers?.lxc) {
        const img = await fetchIndexImage(ref, { ...opts, server: opts.servers.lxc });
        const { kind: _kind, ...origin } = ref;
        return { kind: 'lxc-download', meta: img.meta.path, rootfs: img.rootfs.path, origin };
      }
      if (opts.servers?.simplestreams) {
        const server = opts.servers.simplestreams;
        const img = await resolveSimplestreams(server, ref, opts);
        const files = await fetchStreamItems(server, img, opts);
        return { kind: 'lxd-split', meta: files['lxd.tar.xz']!.path, rootfs: files['root.tar.xz']!.path };
      }
      throw new ImageNotFoundError(reference, 'no image server configured: give servers.lxc or servers.simplestreams', {
        op: 'resolve',
      });
    }
    case 'lxd':
      return { kind: 'lxd-alias', alias: ref.alias };
    case 'oci':
      return { kind: 'oci', name: ref.name };
  }
}
