import { PassThrough } from 'node:stream';
import type { CacheEntry } from './image-cache.js';
import { type RootfsContext, scanArchive } from './rootfs-directory.js';
import { convertTarball } from './tarball-conversion.js';

/** Bumped whenever the tarball this produces changes. */
export const PODMAN_CONVERTER_VERSION = 1;

/**
 * Converts a rootfs tarball in any supported compression into the plain,
 * checked tarball `podman import` takes: decompressed once into the cache
 * while ArchiveGuard scans the same stream, so an archive with unsafe
 * entries never enters the cache. Cached by input digest and converter version.
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
