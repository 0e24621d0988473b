import { nicArgv, type QemuNic } from './guest-network.js';
import { AGENT_PORT_NAME } from './initramfs.js';
import type { QemuKernel } from './kernel.js';

/**
 * Machine types the driver boots: microvm, q35 and pc for amd64 guests, virt for arm64 guests.
 *
 * @example
 * ```ts
 * import { QemuDriver, type QemuMachineType } from '@execenv/qemu';
 * const machine: QemuMachineType = 'q35'; // virtio-pci; 'microvm' (virtio-mmio) boots fastest
 * const driver = new QemuDriver({ kernel: '/srv/qemu-kernel', machine });
 * ```
 */
export type QemuMachineType = 'microvm' | 'q35' | 'pc' | 'virt';

/**
 * Guest architectures the driver boots, by their Debian names.
 *
 * @example
 * ```ts
 * import { QemuDriver, type QemuArch } from '@execenv/qemu';
 * const arch: QemuArch = 'arm64'; // qemu-system-aarch64, machine virt; TCG on an amd64 host
 * const driver = new QemuDriver({ arch, kernel: '/srv/qemu-kernel-arm64', busybox: '/srv/busybox-static-arm64' });
 * ```
 */
export type QemuArch = 'amd64' | 'arm64';

/**
 * What the driver boots for each guest architecture: the QEMU system
 * emulator, the machine types that emulate it (the first is the default)
 * and the console device the kernel writes to.
 *
 * @example
 * ```ts
 * import { QEMU_ARCHES } from '@execenv/qemu';
 * QEMU_ARCHES.arm64; // { binary: 'qemu-system-aarch64', machines: ['virt'], console: 'ttyAMA0' }
 * QEMU_ARCHES.amd64.machines.includes('q35'); // true
 * ```
 */
export const QEMU_ARCHES: Readonly<
  Record<QemuArch, { binary: string; machines: readonly QemuMachineType[]; console: string }>
> = Object.freeze({
  amd64: { binary: 'qemu-system-x86_64', machines: ['microvm', 'q35', 'pc'], console: 'ttyS0' },
  arm64: { binary: 'qemu-system-aarch64', machines: ['virt'], console: 'ttyAMA0' },
});

/**
 * The guest architecture a machine type emulates.
 *
 * @example
 * ```ts
 * import { machineArch } from '@execenv/qemu';
 * machineArch('virt'); // 'arm64'
 * machineArch('microvm'); // 'amd64'
 * ```
 */
export function machineArch(machine: QemuMachineType): QemuArch {
  return machine === 'virt' ? 'arm64' : 'amd64';
}

/**
 * The QEMU block device name of the root disk (`-drive id=`), which QMP's block commands name.
 *
 * @example
 * ```ts
 * import { ROOT_DRIVE } from '@execenv/qemu';
 * await qmp.execute('blockdev-snapshot-internal-sync', { device: ROOT_DRIVE, name: 'configured' });
 * ```
 */
export const ROOT_DRIVE = 'root';

/**
 * Everything one guest's QEMU command line is made of.
 *
 * @example
 * ```ts
 * import { loadKernel, type QemuMachine, qemuArgv } from '@execenv/qemu';
 * const machine: QemuMachine = {
 *   binary: 'qemu-system-x86_64', machine: 'microvm', accel: 'kvm', cpus: 2, memoryMiB: 1024,
 *   kernel: await loadKernel('/srv/qemu-kernel'), initramfs: '/var/cache/execenv/qemu/initramfs.cpio.gz',
 *   disk: '/run/vm/disk.qcow2', agentSocket: '/run/vm/agent.sock', qmpSocket: '/run/vm/qmp.sock',
 *   consoleLog: '/run/vm/console.log',
 * };
 * const argv = qemuArgv(machine); // ['qemu-system-x86_64', '-machine', 'microvm,x-option-roms=off,rtc=on', ...]
 * ```
 */
export interface QemuMachine {
  /** qemu-system-<arch> binary: qemu-system-aarch64 for `virt`, qemu-system-x86_64 for the others. */
  binary: string;
  /** The machine type, which also says the guest's architecture (see machineArch). */
  machine: QemuMachineType;
  accel: 'kvm' | 'tcg';
  cpus: number;
  memoryMiB: number;
  kernel: QemuKernel;
  initramfs: string;
  /** The environment's qcow2 overlay. */
  disk: string;
  /** Unix socket QEMU listens on for the agent's serial port. */
  agentSocket: string;
  /** Unix socket QEMU listens on for QMP. */
  qmpSocket: string;
  /** File the guest's console (ttyS0, or the PL011 ttyAMA0 on virt) is written to. */
  consoleLog: string;
  /** Under TCG on x86 machines: the host's TSC rate, so the guest need not calibrate it against an emulated timer. */
  tscKhz?: number;
  /** Host directories exported to the guest over virtio-9p, each under its mount tag. */
  shares?: readonly QemuShare[];
  /**
   * 9p security model: `passthrough` keeps owners and modes on the host
   * (QEMU must be root), `none` writes files as QEMU's user. @default 'passthrough' as root, else 'none'
   */
  shareSecurity?: 'passthrough' | 'none';
  /** The guest's network device; none when absent. */
  nic?: QemuNic;
}

