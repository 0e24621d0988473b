import { createHash } from 'node:crypto';
import { PassThrough, pipeline, Readable, type Writable } from 'node:stream';
import { ArchiveGuard, HostCommandError, normaliseEntryName, type ProcessRunner } from '@execenv/core';
import { HOST_PATH } from '@execenv/core/driver';
import { type Header, extract as tarExtract, pack as tarPack } from 'tar-stream';

/**
 * A tar entry's header for writing: a name and whatever else is known (tar-stream's fields, kept here).
 *
 * @example
 * ```ts
 * import type { TarEntryHeader } from '@execenv/images';
 * import { tarOf } from '@execenv/images/testing';
 * const etc: TarEntryHeader = { name: './etc/', type: 'directory', mode: 0o755 };
 * const motd: TarEntryHeader = { name: './etc/motd', mode: 0o644, uid: 0, gid: 0, mtime: new Date() };
 * const rootfs = await tarOf([{ header: etc }, { header: motd, body: 'welcome\n' }]);
 * ```
 */
export interface TarEntryHeader {
  name: string;
  type?: 'file' | 'link' | 'symlink' | 'character-device' | 'block-device' | 'directory' | 'fifo' | 'contiguous-file';
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  mtime?: Date;
  linkname?: string | null;
  uname?: string;
  gname?: string;
  devmajor?: number;
  devminor?: number;
  /** Pax records; extended attributes (`SCHILY.xattr.*`) as latin1 strings, one character per byte. */
  pax?: Record<string, string>;
}

import { archNames } from './arch.js';
// Extended attributes (file capabilities) must pass through byte for byte.
import './binary-pax.js';
import type { CacheEntry } from './image-cache.js';
import type { RootfsContext } from './rootfs-directory.js';
import { convertTarball, type TarballTransform } from './tarball-conversion.js';

/**
 * Bumped whenever the unified tarball this produces changes.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { convertToLxdUnified, ImageCache, LXD_CONVERTER_VERSION } from '@execenv/images';
 * const ctx = { cache: new ImageCache(), runner: hostRunner() };
 * const info = { architecture: 'amd64', os: 'debian', release: 'bookworm' };
 * const unified = await convertToLxdUnified('./rootfs.tar.zst', info, ctx);
 * const property = `execenv.converter=${LXD_CONVERTER_VERSION}`; // which converter made it, as an image property
 * await ctx.runner.run(['lxc', 'image', 'import', unified.path, '--alias', 'bookworm', property]);
 * ```
 */
export const LXD_CONVERTER_VERSION = 3;

/**
 * What metadata.yaml says about the image.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { convertToLxdUnified, ImageCache, type LxdImageInfo } from '@execenv/images';
 * const info: LxdImageInfo = { architecture: 'x86_64', os: 'debian', release: 'bookworm' }; // written as LXD's name
 * const ctx = { cache: new ImageCache(), runner: hostRunner() };
 * const unified = await convertToLxdUnified('./rootfs.tar.zst', info, ctx);
 * ```
 */
export interface LxdImageInfo {
  /** Architecture in any naming (`amd64`, `x86_64`, ...); written as LXD's name. */
  architecture: string;
  /** Distribution, e.g. `debian`. */
  os: string;
  /** Release, e.g. `bookworm`. */
  release: string;
  /** @default `<os> <release> <architecture>` */
  description?: string;
  /** @default now */
  creationDate?: Date;
}

/**
 * A template of an LXD image: the file it writes in the instance, and its name under `templates/`.
 *
 * @example
 * ```ts
 * import { type LxdTemplate, lxdMetadataYaml } from '@execenv/images';
 * const templates: LxdTemplate[] = [
 *   { path: '/etc/hostname', template: 'hostname.tpl' },
 *   { path: '/etc/mailname', template: 'mailname.tpl' }, // templates/mailname.tpl must be in the metadata tarball
 * ];
 * const yaml = lxdMetadataYaml({ architecture: 'amd64', os: 'debian', release: 'bookworm' }, templates);
 * ```
 */
export interface LxdTemplate {
  path: string;
  template: string;
}

const HOSTNAME_TPL = '{{ container.name }}\n';
const HOSTS_TPL =
  '127.0.0.1   localhost\n127.0.1.1   {{ container.name }}\n::1         localhost ip6-localhost ip6-loopback\n';

/**
 * LXD's usual templates for /etc/hostname and /etc/hosts, by path.
 *
 * @example
 * ```ts
 * import { DEFAULT_LXD_TEMPLATES } from '@execenv/images';
 * for (const [path, t] of DEFAULT_LXD_TEMPLATES) console.log(`${path} <- templates/${t.template}`);
 * console.log(DEFAULT_LXD_TEMPLATES.get('/etc/hostname')?.body); // '{{ container.name }}\n'
 * ```
 */
