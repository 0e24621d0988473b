import { Readable } from 'node:stream';
import { createGzip } from 'node:zlib';
import { InvalidSpecError, type ProcessRunner } from '@execenv/core';
import { type Header, extract as tarExtract, pack as tarPack } from 'tar-stream';
import { archNames } from './arch.js';
import type { CacheEntry } from './image-cache.js';
import { DEFAULT_LXD_TEMPLATES, type LxdImageInfo, lxdMetadataYaml, type TarEntryHeader } from './lxd-unified.js';
import type { ImageOrigin } from './resolve-image.js';
import { fileDigest, openTarball, type RootfsContext } from './rootfs-directory.js';
import { detectTarball } from './tarball-format.js';

/**
 * Bumped whenever the LXD metadata this makes of lxc-download metadata changes.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { convertLxcDownloadMeta, ImageCache, LXC_META_CONVERTER_VERSION } from '@execenv/images';
 * import { writeFile } from 'node:fs/promises';
 * const image = { meta: './meta.tar.xz', rootfs: './rootfs.tar.xz' };
 * const lxdMeta = await convertLxcDownloadMeta(image, { cache: new ImageCache(), runner: hostRunner() });
 * // A build manifest records which converter made the metadata it ships.
 * await writeFile('./manifest.json', JSON.stringify({ meta: lxdMeta.digest, converter: LXC_META_CONVERTER_VERSION }));
 * ```
 */
export const LXC_META_CONVERTER_VERSION = 1;

/** Largest file read out of a metadata tarball or, for a template, out of the root filesystem. */
const SMALL_FILE = 1 << 20;

/**
 * What an lxc-download metadata tarball says: its `config`, and the files it lists as `templates`.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { type LxcDownloadMeta, readLxcDownloadMeta } from '@execenv/images';
 * const meta: LxcDownloadMeta = await readLxcDownloadMeta('./meta.tar.xz', hostRunner());
 * const arch = /^lxc\.arch\s*=\s*(\S+)/m.exec(meta.config)?.[1]; // 'x86_64'
 * console.log(arch, meta.templates, meta.created.toISOString());
 * ```
 */
export interface LxcDownloadMeta {
  /** The `config` file: LXC configuration lines (`lxc.arch = x86_64`, `lxc.include = ...`). */
  config: string;
  /** Paths inside the root filesystem that are templates (`LXC_NAME` replaced by the container's name). */
  templates: string[];
  /** When `config` was written. */
  created: Date;
}

/** Reads the small files named `wanted` (entry names without `./`) out of a tarball; stops once all were seen. */
async function readSmallFiles(
  path: string,
  wanted: ReadonlySet<string>,
  runner: ProcessRunner,
): Promise<Map<string, { body: Buffer; mtime?: Date }>> {
  const format = await detectTarball(path);
  if (!format) throw new InvalidSpecError('image', `${path} is not a tarball`);
  const found = new Map<string, { body: Buffer; mtime?: Date }>();
  const source = openTarball(path, format, runner);
  const extractor = tarExtract();
  source.stream.pipe(extractor);
  try {
    for await (const entry of extractor) {
      const name = entry.header.name.replace(/^\.?\/+/, '');
      const size = entry.header.size ?? 0;
      if (!wanted.has(name) || entry.header.type !== 'file' || size > SMALL_FILE) {
        entry.resume();
        continue;
      }
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      found.set(name, { body: Buffer.concat(chunks), mtime: entry.header.mtime });
      if (found.size === wanted.size) break;
    }
    return found;
  } finally {
    source.kill();
    extractor.destroy();
    await source.done().catch(() => {});
  }
}

/**
 * Reads an lxc-download metadata tarball (`meta.tar.xz`). Throws InvalidSpecError when it has no `config`.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { readLxcDownloadMeta } from '@execenv/images';
 * const meta = await readLxcDownloadMeta('./meta.tar.xz', hostRunner());
 * console.log(meta.config); // lxc.include = LXC_TEMPLATE_CONFIG/debian.common.conf, lxc.arch = x86_64
 * console.log(meta.templates); // ['/etc/hostname', '/etc/hosts']
 * ```
 */
export async function readLxcDownloadMeta(meta: string, runner: ProcessRunner): Promise<LxcDownloadMeta> {
  const files = await readSmallFiles(meta, new Set(['config', 'templates']), runner);
  const config = files.get('config');
  if (!config) throw new InvalidSpecError('image', `${meta} is not lxc-download metadata (no config file)`);
  const templates = (files.get('templates')?.body.toString('utf8') ?? '')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('/') && !l.split('/').includes('..'));
  return { config: config.body.toString('utf8'), templates, created: config.mtime ?? new Date(0) };
}

/** The value of an `lxc.<key> = value` line of an LXC config. */
function configValue(config: string, key: string): string | undefined {
  for (const line of config.split('\n')) {
    const m = /^\s*([a-z0-9_.]+)\s*=\s*(.*?)\s*$/.exec(line);
    if (m?.[1] === key) return m[2];
  }
  return undefined;
}

