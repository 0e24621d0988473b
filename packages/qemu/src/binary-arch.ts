import { lstat, open, readlink } from 'node:fs/promises';
import { posix } from 'node:path';

/** ELF `e_machine` values of the architectures the driver boots, by Debian name. */
const ELF_MACHINES: Readonly<Record<number, string>> = { 62: 'amd64', 183: 'arm64', 3: 'i386' };

/**
 * The Debian architecture an ELF binary is built for (`amd64`, `arm64`,
 * `i386`), `elf:<e_machine>` for others, or undefined when the file is not
 * a little-endian ELF file or cannot be read.
 *
 * @example
 * ```ts
 * import { elfArch } from '@execenv/qemu';
 * await elfArch('/bin/busybox'); // 'amd64' on an amd64 host
 * ```
 */
export async function elfArch(path: string): Promise<string | undefined> {
  const head = await readHead(path, 20);
  if (!head || head.length < 20 || head.readUInt32BE(0) !== 0x7f454c46 || head[5] !== 1) return undefined;
  const machine = head.readUInt16LE(18);
  return ELF_MACHINES[machine] ?? `elf:${machine}`;
}

/**
 * The architecture of a kernel image for direct boot: an ELF vmlinux by its
 * machine, an x86 bzImage by its `HdrS` header (`amd64`), an arm64 `Image`
 * by its `ARM\x64` magic; undefined for anything else (a compressed image,
 * say), which QEMU is left to judge.
 *
 * @example
 * ```ts
 * import { kernelImageArch } from '@execenv/qemu';
 * await kernelImageArch('/srv/qemu-kernel-arm64/Image'); // 'arm64'
 * await kernelImageArch('/srv/qemu-kernel/vmlinux'); // 'amd64'
 * ```
 */
export async function kernelImageArch(path: string): Promise<string | undefined> {
  const elf = await elfArch(path);
  if (elf) return elf;
  const head = await readHead(path, 0x206);
  const says = (offset: number, magic: string) =>
    head !== undefined &&
    head.length >= offset + magic.length &&
    head.toString('latin1', offset, offset + magic.length) === magic;
  if (says(0x38, 'ARMd')) return 'arm64';
  if (says(0x202, 'HdrS')) return 'amd64';
  return undefined;
}

/** Programs every root filesystem the driver boots has, whose architecture is the root's. */
const ROOT_PROGRAMS = ['bin/sh', 'sbin/init', 'bin/busybox'];
/** Symlinks followed while resolving one path in a root, as the kernel's limit. */
const MAX_LINKS = 40;

/**
 * The architecture of the programs in a root filesystem directory, read
 * from its `/bin/sh` (else `/sbin/init`, `/bin/busybox`) with symlinks
 * resolved inside the root; undefined when none of them is an ELF file.
 *
 * @example
 * ```ts
 * import { rootArch } from '@execenv/qemu';
 * await rootArch('/var/cache/execenv/images/converted/v3/<digest>'); // 'arm64' for an arm64 rootfs
 * ```
 */
export async function rootArch(root: string): Promise<string | undefined> {
  for (const program of ROOT_PROGRAMS) {
    const path = await resolveInRoot(root, program);
    const arch = path && (await elfArch(posix.join(root, path)));
    if (arch) return arch;
  }
  return undefined;
}

/** `path` inside `root` with every symlink resolved as if `root` were `/`; undefined when a link loops or a component is missing. */
async function resolveInRoot(root: string, path: string): Promise<string | undefined> {
  const pending = path.split('/').filter(Boolean);
  const done: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      done.pop();
      continue;
    }
    const here = posix.join(root, ...done, part);
    const info = await lstat(here).catch(() => undefined);
    if (!info) return undefined;
    if (!info.isSymbolicLink()) {
      done.push(part);
      continue;
    }
    if (++links > MAX_LINKS) return undefined;
    const target = await readlink(here);
    if (target.startsWith('/')) done.length = 0;
    pending.unshift(...target.split('/').filter(Boolean));
  }
  return done.join('/');
}

/** Up to `length` bytes from the start of a file; undefined when it cannot be read. */
async function readHead(path: string, length: number): Promise<Buffer | undefined> {
  const file = await open(path, 'r').catch(() => undefined);
  if (!file) return undefined;
  try {
    const head = Buffer.alloc(length);
    const { bytesRead } = await file.read(head, 0, length, 0);
    return head.subarray(0, bytesRead);
  } finally {
    await file.close();
  }
}