export const DEFAULT_LXD_TEMPLATES: ReadonlyMap<string, { template: string; body: string }> = new Map([
  ['/etc/hostname', { template: 'hostname.tpl', body: HOSTNAME_TPL }],
  ['/etc/hosts', { template: 'hosts.tpl', body: HOSTS_TPL }],
]);

/**
 * The metadata.yaml of an LXD image, with `templates` (default: those for
 * /etc/hostname and /etc/hosts) applied on create and copy.
 *
 * @example
 * ```ts
 * import { lxdMetadataYaml } from '@execenv/images';
 * const yaml = lxdMetadataYaml({ architecture: 'amd64', os: 'debian', release: 'bookworm' });
 * // architecture: "x86_64", properties (description "debian bookworm x86_64", os, release),
 * // and templates for /etc/hostname and /etc/hosts, applied on create and copy
 * ```
 */
export function lxdMetadataYaml(
  info: LxdImageInfo,
  templates: readonly LxdTemplate[] = [...DEFAULT_LXD_TEMPLATES].map(([path, t]) => ({ path, template: t.template })),
): string {
  const arch = archNames(info.architecture).lxd;
  const quote = (s: string) => JSON.stringify(s);
  const created = Math.floor((info.creationDate ?? new Date()).getTime() / 1000);
  const plain = (x: string) => (/^[A-Za-z0-9_./-]+$/.test(x) ? x : quote(x));
  const template = (t: LxdTemplate) =>
    `  ${plain(t.path)}:\n    when:\n      - create\n      - copy\n    create_only: false\n    template: ${plain(t.template)}\n`;
  return (
    `architecture: ${quote(arch)}\ncreation_date: ${created}\nproperties:\n` +
    `  architecture: ${quote(arch)}\n  description: ${quote(info.description ?? `${info.os} ${info.release} ${arch}`)}\n` +
    `  os: ${quote(info.os)}\n  release: ${quote(info.release)}\ntemplates:${templates.length ? '\n' : ' {}\n'}` +
    templates.map(template).join('')
  );
}

/**
 * The entries of an LXD image's metadata: `metadata.yaml` and the templates
 * it names (the whole metadata tarball of a split image, the head of a
 * unified one).
 *
 * @example
 * ```ts
 * import { lxdMetadataEntries } from '@execenv/images';
 * import { tarOf } from '@execenv/images/testing';
 * import { writeFile } from 'node:fs/promises';
 * const meta = await tarOf(lxdMetadataEntries({ architecture: 'amd64', os: 'debian', release: 'bookworm' }));
 * await writeFile('./meta.tar', meta); // lxc image import ./meta.tar ./rootfs.tar.xz
 * ```
 */
export function lxdMetadataEntries(info: LxdImageInfo): { header: TarEntryHeader; body?: string }[] {
  const mtime = info.creationDate ?? new Date();
  return [
    { header: { name: 'metadata.yaml', mode: 0o644, mtime }, body: lxdMetadataYaml(info) },
    { header: { name: 'templates/', type: 'directory', mode: 0o755, mtime } },
    ...[...DEFAULT_LXD_TEMPLATES.values()].map((t) => ({
      header: { name: `templates/${t.template}`, mode: 0o644, mtime },
      body: t.body,
    })),
  ];
}

/**
 * Streams a rootfs tar stream as an LXD unified tarball: metadata.yaml and
 * templates first, then every entry under `rootfs/`, hardlink targets
 * rewritten to match, as launchpad-buildd's converter does. Unsafe entries
 * error the output stream with UnsafePathError. Memory stays flat.
 *
 * @example
 * ```ts
 * import { toLxdUnified } from '@execenv/images';
 * import { createReadStream, createWriteStream } from 'node:fs';
 * import { pipeline } from 'node:stream/promises';
 * const info = { architecture: 'amd64', os: 'debian', release: 'bookworm' };
 * await pipeline(toLxdUnified(createReadStream('./rootfs.tar'), info), createWriteStream('./unified.tar'));
 * ```
 */
