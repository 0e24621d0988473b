import { InvalidSpecError } from '@execenv/core';
import type { ResolvedImage } from './resolve-image.js';
import { type RootfsContext, rootfsDirectory } from './rootfs-directory.js';

/**
 * The directory holding the root filesystem of a resolved image, for drivers
 * that run a tree (chroot, systemd-nspawn): a directory as it is; a rootfs
 * tarball, the rootfs of a split LXD image or the `rootfs/` tree of a unified
 * one extracted safely, once, into the cache. Disks, LXD aliases and OCI
 * names are refused with InvalidSpecError (field `image`) saying which drivers
 * take them.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { ImageCache, imageRootDirectory, resolveImage } from '@execenv/images';
 * const cache = new ImageCache();
 * const image = await resolveImage('https://example.org/bookworm.tar.zst', { cache });
 * const root = await imageRootDirectory(image, { cache, runner: hostRunner() }); // read-only: overlay it
 * const hold = await cache.holdTree(root, 'env-1'); // prune leaves it while this process lives; remove when done
 * ```
 */
export async function imageRootDirectory(image: ResolvedImage, ctx: RootfsContext): Promise<string> {
  switch (image.kind) {
    case 'directory':
    case 'rootfs-tarball':
      return rootfsDirectory(image.path, ctx);
    case 'lxd-split':
    case 'lxc-download':
      return rootfsDirectory(image.rootfs, ctx);
    case 'lxd-unified':
      return rootfsDirectory(image.path, ctx, 'rootfs');
    case 'disk':
      throw new InvalidSpecError('image', `${image.path} is a ${image.format} disk; boot it with a VM driver (qemu)`);
    case 'lxd-alias':
      throw new InvalidSpecError('image', `lxd:${image.alias} names an image inside LXD; use the lxd driver`);
    case 'oci':
      throw new InvalidSpecError('image', `oci:${image.name} is an OCI image; use the podman driver`);
  }
}
