import { InvalidSpecError } from '@execenv/core';
import { convertLxcDownloadMeta } from './lxc-download-meta.js';
import { convertToLxdUnified, type LxdImageInfo } from './lxd-unified.js';
import type { ResolvedImage } from './resolve-image.js';
import type { RootfsContext } from './rootfs-directory.js';

/** Files `lxc image import` takes: one unified tarball, or a metadata tarball and a root filesystem. */
export type LxdImageFiles = { kind: 'unified'; path: string } | { kind: 'split'; meta: string; rootfs: string };

/**
 * The files LXD imports for a resolved image: LXD images as they are; an
 * lxc-download image with its metadata converted (metadata.yaml from its
 * config, its templates mapped); a rootfs tarball converted to a unified
 * tarball described by `info`. Directories, disks, aliases and OCI names
 * throw InvalidSpecError (field `image`).
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
