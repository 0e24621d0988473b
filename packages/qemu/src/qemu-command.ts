import { nicArgv, type QemuNic } from './guest-network.js';
import { AGENT_PORT_NAME } from './initramfs.js';
import type { QemuKernel } from './kernel.js';

/**
 * Machine types the driver boots.
 *
 * @example
 * ```ts
 * import { QemuDriver, type QemuMachineType } from '@execenv/qemu';
 * const machine: QemuMachineType = 'q35'; // virtio-pci; 'microvm' (virtio-mmio) boots fastest
 * const driver = new QemuDriver({ kernel: '/srv/qemu-kernel', machine });
 * ```
 */
export type QemuMachineType = 'microvm' | 'q35' | 'pc';

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
  /** qemu-system-<arch> binary. */
  binary: string;
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
  /** File the guest's console (ttyS0) is written to. */
  consoleLog: string;
  /** Under TCG: the host's TSC rate, so the guest need not calibrate it against an emulated timer. */
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
 * only when `nic` is given, and exit instead of a reboot.
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
  const virtio = (device: string) => `virtio-${device}-${mmio ? 'device' : 'pci'}`;
  const machine = machineOption(m.machine);
  const append = ['console=ttyS0', 'panic=-1', 'quiet'];
  if (m.accel === 'tcg' && m.tscKhz) append.push(`tsc_early_khz=${m.tscKhz}`, 'tsc=reliable');
  return [
    m.binary,
    '-machine',
    machine,
    '-accel',
    m.accel,
    ...(m.accel === 'kvm' ? ['-cpu', 'host'] : []),
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
 * The `-machine` value of a machine type: microvm without option ROMs and with its RTC.
 *
 * @example
 * ```ts
 * import { machineOption } from '@execenv/qemu';
 * machineOption('microvm'); // 'microvm,x-option-roms=off,rtc=on'
 * machineOption('q35'); // 'q35'
 * ```
 */
export function machineOption(machine: QemuMachineType): string {
  return machine === 'microvm' ? 'microvm,x-option-roms=off,rtc=on' : machine;
}

/** A value inside a QEMU option list, where a comma is written twice. */
function option(value: string): string {
  return value.replaceAll(',', ',,');
}
