import { PassThrough } from 'node:stream';
import type { CacheEntry } from './image-cache.js';
import { type RootfsContext, scanArchive } from './rootfs-directory.js';
import { convertTarball } from './tarball-conversion.js';

/**
 * Bumped whenever the tarball this produces changes.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { convertToPodmanInput, ImageCache, PODMAN_CONVERTER_VERSION } from '@execenv/images';
 * const ctx = { cache: new ImageCache(), runner: hostRunner() };
 * const input = await convertToPodmanInput('./rootfs.tar.zst', ctx);
 * // Label the image with the converter that made its tarball.
 * const label = `LABEL org.execenv.converter=podman-v${PODMAN_CONVERTER_VERSION}`;
 * await ctx.runner.run(['podman', 'import', '--change', label, input.path, 'localhost/bookworm:latest']);
 * ```
 */
export const PODMAN_CONVERTER_VERSION = 1;

/**
 * Converts a rootfs tarball in any supported compression into the plain,
 * checked tarball `podman import` takes: decompressed once into the cache
 * while ArchiveGuard scans the same stream, so an archive with unsafe
 * entries never enters the cache. Cached by input digest and converter version.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { convertToPodmanInput, ImageCache } from '@execenv/images';
 * const ctx = { cache: new ImageCache(), runner: hostRunner() };
 * const input = await convertToPodmanInput('./rootfs.tar.zst', ctx); // a plain tar, every entry checked
 * await ctx.runner.run(['podman', 'import', input.path, 'localhost/bookworm:latest']);
 * ```
 */
export async function convertToPodmanInput(image: string, ctx: RootfsContext): Promise<CacheEntry> {
  return convertTarball(image, 'podman-input', `v${PODMAN_CONVERTER_VERSION}`, ctx, (tar) => {
    const output = new PassThrough({ highWaterMark: 1 << 20 });
    const scan = new PassThrough({ highWaterMark: 1 << 20 });
    tar.pipe(output);
    tar.pipe(scan);
    // The scan must have passed every entry before the blob is renamed into the cache.
    return { output, verified: scanArchive(scan).then(() => {}) };
  });
}
