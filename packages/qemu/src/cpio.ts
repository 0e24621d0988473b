/**
 * One entry of an initramfs archive.
 *
 * @example
 * ```ts
 * import { type CpioEntry, packCpio } from '@execenv/qemu';
 * const entries: CpioEntry[] = [
 *   { type: 'directory', path: 'etc' },
 *   { type: 'file', path: 'etc/hostname', content: new TextEncoder().encode('guest\n') },
 *   { type: 'symlink', path: 'sbin', target: 'bin' },
 * ];
 * const archive = packCpio(entries);
 * ```
 */
export type CpioEntry =
  | { type: 'directory'; path: string; mode?: number }
  | { type: 'file'; path: string; content: Uint8Array; mode?: number }
  | { type: 'symlink'; path: string; target: string };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const TRAILER = 'TRAILER!!!';

/**
 * Packs entries into a cpio archive in the "newc" format the kernel unpacks
 * as an initramfs: every entry owned by root, with the given modes, in the
 * given order (a directory before what it holds). Paths are relative, without
 * a leading slash or `..`.
 * @throws RangeError on a path the kernel would not unpack where it is meant to go.
 *
 * @example
 * ```ts
 * import { writeFile } from 'node:fs/promises';
 * import { packCpio } from '@execenv/qemu';
 * const init = new TextEncoder().encode('#!/bin/sh\nexec /bin/sh\n');
 * const archive = packCpio([
 *   { type: 'directory', path: 'bin' },
 *   { type: 'file', path: 'init', content: init, mode: 0o755 },
 * ]);
 * await writeFile('/tmp/extra.cpio', archive); // QEMU takes it with -initrd
 * ```
 */
export function packCpio(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  for (const entry of entries) {
    checkPath(entry.path);
    switch (entry.type) {
      case 'directory':
        parts.push(...record(ino++, S_IFDIR | (entry.mode ?? 0o755), 2, entry.path, Buffer.alloc(0)));
        break;
      case 'file':
        parts.push(...record(ino++, S_IFREG | (entry.mode ?? 0o644), 1, entry.path, Buffer.from(entry.content)));
        break;
      case 'symlink':
        parts.push(...record(ino++, S_IFLNK | 0o777, 1, entry.path, Buffer.from(entry.target)));
        break;
    }
  }
  parts.push(...record(0, 0, 1, TRAILER, Buffer.alloc(0)));
  return Buffer.concat(parts);
}

function checkPath(path: string): void {
  if (path === '' || path.startsWith('/') || path.split('/').some((p) => p === '' || p === '.' || p === '..'))
    throw new RangeError(`cpio: ${JSON.stringify(path)} is not a plain relative path`);
}

/** Header, name and data of one entry, each padded to four bytes. */
function record(ino: number, mode: number, nlink: number, name: string, data: Buffer): Buffer[] {
  const nameBytes = Buffer.from(`${name}\0`);
  const fields = [ino, mode, 0, 0, nlink, 0, data.length, 0, 0, 0, 0, nameBytes.length, 0];
  const header = Buffer.from(`070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}`, 'ascii');
  return [header, nameBytes, padding(header.length + nameBytes.length), data, padding(data.length)];
}

function padding(length: number): Buffer {
  return Buffer.alloc((4 - (length % 4)) % 4);
}
