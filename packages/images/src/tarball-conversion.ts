import type { Readable } from 'node:stream';
import { ImageNotFoundError } from '@execenv/core';
import type { CacheEntry } from './image-cache.js';
import { fileDigest, openTarball, type RootfsContext } from './rootfs-directory.js';
import { detectTarball } from './tarball-format.js';

/**
 * What a conversion makes of a tarball's decompressed stream: the blob's content, and a check it must pass.
 *
 * @example
 * ```ts
 * import { convertTarball, scanArchive, type TarballTransform } from '@execenv/images';
 * import { PassThrough, type Readable } from 'node:stream';
 * function checkedCopy(tar: Readable): TarballTransform {
 *   const [output, scan] = [tar.pipe(new PassThrough()), tar.pipe(new PassThrough())];
 *   return { output, verified: scanArchive(scan).then(() => {}), extension: '.tar' };
 * }
 * const entry = await convertTarball('./rootfs.tar.xz', 'checked-tar', 'v1', ctx, checkedCopy);
 * ```
 */
export interface TarballTransform {
  /** The converted content to store. */
  output: Readable;
  /** Settles once the content is known good; the blob enters the cache only after it resolved. */
  verified?: Promise<void>;
  /** What the stored blob is, for its name in the cache (`.tar.zst`). */
  extension?: string;
}

/**
 * Converts the tarball at `image` into one blob in the cache, once: keyed by
 * `kind`, the tarball's sha256 and `variant` (converter version, options),
 * under the cache's inter-process lock. On failure the decompressor is
 * stopped and nothing is cached.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { convertTarball, ImageCache } from '@execenv/images';
 * import { createGzip } from 'node:zlib';
 * const ctx = { cache: new ImageCache(), runner: hostRunner() };
 * // Any supported tarball recompressed as gzip, once per input sha256 and 'v1'.
 * const gz = await convertTarball('./rootfs.tar.zst', 'gzip', 'v1', ctx, (tar) => ({
 *   output: tar.pipe(createGzip()),
 *   extension: '.tar.gz',
 * }));
 * ```
 */
export async function convertTarball(
  image: string,
  kind: string,
  variant: string,
  ctx: RootfsContext,
  transform: (tar: Readable) => TarballTransform,
): Promise<CacheEntry> {
  const format = await detectTarball(image).catch(() => undefined);
  if (!format) throw new ImageNotFoundError(image, 'not a tarball (plain, gzip, xz, zstd or bzip2)', { op: 'convert' });
  const key = `${kind}\n${variant}\n${await fileDigest(image, ctx.cache)}`;
  return ctx.cache.withKey(key, async () => {
    const cached = await ctx.cache.lookup(key);
    if (cached) return cached;
    ctx.onEvent?.({ type: 'image-convert', reference: image, from: format, to: kind });
    const source = openTarball(image, format, ctx.runner);
    try {
      const { output, verified, extension } = transform(source.stream);
      verified?.catch(() => {});
      const entry = await ctx.cache.put(output, {
        name: `${image} (${kind}${extension ? ` ${extension}` : ''})`,
        verify: () => verified ?? Promise.resolve(),
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
