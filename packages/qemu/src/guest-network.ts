import type { CheckedPortForward } from './qemu-options.js';

/**
 * The network device of a guest, as QEMU is told it.
 *
 * @example
 * ```ts
 * import { nicArgv, type QemuNic } from '@execenv/qemu';
 * const tap: QemuNic = { kind: 'tap', tap: 'execenv-tap0', mac: '52:54:00:ab:cd:ef' }; // made by @execenv/net
 * nicArgv(tap, true);
 * // ['-netdev', 'tap,id=net0,ifname=execenv-tap0,script=no,downscript=no',
 * //  '-device', 'virtio-net-device,netdev=net0,mac=52:54:00:ab:cd:ef']
 * ```
 */
export type QemuNic =
  | {
      /** A tap on an @execenv/net bridge, made before QEMU starts. */
      kind: 'tap';
      /** The tap's name on the host. */
      tap: string;
      mac: string;
    }
  | {
      /** QEMU's user-mode network (slirp): no host device, no root. */
      kind: 'user';
      mac: string;
      forwards: readonly CheckedPortForward[];
    };

/**
 * How the guest's init configures its interface, found by its MAC.
 *
 * @example
 * ```ts
 * import { type GuestNetwork, userNetwork } from '@execenv/qemu';
 * const onBridge: GuestNetwork = {
 *   mac: '52:54:00:ab:cd:ef', address: '10.77.0.2', prefixLength: 24, gateway: '10.77.0.1',
 *   resolvConf: 'nameserver 10.77.0.1\n',
 * };
 * const { guest } = userNetwork([]); // { mac: '52:54:00:12:34:56', address: '10.0.2.15', ... }
 * ```
 */
export interface GuestNetwork {
  mac: string;
  /** The guest's address. */
  address: string;
  prefixLength: number;
  /** The default route's gateway. */
  gateway: string;
  /** `/etc/resolv.conf` for the guest's root; the image's is kept when undefined. */
  resolvConf?: string;
}

/**
 * The addresses QEMU's user-mode network gives the first guest NIC: fixed by slirp's defaults.
 *
 * @example
 * ```ts
 * import { open } from '@execenv/core';
 * import { USER_NETWORK } from '@execenv/qemu';
 * const env = await open('qemu', { image: './rootfs.tar.zst', network: 'nat', driverOptions: { userNetwork: {} } });
 * // Inside the guest the host's loopback is the gateway, 10.0.2.2:
 * await env.exec(['wget', '-qO-', `http://${USER_NETWORK.gateway}:8000/`], { check: true });
 * await env.close();
 * ```
 */
export const USER_NETWORK = Object.freeze({
  mac: '52:54:00:12:34:56',
  address: '10.0.2.15',
  prefixLength: 24,
  gateway: '10.0.2.2',
  nameserver: '10.0.2.3',
});

/**
 * The user-mode network of a guest: its NIC for QEMU and the addressing its
 * init applies.
 * @example
 * const { nic, guest } = userNetwork([{ hostPort: 8080, guestPort: 80, protocol: 'tcp', hostAddress: '127.0.0.1' }]);
 * // guest.address === '10.0.2.15'; nic.forwards[0].hostPort === 8080
 */
export function userNetwork(forwards: readonly CheckedPortForward[]): { nic: QemuNic; guest: GuestNetwork } {
  const { mac, address, prefixLength, gateway, nameserver } = USER_NETWORK;
  return {
    nic: { kind: 'user', mac, forwards },
    guest: { mac, address, prefixLength, gateway, resolvConf: `nameserver ${nameserver}\n` },
  };
}

/**
 * The QEMU arguments of a NIC: its backend (`-netdev tap` on the given tap,
 * QEMU running no scripts, or `-netdev user` with its host forwards) and a
 * virtio-net device with the MAC, on MMIO (`microvm`) or PCI without an
 * option ROM (the kernel is booted directly, nothing boots from the network).
 *
 * @example
 * ```ts
 * import { nicArgv, userNetwork } from '@execenv/qemu';
 * const { nic } = userNetwork([{ hostPort: 8080, guestPort: 80, protocol: 'tcp', hostAddress: '127.0.0.1' }]);
 * nicArgv(nic, false); // q35 or pc: virtio-net on PCI
 * // ['-netdev', 'user,id=net0,hostfwd=tcp:127.0.0.1:8080-:80',
 * //  '-device', 'virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56,romfile=']
 * ```
 */
export function nicArgv(nic: QemuNic, mmio: boolean): string[] {
  const netdev =
    nic.kind === 'tap'
      ? `tap,id=net0,ifname=${nic.tap},script=no,downscript=no`
      : [
          'user,id=net0',
          ...nic.forwards.map((f) => `hostfwd=${f.protocol}:${f.hostAddress}:${f.hostPort}-:${f.guestPort}`),
        ].join(',');
  const device = mmio
    ? `virtio-net-device,netdev=net0,mac=${nic.mac}`
    : `virtio-net-pci,netdev=net0,mac=${nic.mac},romfile=`;
  return ['-netdev', netdev, '-device', device];
}