/** A host directory the guest mounts over 9p. */
export interface QemuShare {
  /** The mount tag the guest names it by (at most 31 bytes). */
  tag: string;
  /** The host directory. */
  path: string;
  readOnly: boolean;
  /**
   * This share's 9p security model over the machine's `shareSecurity`:
   * `mapped-file` keeps what the guest creates (devices, symlinks, owners)
   * as plain files and metadata on the host.
   */
  security?: 'passthrough' | 'none' | 'mapped-file';
}

/**
 * The QEMU argv of a guest: direct kernel boot, no default devices, the root
 * disk and the agent's serial port on virtio (MMIO on microvm, PCI
 * otherwise), the console to a file, QMP on a socket, a virtio-net device
 * only when `nic` is given, and exit instead of a reboot. An arm64 guest
 * (machine `virt`) gets the newest interrupt controller and CPU QEMU
 * emulates (`gic-version=max`, `-cpu max` without pointer authentication,
 * which TCG emulates slowly; the host's CPU under KVM) and
 * its console on the PL011 UART, ttyAMA0.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { type QemuMachine, qemuArgv, userNetwork } from '@execenv/qemu';
 * declare const machine: QemuMachine; // see QemuMachine
 * const { nic } = userNetwork([{ hostPort: 2222, guestPort: 22, protocol: 'tcp', hostAddress: '127.0.0.1' }]);
 * const argv = qemuArgv({ ...machine, nic, shares: [{ tag: 'execenv0', path: '/srv/src', readOnly: true }] });
 * const qemu = hostRunner().spawn(argv, { stdin: 'ignore', stdout: 'ignore' });
 * ```
 */
export function qemuArgv(m: QemuMachine): string[] {
  const mmio = m.machine === 'microvm';
  const arch = machineArch(m.machine);
  const virtio = (device: string) => `virtio-${device}-${mmio ? 'device' : 'pci'}`;
  const machine = machineOption(m.machine);
  const append = [`console=${QEMU_ARCHES[arch].console}`, 'panic=-1', 'quiet'];
  if (arch === 'amd64' && m.accel === 'tcg' && m.tscKhz) append.push(`tsc_early_khz=${m.tscKhz}`, 'tsc=reliable');
  // TCG's default arm64 CPU is a 32-bit cortex-a15: a 64-bit kernel needs one named. Every feature
  // but pointer authentication, whose emulated ciphers make a boot three times as long (17 s, not 5 s).
  const cpu = m.accel === 'kvm' ? ['-cpu', 'host'] : arch === 'arm64' ? ['-cpu', 'max,pauth=off'] : [];
  return [
    m.binary,
    '-machine',
    machine,
    '-accel',
    m.accel,
    ...cpu,
    '-smp',
    String(m.cpus),
    '-m',
    `${m.memoryMiB}M`,
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-no-reboot',
    '-kernel',
    m.kernel.image,
    '-initrd',
    m.initramfs,
    '-append',
    append.join(' '),
    '-serial',
    `file:${option(m.consoleLog)}`,
    '-drive',
    `id=${ROOT_DRIVE},file=${option(m.disk)},format=qcow2,if=none,cache=unsafe`,
    '-device',
    `${virtio('blk')},drive=${ROOT_DRIVE}`,
    '-device',
    virtio('serial'),
    '-chardev',
    `socket,id=agent,path=${option(m.agentSocket)},server=on,wait=off`,
    '-device',
    `virtserialport,chardev=agent,name=${AGENT_PORT_NAME}`,
    '-qmp',
    `unix:${option(m.qmpSocket)},server=on,wait=off`,
    ...(m.shares ?? []).flatMap((share, i) => [
      '-fsdev',
      `local,id=share${i},path=${option(share.path)},security_model=${share.security ?? m.shareSecurity ?? (process.getuid?.() === 0 ? 'passthrough' : 'none')}${share.readOnly ? ',readonly=on' : ''}`,
      '-device',
      `${virtio('9p')},fsdev=share${i},mount_tag=${share.tag}`,
    ]),
    ...(m.nic ? nicArgv(m.nic, mmio) : []),
  ];
}

/**
 * The `-machine` value of a machine type: microvm without option ROMs and
 * with its RTC, virt with the newest GIC the accelerator offers.
 *
 * @example
 * ```ts
 * import { machineOption } from '@execenv/qemu';
 * machineOption('microvm'); // 'microvm,x-option-roms=off,rtc=on'
 * machineOption('virt'); // 'virt,gic-version=max'
 * machineOption('q35'); // 'q35'
 * ```
 */
export function machineOption(machine: QemuMachineType): string {
  if (machine === 'microvm') return 'microvm,x-option-roms=off,rtc=on';
  if (machine === 'virt') return 'virt,gic-version=max';
  return machine;
}

/** A value inside a QEMU option list, where a comma is written twice. */
function option(value: string): string {
  return value.replaceAll(',', ',,');
}
