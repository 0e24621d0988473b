import { open } from 'node:fs/promises';

/**
 * Compression of a root filesystem tarball, detected from its first bytes.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { detectTarball, type TarballFormat } from '@execenv/images';
 * const FLAG: Record<TarballFormat, string[]> = { tar: [], gzip: ['-z'], xz: ['-J'], zstd: ['--zstd'], bzip2: ['-j'] };
 * const format = await detectTarball('./rootfs.img');
 * if (format) await hostRunner().run(['tar', ...FLAG[format], '-tf', './rootfs.img']);
 * ```
 */
export type TarballFormat = 'tar' | 'gzip' | 'xz' | 'zstd' | 'bzip2';

const MAGIC: [TarballFormat, number[]][] = [
  ['gzip', [0x1f, 0x8b]],
  ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ['zstd', [0x28, 0xb5, 0x2f, 0xfd]],
  ['bzip2', [0x42, 0x5a, 0x68]],
];

/**
 * Detects a tarball's compression from its content (not its name); undefined when it is no tarball.
 *
 * @example
 * ```ts
 * import { detectTarball } from '@execenv/images';
 * const format = await detectTarball('./download.bin'); // 'tar', 'gzip', 'xz', 'zstd', 'bzip2' or undefined
 * if (!format) throw new Error('./download.bin is not a tarball');
 * ```
 */
export async function detectTarball(path: string): Promise<TarballFormat | undefined> {
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(512);
    const { bytesRead } = await fh.read(head, 0, 512, 0);
    for (const [format, magic] of MAGIC) if (magic.every((b, i) => head[i] === b)) return format;
    if (bytesRead >= 262 && head.toString('latin1', 257, 262) === 'ustar') return 'tar';
    return undefined;
  } finally {
    await fh.close();
  }
}

/**
 * The host command that decompresses `path` to stdout, or undefined for a plain tar.
 *
 * @example
 * ```ts
 * import { decompressArgv } from '@execenv/images';
 * decompressArgv('xz', '/srv/rootfs.tar.xz'); // ['xz', '-dc', '-T0', '--', '/srv/rootfs.tar.xz']
 * decompressArgv('tar', '/srv/rootfs.tar'); // undefined: read the file as it is
 * ```
 */
export function decompressArgv(format: TarballFormat, path: string): string[] | undefined {
  switch (format) {
    case 'gzip':
      return ['gzip', '-dc', '--', path];
    case 'xz':
      return ['xz', '-dc', '-T0', '--', path];
    case 'zstd':
      return ['zstd', '-dcq', '--', path];
    case 'bzip2':
      return ['bzip2', '-dc', '--', path];
    case 'tar':
      return undefined;
  }
}
