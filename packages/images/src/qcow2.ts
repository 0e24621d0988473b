import { createReadStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { HOST_PATH } from '@execenv/core/driver';
import type { CacheEntry } from './image-cache.js';
import { QemuImg } from './qemu-img.js';
import { fileDigest, type RootfsContext, rootfsDirectory } from './rootfs-directory.js';

/**
 * Bumped whenever the disk this produces changes.
 *
 * @example
 * ```ts
 * import { convertToQcow2, QCOW2_CONVERTER_VERSION } from '@execenv/images';
 * import { writeFile } from 'node:fs/promises';
 * const disk = await convertToQcow2('./rootfs.tar.zst', { size: '4G' }, ctx);
 * // A build manifest records which converter made the disk it ships.
 * await writeFile('./disk.json', JSON.stringify({ sha256: disk.digest, converter: QCOW2_CONVERTER_VERSION }));
 * ```
 */
export const QCOW2_CONVERTER_VERSION = 1;

/**
 * Options of convertToQcow2.
 *
 * @example
 * ```ts
 * import { convertToQcow2, type Qcow2Options } from '@execenv/images';
 * const opts: Qcow2Options = { size: '10G', label: 'root' }; // the guest mounts LABEL=root
 * const disk = await convertToQcow2('./rootfs.tar.zst', opts, { cache, runner });
 * ```
 */
export interface Qcow2Options {
  /** Virtual disk size, as mkfs.ext4 takes it. @default '2G' */
  size?: string;
  /** Filesystem label. @default 'rootfs' */
  label?: string;
}

/**
 * Converts a root filesystem (tarball or directory) into a qcow2 disk holding
 * one ext4 filesystem: `mkfs.ext4 -d` from the extracted tree, then
 * `qemu-img convert`. Cached by the input's sha256, the options and the
 * converter version.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { convertToQcow2, ImageCache, QemuImg } from '@execenv/images';
 * const ctx = { cache: new ImageCache(), runner: hostRunner() };
 * const disk = await convertToQcow2('./rootfs.tar.zst', { size: '8G' }, ctx);
 * // One ext4 filesystem labelled 'rootfs'; run each VM on an overlay, never on the cached disk itself.
 * await new QemuImg().create('/tmp/vm-1.qcow2', { backingFile: disk.path });
 * ```
 */
export async function convertToQcow2(image: string, opts: Qcow2Options, ctx: RootfsContext): Promise<CacheEntry> {
  const size = opts.size ?? '2G';
  const label = opts.label ?? 'rootfs';
  const tree = await rootfsDirectory(image, ctx);
  const input = tree === image ? `dir:${tree}` : await fileDigest(image, ctx.cache);
  const key = `qcow2-v${QCOW2_CONVERTER_VERSION}\n${input}\n${size}\n${label}`;
  return ctx.cache.withKey(key, async () => {
    const cached = await ctx.cache.lookup(key);
    if (cached) return cached;
    ctx.onEvent?.({ type: 'image-convert', reference: image, from: 'rootfs', to: 'qcow2' });
    const work = await ctx.cache.tempPath('qcow2');
    await mkdir(work, { recursive: true });
    try {
      const raw = join(work, 'disk.raw');
      await ctx.runner.run(['mkfs.ext4', '-q', '-F', '-L', label, '-d', tree, raw, size], {
        env: { PATH: HOST_PATH },
      });
      await new QemuImg(ctx.runner).convert(raw, join(work, 'disk.qcow2'), 'qcow2', 'raw');
      const entry = await ctx.cache.put(createReadStream(join(work, 'disk.qcow2'), { highWaterMark: 1 << 20 }), {
        name: `${image} (qcow2 ${size})`,
      });
      await ctx.cache.link(key, entry.digest);
      return entry;
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
}