export function toLxdUnified(rootfs: Readable, info: LxdImageInfo): Readable {
  const out = tarPack();
  const extractor = tarExtract();
  const entries = extractor[Symbol.asyncIterator]();
  pipeline(rootfs, extractor, (err) => {
    if (err) out.destroy(err);
  });
  const add = (header: TarEntryHeader, body?: Readable | string) =>
    new Promise<void>((resolve, reject) => {
      const done = (err?: Error | null) => (err ? reject(err) : resolve());
      const h = header as Header;
      if (typeof body === 'string') out.entry(h, body, done);
      else if (body) body.pipe(out.entry(h, done) as unknown as Writable);
      else out.entry(h, done);
    });
  (async () => {
    for (const { header, body } of lxdMetadataEntries(info)) await add(header, body);
    const guard = new ArchiveGuard();
    for await (const entry of { [Symbol.asyncIterator]: () => entries }) {
      const h = entry.header as Header;
      const name = guard.check(h);
      const dir = h.type === 'directory' ? '/' : '';
      // The pax path and linkpath are the old names: pack writes the new ones from name and linkname.
      const { path: _path, linkpath: _linkpath, ...pax } = (h.pax ?? {}) as Record<string, string>;
      const moved: TarEntryHeader = {
        ...(h as TarEntryHeader),
        name: name === '' ? 'rootfs/' : `rootfs/${name}${dir}`,
        pax: Object.keys(pax).length > 0 ? pax : undefined,
      };
      if (h.type === 'link') moved.linkname = `rootfs/${normaliseEntryName(h.linkname ?? '')}`;
      if (h.type === 'file' || h.type === 'contiguous-file') await add(moved, entry as unknown as Readable);
      else {
        entry.resume();
        await add(moved);
      }
      guard.record(name, h.type);
    }
    out.finalize();
  })().catch((err: unknown) => {
    rootfs.destroy();
    out.destroy(err as Error);
  });
  // Iterated through a node Readable: node's pipeline misses errors destroyed into a streamx stream.
  const readable = Readable.from(out);
  // The error reaches the caller through `readable`; the streamx side must not raise it a second time.
  out.on('error', () => {});
  return readable;
}

/** How unified tarballs are compressed: zstd, which LXD (5.0 and later) imports, at a fast level on every core. */
const ZSTD_ARGV = ['zstd', '-q', '-c', '-T0', '-3'];

/**
 * Compresses `input` with the host's zstd. An error of `input` (an unsafe
 * entry) stops zstd and errors the output with it; a failing zstd rejects
 * `verified`.
 */
function zstdCompress(input: Readable, runner: ProcessRunner): TarballTransform {
  const proc = runner.spawn(ZSTD_ARGV, { env: { PATH: HOST_PATH } });
  // zstd's own stdout is never destroyed with an error: the process runner would report it as zstd's failure.
  const output = new PassThrough({ highWaterMark: 1 << 20 });
  // An error may come before the consumer is attached: it keeps it (output.errored) for when it is.
  output.on('error', () => {});
  const compressed = proc.stdout as Readable;
  compressed.pipe(output);
  let stderr = '';
  proc.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  // Not pipeline(): a stdin destroyed with the input's error would be reported as zstd's own failure.
  proc.stdin?.on('error', () => {});
  input.on('error', (err) => {
    proc.kill('SIGKILL');
    compressed.unpipe(output);
    compressed.resume();
    output.destroy(err);
  });
  input.pipe(proc.stdin as Writable);
  // A consumer that gives up (the cache write failed) must not leave zstd blocked on a full pipe.
  output.on('close', () => {
    if (!output.readableEnded) proc.kill('SIGKILL');
  });
  const verified = proc.exited.then((exit) => {
    if (exit.exitCode !== 0) throw new HostCommandError({ argv: ZSTD_ARGV, ...exit, stdout: '', stderr });
  });
  return { output, verified, extension: '.tar.zst' };
}

/**
 * Converts the rootfs tarball at `image` into a zstd-compressed LXD unified
 * tarball in the cache (keyed by the tarball's sha256, the metadata and the
 * converter version), ready for `lxc image import`.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { convertToLxdUnified, ImageCache } from '@execenv/images';
 * const ctx = { cache: new ImageCache(), runner: hostRunner() };
 * const info = { architecture: 'amd64', os: 'debian', release: 'bookworm' };
 * const unified = await convertToLxdUnified('./rootfs.tar.xz', info, ctx); // unified.format === 'zstd'
 * await ctx.runner.run(['lxc', 'image', 'import', unified.path, '--alias', 'bookworm']);
 * ```
 */
export async function convertToLxdUnified(
  image: string,
  info: LxdImageInfo,
  ctx: RootfsContext,
): Promise<CacheEntry & { format: 'zstd' }> {
  const meta = createHash('sha256')
    .update(lxdMetadataYaml({ ...info, creationDate: new Date(0) }))
    .digest('hex');
  const entry = await convertTarball(image, 'lxd-unified', `v${LXD_CONVERTER_VERSION} ${meta}`, ctx, (tar) =>
    zstdCompress(toLxdUnified(tar, info), ctx.runner),
  );
  return { ...entry, format: 'zstd' };
}
