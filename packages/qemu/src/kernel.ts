import { open, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DriverUnavailableError } from '@execenv/core';
import { kernelImageArch } from './binary-arch.js';

const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);

/**
 * A guest kernel for direct boot, and the modules its initramfs loads.
 *
 * @example
 * ```ts
 * import { loadKernel, type QemuKernel } from '@execenv/qemu';
 * const kernel: QemuKernel = await loadKernel('/srv/qemu-kernel');
 * console.log(kernel.release, kernel.elf ? 'vmlinux (PVH boot)' : 'bzImage', kernel.modulesDir);
 * ```
 */
export interface QemuKernel {
  /** The kernel image: an uncompressed vmlinux (microvm boots it through PVH), a bzImage, or an arm64 Image. */
  image: string;
  /** Whether `image` is an uncompressed ELF vmlinux. */
  elf: boolean;
  /** The kernel's module tree, `lib/modules/<release>`, with modules.dep. */
  modulesDir: string;
  /** The kernel release, e.g. `6.1.0-56-amd64`. */
  release: string;
  /** The architecture the image says it is for (`amd64`, `arm64`); absent when it does not say (a compressed image). */
  arch?: string;
}

/**
 * Modules the initramfs loads, by name, in no particular order: the virtio
 * transports, the root disk, the agent's serial port and the root filesystem.
 * Those built into the kernel are skipped; crc32c is what ext4's checksums ask for.
 *
 * @example
 * ```ts
 * import { readFile } from 'node:fs/promises';
 * import { join } from 'node:path';
 * import { BOOT_MODULES, loadKernel, moduleLoadOrder } from '@execenv/qemu';
 * const kernel = await loadKernel('/srv/qemu-kernel');
 * const modules = moduleLoadOrder(await readFile(join(kernel.modulesDir, 'modules.dep'), 'utf8'), BOOT_MODULES);
 * ```
 */
export const BOOT_MODULES = [
  'virtio_mmio',
  'virtio_pci',
  'virtio_blk',
  'virtio_console',
  'crc32c_generic',
  'ext4',
  '9pnet_virtio',
  '9p',
] as const;

/**
 * Modules the initramfs carries for a guest with a network device, loaded
 * (after BOOT_MODULES, with their dependencies net_failover and failover)
 * only when the guest has one.
 *
 * @example
 * ```ts
 * import { BOOT_MODULES, moduleLoadOrder, NET_MODULES } from '@execenv/qemu';
 * declare const modulesDep: string; // the kernel's modules.dep
 * const boot = moduleLoadOrder(modulesDep, BOOT_MODULES);
 * const net = moduleLoadOrder(modulesDep, NET_MODULES).filter((m) => !boot.includes(m)); // virtio_net, failover, ...
 * ```
 */
export const NET_MODULES = ['virtio_net'] as const;

/**
 * Reads a kernel directory as tools/fixtures/qemu-kernel.sh (amd64) and
 * qemu-kernel-arm64.sh lay it out: `vmlinux`, `Image` or `vmlinuz` (the
 * first found) and `modules/<release>/` holding modules.dep.
 * @throws DriverUnavailableError naming what is missing and how to get it.
 *
 * @example
 * ```ts
 * import { hasCode } from '@execenv/core';
 * import { loadKernel } from '@execenv/qemu';
 * const kernel = await loadKernel(process.env.EXECENV_QEMU_KERNEL ?? '/srv/qemu-kernel').catch((err: unknown) => {
 *   if (hasCode(err, 'DRIVER_UNAVAILABLE')) console.error(err.message); // no vmlinux, no modules.dep, ...
 *   throw err;
 * });
 * ```
 */
export async function loadKernel(dir: string): Promise<QemuKernel> {
  const missing = (what: string) =>
    new DriverUnavailableError(
      'qemu',
      `the kernel directory ${dir} has no ${what}; build one with tools/fixtures/qemu-kernel.sh (a Debian linux-image package, unpacked; qemu-kernel-arm64.sh for arm64) or pass the qemu driver's kernel option`,
    );
  let image: string | undefined;
  for (const name of ['vmlinux', 'Image', 'vmlinuz']) {
    const candidate = join(dir, name);
    if (await isFile(candidate)) {
      image = candidate;
      break;
    }
  }
  if (!image) throw missing('vmlinux, Image or vmlinuz');
  const releases = await readdir(join(dir, 'modules')).catch(() => [] as string[]);
  if (releases.length !== 1) throw missing('modules/<release> directory (exactly one)');
  const release = releases[0]!;
  const modulesDir = join(dir, 'modules', release);
  if (!(await isFile(join(modulesDir, 'modules.dep')))) throw missing(`modules/${release}/modules.dep (run depmod)`);
  const arch = await kernelImageArch(image);
  return { image, elf: await isElf(image), modulesDir, release, ...(arch ? { arch } : {}) };
}

/**
 * The module files to load for `wanted`, dependencies first, as paths
 * relative to the module tree. Names missing from modules.dep are built in
 * (or absent) and skipped; compressed modules are refused, since the
 * initramfs's insmod loads plain ones only.
 *
 * @example
 * ```ts
 * import { moduleLoadOrder } from '@execenv/qemu';
 * const modulesDep = [
 *   'kernel/fs/ext4/ext4.ko: kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko',
 *   'kernel/fs/mbcache.ko:',
 *   'kernel/fs/jbd2/jbd2.ko:',
 * ].join('\n');
 * moduleLoadOrder(modulesDep, ['ext4', 'virtio_blk']); // virtio_blk is built in, so skipped:
 * // ['kernel/fs/mbcache.ko', 'kernel/fs/jbd2/jbd2.ko', 'kernel/fs/ext4/ext4.ko']
 * ```
 */
export function moduleLoadOrder(modulesDep: string, wanted: readonly string[]): string[] {
  const deps = new Map<string, string[]>();
  const byName = new Map<string, string>();
  for (const line of modulesDep.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const path = line.slice(0, colon).trim();
    deps.set(
      path,
      line
        .slice(colon + 1)
        .trim()
        .split(/\s+/)
        .filter(Boolean),
    );
    byName.set(moduleName(path), path);
  }
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (path: string) => {
    if (seen.has(path)) return;
    seen.add(path);
    for (const dep of deps.get(path) ?? []) visit(dep);
    if (!path.endsWith('.ko'))
      throw new DriverUnavailableError(
        'qemu',
        `module ${path} is compressed; the initramfs loads only plain .ko files`,
      );
    order.push(path);
  };
  for (const name of wanted) {
    const path = byName.get(name.replaceAll('-', '_'));
    if (path) visit(path);
  }
  return order;
}

/** A module's name as modprobe knows it, from its path. */
export function moduleName(path: string): string {
  const file = path.slice(path.lastIndexOf('/') + 1);
  return file.replace(/\.ko(\.(xz|zst|gz))?$/, '').replaceAll('-', '_');
}

async function isFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isFile() ?? false;
}

/** Whether a file starts with the ELF magic. */
export async function isElf(path: string): Promise<boolean> {
  const file = await open(path, 'r');
  try {
    const head = Buffer.alloc(4);
    await file.read(head, 0, 4, 0);
    return head.equals(ELF_MAGIC);
  } finally {
    await file.close();
  }
}

/** Reads modules.dep of a kernel. */
export function readModulesDep(kernel: QemuKernel): Promise<string> {
  return readFile(join(kernel.modulesDir, 'modules.dep'), 'utf8');
}
