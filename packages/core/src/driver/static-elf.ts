import { open } from 'node:fs/promises';

/** ELF program header type of an interpreter request (PT_INTERP): the file needs a dynamic loader. */
const PT_INTERP = 3;

/**
 * Whether `path` is an ELF executable with no program interpreter, i.e.
 * statically linked, so it runs in any root filesystem of its
 * architecture (32- or 64-bit, either byte order). False for a file that is
 * missing or not ELF.
 *
 * @example
 * ```ts
 * import { isStaticElf } from '@execenv/core/driver';
 * // A busybox copied into an image or an initramfs must not need the host's libc.
 * if (!(await isStaticElf('/bin/busybox'))) throw new Error('/bin/busybox is dynamically linked: apt-get install busybox-static');
 * ```
 */
export async function isStaticElf(path: string): Promise<boolean> {
  const file = await open(path, 'r').catch(() => undefined);
  if (!file) return false;
  try {
    const header = Buffer.alloc(64);
    await file.read(header, 0, 64, 0);
    if (header.readUInt32BE(0) !== 0x7f454c46) return false;
    const is64 = header[4] === 2;
    const le = header[5] === 1;
    const u16 = (b: Buffer, o: number) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
    const u32 = (b: Buffer, o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
    const phoff = is64 ? Number(le ? header.readBigUInt64LE(32) : header.readBigUInt64BE(32)) : u32(header, 28);
    const phentsize = u16(header, is64 ? 54 : 42);
    const phnum = u16(header, is64 ? 56 : 44);
    const table = Buffer.alloc(phentsize * phnum);
    await file.read(table, 0, table.length, phoff);
    for (let i = 0; i < phnum; i++) if (u32(table, i * phentsize) === PT_INTERP) return false;
    return true;
  } finally {
    await file.close();
  }
}
