import { PassThrough } from 'node:stream';
import { ImageNotFoundError } from '@execenv/core';
import type { CacheEntry } from './image-cache.js';
import { fileDigest, openTarball, type RootfsContext, scanArchive } from './rootfs-directory.js';
import { detectTarball } from './tarball-format.js';

/** Bumped whenever the tarball this produces changes. */
export const PODMAN_CONVERTER_VERSION = 1;

/**
 * Converts a rootfs tarball in any supported compression into the plain,
 * checked tarball `podman import` takes: decompressed once into the cache
 * while ArchiveGuard scans the same stream, so an archive with unsafe
 * entries never enters the cache. Cached by input digest and converter version.
 */
export async function convertToPodmanInput(image: string, ctx: RootfsContext): Promise<CacheEntry> {
  const format = await detectTarball(image).catch(() => undefined);
  if (!format) throw new ImageNotFoundError(image, 'not a tarball (plain, gzip, xz, zstd or bzip2)', { op: 'convert' });
  const key = `podman-input-v${PODMAN_CONVERTER_VERSION}\n${await fileDigest(image, ctx.cache)}`;
  return ctx.cache.withKey(key, async () => {
    const cached = await ctx.cache.lookup(key);
    if (cached) return cached;
    ctx.onEvent?.({ type: 'image-convert', reference: image, from: format, to: 'podman-input' });
    const source = openTarball(image, format, ctx.runner);
    const toCache = new PassThrough({ highWaterMark: 1 << 20 });
    const toScan = new PassThrough({ highWaterMark: 1 << 20 });
    source.stream.pipe(toCache);
    source.stream.pipe(toScan);
    const scanned = scanArchive(toScan);
    scanned.catch(() => {});
    try {
      const entry = await ctx.cache.put(toCache, {
        name: `${image} (podman import)`,
        // The scan must have passed every entry before the blob is renamed into the cache.
        verify: () => scanned,
      });
      await source.done();
      await ctx.cache.link(key, entry.digest);
      return entry;
    } catch (err) {
      source.kill();
      await source.done().catch(() => {});
      throw err;
    }
  });
}
