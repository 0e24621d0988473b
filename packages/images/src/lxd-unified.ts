import { createHash } from 'node:crypto';
import { pipeline, Readable, type Writable } from 'node:stream';
import { ArchiveGuard, normaliseEntryName } from '@execenv/core';
import { type Header, extract as tarExtract, pack as tarPack } from 'tar-stream';

/** A header for pack(): a name and whatever else is known. */
export type TarEntryHeader = Partial<Header> & { name: string; pax?: Record<string, string> };

import { archNames } from './arch.js';
// Extended attributes (file capabilities) must pass through byte for byte.
import './binary-pax.js';
import type { CacheEntry } from './image-cache.js';
import type { RootfsContext } from './rootfs-directory.js';
import { convertTarball } from './tarball-conversion.js';

/** Bumped whenever the unified tarball this produces changes. */
export const LXD_CONVERTER_VERSION = 2;

/** What metadata.yaml says about the image. */
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

/** The metadata.yaml of an LXD unified tarball, with templates for /etc/hostname and /etc/hosts. */
export function lxdMetadataYaml(info: LxdImageInfo): string {
  const arch = archNames(info.architecture).lxd;
  const quote = (s: string) => JSON.stringify(s);
  const created = Math.floor((info.creationDate ?? new Date()).getTime() / 1000);
  const template = (file: string, tpl: string) =>
    `  ${file}:\n    when:\n      - create\n      - copy\n    create_only: false\n    template: ${tpl}\n`;
  return (
    `architecture: ${quote(arch)}\ncreation_date: ${created}\nproperties:\n` +
    `  architecture: ${quote(arch)}\n  description: ${quote(info.description ?? `${info.os} ${info.release} ${arch}`)}\n` +
    `  os: ${quote(info.os)}\n  release: ${quote(info.release)}\ntemplates:\n` +
    template('/etc/hostname', 'hostname.tpl') +
    template('/etc/hosts', 'hosts.tpl')
  );
}

const HOSTNAME_TPL = '{{ container.name }}\n';
const HOSTS_TPL =
  '127.0.0.1   localhost\n127.0.1.1   {{ container.name }}\n::1         localhost ip6-localhost ip6-loopback\n';

/**
 * The entries of an LXD image's metadata: `metadata.yaml` and the templates
 * it names (the whole metadata tarball of a split image, the head of a
 * unified one).
 */
export function lxdMetadataEntries(info: LxdImageInfo): { header: TarEntryHeader; body?: string }[] {
  const mtime = info.creationDate ?? new Date();
  return [
    { header: { name: 'metadata.yaml', mode: 0o644, mtime }, body: lxdMetadataYaml(info) },
    { header: { name: 'templates/', type: 'directory', mode: 0o755, mtime } },
    { header: { name: 'templates/hostname.tpl', mode: 0o644, mtime }, body: HOSTNAME_TPL },
    { header: { name: 'templates/hosts.tpl', mode: 0o644, mtime }, body: HOSTS_TPL },
  ];
}

/**
 * Streams a rootfs tar stream as an LXD unified tarball: metadata.yaml and
 * templates first, then every entry under `rootfs/`, hardlink targets
 * rewritten to match, as launchpad-buildd's converter does. Unsafe entries
 * error the output stream with UnsafePathError. Memory stays flat.
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
      if (typeof body === 'string') out.entry(header, body, done);
      else if (body) body.pipe(out.entry(header, done) as unknown as Writable);
      else out.entry(header, done);
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
        ...h,
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
  return Readable.from(out);
}

/**
 * Converts the rootfs tarball at `image` into an LXD unified tarball in the
 * cache (keyed by the tarball's sha256, the metadata and the converter
 * version), ready for `lxc image import`.
 */
export async function convertToLxdUnified(image: string, info: LxdImageInfo, ctx: RootfsContext): Promise<CacheEntry> {
  const meta = createHash('sha256')
    .update(lxdMetadataYaml({ ...info, creationDate: new Date(0) }))
    .digest('hex');
  return convertTarball(image, 'lxd-unified', `v${LXD_CONVERTER_VERSION} ${meta}`, ctx, (tar) => ({
    output: toLxdUnified(tar, info),
  }));
}