/**
 * What LXD's metadata.yaml says of an lxc-download image: the architecture
 * from `lxc.arch` (else the index's), os and release from the index entry
 * (else the distribution of the `lxc.include`d common config).
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { lxdInfoFromLxcMeta, lxdMetadataYaml, readLxcDownloadMeta } from '@execenv/images';
 * const meta = await readLxcDownloadMeta('./meta.tar.xz', hostRunner());
 * const origin = { distribution: 'debian', release: 'bookworm', architecture: 'amd64', variant: 'default' };
 * const info = lxdInfoFromLxcMeta(meta, origin); // { architecture: 'x86_64', os: 'debian', release: 'bookworm', ... }
 * console.log(lxdMetadataYaml(info));
 * ```
 */
export function lxdInfoFromLxcMeta(meta: LxcDownloadMeta, origin?: ImageOrigin): LxdImageInfo {
  const arch = configValue(meta.config, 'lxc.arch') ?? origin?.architecture;
  if (!arch) throw new InvalidSpecError('image', 'lxc-download metadata without lxc.arch, and no index entry');
  const included = /\/([a-z0-9]+)\.common\.conf$/.exec(configValue(meta.config, 'lxc.include') ?? '')?.[1];
  const os = origin?.distribution ?? included ?? 'unknown';
  const release = origin?.release ?? 'unknown';
  return {
    architecture: archNames(arch, 'image').lxd,
    os,
    release,
    description: `${os} ${release} ${archNames(arch, 'image').lxd}${origin && origin.variant !== 'default' ? ` (${origin.variant})` : ''}`,
    creationDate: meta.created,
  };
}

/** The template file name of a path: `/etc/hostname` -> `etc-hostname.tpl`. */
function templateName(path: string): string {
  return `${path.replace(/^\/+/, '').replace(/[^A-Za-z0-9._-]/g, '-')}.tpl`;
}

/** A gzip-compressed tar stream of `entries`. */
function gzipTar(entries: readonly { header: TarEntryHeader; body?: string | Buffer }[]): Readable {
  const p = tarPack();
  for (const { header, body } of entries) {
    if (body === undefined) p.entry(header as Header);
    else p.entry(header as Header, body);
  }
  p.finalize();
  return Readable.from(p).pipe(createGzip());
}

/**
 * Converts lxc-download metadata into an LXD metadata tarball (gzip) in the
 * cache: metadata.yaml made from the meta's `config` and the index entry,
 * and each file the meta lists as a template read out of the root
 * filesystem with `LXC_NAME` mapped to `{{ container.name }}`
 * (`/etc/hostname` and `/etc/hosts` get LXD's usual templates when the
 * rootfs has none). With the rootfs tarball it makes a split image LXD
 * imports. Cached by both inputs' sha256 and the converter version.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { convertLxcDownloadMeta, ImageCache } from '@execenv/images';
 * const ctx = { cache: new ImageCache(), runner: hostRunner() };
 * const lxdMeta = await convertLxcDownloadMeta({ meta: './meta.tar.xz', rootfs: './rootfs.tar.xz' }, ctx);
 * await ctx.runner.run(['lxc', 'image', 'import', lxdMeta.path, './rootfs.tar.xz', '--alias', 'bookworm']);
 * ```
 */
export async function convertLxcDownloadMeta(
  image: { meta: string; rootfs: string; origin?: ImageOrigin },
  ctx: RootfsContext,
): Promise<CacheEntry> {
  const digests = `${await fileDigest(image.meta, ctx.cache)} ${await fileDigest(image.rootfs, ctx.cache)}`;
  const key = `lxd-meta-from-lxc-download\nv${LXC_META_CONVERTER_VERSION}\n${digests}\n${JSON.stringify(image.origin ?? {})}`;
  return ctx.cache.withKey(key, async () => {
    const cached = await ctx.cache.lookup(key);
    if (cached) return cached;
    ctx.onEvent?.({ type: 'image-convert', reference: image.meta, from: 'lxc-download', to: 'lxd-split' });
    const meta = await readLxcDownloadMeta(image.meta, ctx.runner);
    const info = lxdInfoFromLxcMeta(meta, image.origin);
    const paths = [...new Set(['/etc/hostname', '/etc/hosts', ...meta.templates])];
    const inRootfs = await readSmallFiles(image.rootfs, new Set(paths.map((p) => p.slice(1))), ctx.runner);
    const templates: { path: string; template: string; body: string }[] = [];
    for (const path of paths) {
      const own = inRootfs.get(path.slice(1))?.body.toString('utf8');
      if (own?.includes('LXC_NAME'))
        templates.push({
          path,
          template: templateName(path),
          body: own.replaceAll('LXC_NAME', '{{ container.name }}'),
        });
      else {
        const usual = DEFAULT_LXD_TEMPLATES.get(path);
        if (usual) templates.push({ path, ...usual });
      }
    }
    const mtime = info.creationDate;
    const entries = [
      { header: { name: 'metadata.yaml', mode: 0o644, mtime }, body: lxdMetadataYaml(info, templates) },
      { header: { name: 'templates/', type: 'directory' as const, mode: 0o755, mtime } },
      ...templates.map((t) => ({ header: { name: `templates/${t.template}`, mode: 0o644, mtime }, body: t.body })),
    ];
    const entry = await ctx.cache.put(gzipTar(entries), { name: `${image.meta} (lxd metadata .tar.gz)` });
    await ctx.cache.link(key, entry.digest);
    return entry;
  });
}
