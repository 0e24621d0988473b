import { InvalidSpecError } from '@execenv/core';
import { convertLxcDownloadMeta } from './lxc-download-meta.js';
import { convertToLxdUnified, type LxdImageInfo } from './lxd-unified.js';
import type { ResolvedImage } from './resolve-image.js';
import type { RootfsContext } from './rootfs-directory.js';

/**
 * Files `lxc image import` takes: one unified tarball, or a metadata tarball and a root filesystem.
 *
 * @example
 * ```ts
 * import type { LxdImageFiles } from '@execenv/images';
 * function importArgv(files: LxdImageFiles, alias: string): string[] {
 *   const paths = files.kind === 'unified' ? [files.path] : [files.meta, files.rootfs];
 *   return ['lxc', 'image', 'import', ...paths, '--alias', alias];
 * }
 * ```
 */
export type LxdImageFiles = { kind: 'unified'; path: string } | { kind: 'split'; meta: string; rootfs: string };

/**
 * The files LXD imports for a resolved image: LXD images as they are; an
 * lxc-download image with its metadata converted (metadata.yaml from its
 * config, its templates mapped); a rootfs tarball converted to a unified
 * tarball described by `info`. Directories, disks, aliases and OCI names
 * throw InvalidSpecError (field `image`).
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { ImageCache, lxdImageFiles, resolveImage } from '@execenv/images';
 * const ctx = { cache: new ImageCache(), runner: hostRunner() };
 * const image = await resolveImage('./rootfs.tar.zst', { cache: ctx.cache });
 * const files = await lxdImageFiles(image, ctx, { architecture: 'amd64', os: 'debian', release: 'bookworm' });
 * const paths = files.kind === 'unified' ? [files.path] : [files.meta, files.rootfs];
 * await ctx.runner.run(['lxc', 'image', 'import', ...paths, '--alias', 'bookworm']);
 * ```
 */
export async function lxdImageFiles(
  image: ResolvedImage,
  ctx: RootfsContext,
  info?: LxdImageInfo,
): Promise<LxdImageFiles> {
  switch (image.kind) {
    case 'lxd-unified':
      return { kind: 'unified', path: image.path };
    case 'lxd-split':
      return { kind: 'split', meta: image.meta, rootfs: image.rootfs };
    case 'lxc-download':
      return { kind: 'split', meta: (await convertLxcDownloadMeta(image, ctx)).path, rootfs: image.rootfs };
    case 'rootfs-tarball':
      if (!info)
        throw new InvalidSpecError('image', `${image.path} is a plain rootfs tarball: LXD needs its os and release`);
      return { kind: 'unified', path: (await convertToLxdUnified(image.path, info, ctx)).path };
    case 'directory':
      throw new InvalidSpecError('image', `${image.path} is a directory; LXD imports tarballs (pack it first)`);
    case 'disk':
      throw new InvalidSpecError('image', `${image.path} is a ${image.format} disk; boot it with a VM driver (qemu)`);
    case 'lxd-alias':
      throw new InvalidSpecError('image', `lxd:${image.alias} is already in LXD; nothing to import`);
    case 'oci':
      throw new InvalidSpecError('image', `oci:${image.name} is an OCI image; use the podman driver`);
  }
}
