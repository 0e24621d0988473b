import type { ProcessRunner } from '@execenv/core';
import type { ImageSettings } from '@execenv/images';
import type { QemuMachineType } from './qemu-command.js';

/** Options of a QemuDriver, for every environment it opens. */
export interface QemuDriverOptions {
  /**
   * Directory of the guest kernel: `vmlinux` (or `vmlinuz`) and
   * `modules/<release>/` with modules.dep, as tools/fixtures/qemu-kernel.sh
   * builds from a Debian linux-image package.
   * @default the EXECENV_QEMU_KERNEL environment variable
   */
  kernel?: string;
  /** The QEMU system emulator. @default `qemu-system-x86_64` from the host PATH */
  binary?: string;
  /** Machine type. @default 'microvm' */
  machine?: QemuMachineType;
  /** Accelerator: KVM where it works, else TCG; or one of them forced. @default 'auto' */
  accel?: 'auto' | 'kvm' | 'tcg';
  /** Guest memory when the spec sets none. @default 512 MiB */
  memoryMiB?: number;
  /** Static busybox the initramfs runs its init script with. @default '/bin/busybox' */
  busybox?: string;
  /** How long a guest may take from start to a ready agent. @default 120000 */
  bootTimeoutMs?: number;
  /** Size of the root disk made from a root filesystem. @default '2G' */
  diskSize?: string;
  /** Process runner for host commands. @default hostRunner() */
  runner?: ProcessRunner;
  /** Cache root (images, initramfs). @default defaultCacheDir() */
  cacheDir?: string;
  /** Image servers, keys, verification and cache, over the user's configuration and EXECENV_* variables. */
  images?: ImageSettings;
}
