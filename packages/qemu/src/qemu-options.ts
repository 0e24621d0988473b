import { InvalidSpecError, type ProcessRunner } from '@execenv/core';
import { checkImageSettings, type ImageSettings } from '@execenv/images';
import type { DriverNetworksOptions } from '@execenv/net';
import type { QemuArch, QemuMachineType } from './qemu-command.js';

/**
 * Options of a QemuDriver, for every environment it opens.
 *
 * @example
 * ```ts
 * import { QemuDriver, type QemuDriverOptions } from '@execenv/qemu';
 * const options: QemuDriverOptions = {
 *   kernel: '/srv/qemu-kernel', // built by tools/fixtures/qemu-kernel.sh
 *   machine: 'q35',
 *   memoryMiB: 1024,
 *   bootTimeoutMs: 300_000, // TCG guests boot slowly
 * };
 * const driver = new QemuDriver(options);
 * ```
 */
export interface QemuDriverOptions {
  /**
   * The guests' architecture. `arm64` boots qemu-system-aarch64's `virt`
   * machine; on a host of another architecture it always runs under TCG
   * (accel `kvm` is refused) and needs an arm64 kernel, busybox and image.
   * A spec's `arch`, when given, must be this one; an image whose /bin/sh is
   * built for another architecture is refused (InvalidSpecError).
   * @default the host's: 'arm64' on arm64 hosts, else 'amd64'
   */
  arch?: QemuArch;
  /**
   * Directory of the guest kernel: `vmlinux` (or `vmlinuz`; `Image` for
   * arm64) and `modules/<release>/` with modules.dep, as
   * tools/fixtures/qemu-kernel.sh (qemu-kernel-arm64.sh) builds from a
   * Debian linux-image package. A kernel built for another architecture
   * than `arch` makes the driver unavailable.
   * @default the EXECENV_QEMU_KERNEL environment variable; for guests of another architecture than the host's, EXECENV_QEMU_KERNEL_<ARCH> (EXECENV_QEMU_KERNEL_ARM64)
   */
  kernel?: string;
  /** The QEMU system emulator. @default from the host PATH, `qemu-system-x86_64` for amd64, `qemu-system-aarch64` for arm64 */
  binary?: string;
  /** Machine type: microvm, q35 or pc for amd64, virt for arm64 (others are an InvalidSpecError). @default 'microvm' for amd64, 'virt' for arm64 */
  machine?: QemuMachineType;
  /** Accelerator: KVM where it works, else TCG; or one of them forced. @default 'auto' */
  accel?: 'auto' | 'kvm' | 'tcg';
  /** Guest memory when the spec sets none. @default 512 MiB */
  memoryMiB?: number;
  /**
   * Static busybox the initramfs runs its init script with, built for
   * `arch` (tools/fixtures/busybox-static-arm64.sh fetches Debian's arm64 one).
   * @default '/bin/busybox' for guests of the host's architecture; required for others
   */
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
  /**
   * How @execenv/net makes the bridges guests join with `network: 'nat'` or
   * a named network (pools, firewall, dnsmasq's directory, forwarding). Its
   * state directory is the open's, and its runner this driver's.
   */
  networks?: DriverNetworksOptions;
}

/**
 * Per-environment options, given as `spec.driverOptions`.
 *
 * @example
 * ```ts
 * import { QemuDriver, type QemuEnvOptions } from '@execenv/qemu';
 * const driver = new QemuDriver({ kernel: '/srv/qemu-kernel' });
 * const env = await driver.open({
 *   image: './rootfs.tar.zst',
 *   network: 'nat',
 *   driverOptions: { userNetwork: { forwards: [{ hostPort: 2222, guestPort: 22 }] } } satisfies QemuEnvOptions,
 * });
 * ```
 */
export interface QemuEnvOptions {
  /**
   * With `network: 'nat'`: QEMU's user-mode network (slirp) instead of a tap
   * on a bridge. It needs no root and changes nothing on the host. The guest
   * is 10.0.2.15/24 with gateway 10.0.2.2 (the host's loopback) and DNS
   * 10.0.2.3; `forwards` open host ports to guest ports.
   */
  userNetwork?: UserNetworkOptions;
  /** Image settings for this environment, over the user's configuration and the driver's `images`. */
  images?: ImageSettings;
}

/**
 * QEMU user-mode networking of one guest.
 *
 * @example
 * ```ts
 * import { QemuDriver, type UserNetworkOptions } from '@execenv/qemu';
 * const userNetwork: UserNetworkOptions = {
 *   forwards: [{ hostPort: 8080, guestPort: 80 }, { hostPort: 5353, guestPort: 53, protocol: 'udp' }],
 * };
 * const driver = new QemuDriver({ kernel: '/srv/qemu-kernel' });
 * const env = await driver.open({ image: './rootfs.tar.zst', network: 'nat', driverOptions: { userNetwork } });
 * ```
 */
export interface UserNetworkOptions {
  /** Host ports QEMU listens on and forwards to the guest. @default none */
  forwards?: PortForward[];
}

/**
 * One host port forwarded into the guest.
 *
 * @example
 * ```ts
 * import { open } from '@execenv/core';
 * import type { PortForward } from '@execenv/qemu';
 * const web: PortForward = { hostPort: 8080, guestPort: 80, hostAddress: '0.0.0.0' }; // reachable from other hosts
 * const driverOptions = { userNetwork: { forwards: [web] } };
 * const env = await open('qemu', { image: './rootfs.tar.zst', network: 'nat', driverOptions });
 * ```
 */
export interface PortForward {
  /** Port QEMU listens on, 1–65535. */
  hostPort: number;
  /** Port in the guest it connects to, 1–65535. */
  guestPort: number;
  /** @default 'tcp' */
  protocol?: 'tcp' | 'udp';
  /** Host IPv4 address QEMU listens on. @default '127.0.0.1' (this host only) */
  hostAddress?: string;
}

/**
 * Every field of a PortForward given, after its checks.
 *
 * @example
 * ```ts
 * import { type CheckedPortForward, nicArgv, userNetwork } from '@execenv/qemu';
 * const ssh: CheckedPortForward = { hostPort: 2222, guestPort: 22, protocol: 'tcp', hostAddress: '127.0.0.1' };
 * const { nic } = userNetwork([ssh]);
 * nicArgv(nic, true); // ['-netdev', 'user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22', ...]
 * ```
 */
export type CheckedPortForward = Required<PortForward>;

/**
 * QemuEnvOptions after its checks.
 *
 * @example
 * ```ts
 * import type { EnvSpec } from '@execenv/core';
 * import { type CheckedEnvOptions, checkEnvOptions, userNetwork } from '@execenv/qemu';
 * const spec: EnvSpec = { image: './rootfs.tar.zst', network: 'nat', driverOptions: { userNetwork: {} } };
 * const checked: CheckedEnvOptions = checkEnvOptions(spec.driverOptions, spec.network ?? 'none');
 * const net = checked.userNetwork ? userNetwork(checked.userNetwork.forwards) : undefined;
 * ```
 */
export interface CheckedEnvOptions {
  userNetwork?: { forwards: CheckedPortForward[] };
  images?: ImageSettings;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/**
 * Checks `spec.driverOptions` of a qemu environment before anything is
 * created; `network` is the spec's network (`none` when not given).
 * @throws InvalidSpecError naming the field (`driverOptions.userNetwork.forwards[1].hostPort`).
 * @example
 * checkEnvOptions({ userNetwork: { forwards: [{ hostPort: 8080, guestPort: 80 }] } }, 'nat');
 * // { userNetwork: { forwards: [{ hostPort: 8080, guestPort: 80, protocol: 'tcp', hostAddress: '127.0.0.1' }] } }
 */
export function checkEnvOptions(raw: unknown, network: string): CheckedEnvOptions {
  const bad = (field: string, problem: string) =>
    new InvalidSpecError(`driverOptions${field}`, problem, { driver: 'qemu', op: 'open' });
  const o = (raw ?? {}) as Record<string, unknown>;
  for (const key of Object.keys(o))
    if (key !== 'userNetwork' && key !== 'images')
      throw bad(`.${key}`, 'unknown option; the qemu driver knows userNetwork and images');
  const images = checkImageSettings(o.images, 'driverOptions.images', { driver: 'qemu', op: 'open' });
  const withImages: CheckedEnvOptions = images === undefined ? {} : { images };
  if (o.userNetwork === undefined) return withImages;
  const user = o.userNetwork as Record<string, unknown>;
  if (typeof user !== 'object' || user === null || Array.isArray(user)) throw bad('.userNetwork', 'must be an object');
  if (network !== 'nat') throw bad('.userNetwork', `user-mode networking is used with network "nat", not "${network}"`);
  for (const key of Object.keys(user))
    if (key !== 'forwards') throw bad(`.userNetwork.${key}`, 'unknown option; userNetwork knows forwards');
  if (user.forwards !== undefined && !Array.isArray(user.forwards))
    throw bad('.userNetwork.forwards', 'must be an array');
  const forwards: CheckedPortForward[] = [];
  const seen = new Map<string, number>();
  for (const [i, f] of ((user.forwards ?? []) as PortForward[]).entries()) {
    const field = `.userNetwork.forwards[${i}]`;
    if (typeof f !== 'object' || f === null) throw bad(field, 'must be an object');
    for (const key of Object.keys(f))
      if (!['hostPort', 'guestPort', 'protocol', 'hostAddress'].includes(key))
        throw bad(`${field}.${key}`, 'unknown option; a forward knows hostPort, guestPort, protocol, hostAddress');
    for (const port of ['hostPort', 'guestPort'] as const)
      if (!Number.isInteger(f[port]) || f[port] < 1 || f[port] > 65535)
        throw bad(`${field}.${port}`, `must be a port number from 1 to 65535, got ${JSON.stringify(f[port])}`);
    const protocol = f.protocol ?? 'tcp';
    if (protocol !== 'tcp' && protocol !== 'udp')
      throw bad(`${field}.protocol`, `must be 'tcp' or 'udp', got ${JSON.stringify(f.protocol)}`);
    const hostAddress = f.hostAddress ?? '127.0.0.1';
    if (typeof hostAddress !== 'string' || !IPV4.test(hostAddress))
      throw bad(`${field}.hostAddress`, `must be an IPv4 address, got ${JSON.stringify(f.hostAddress)}`);
    // QEMU cannot listen twice on one host port; 0.0.0.0 takes the port on every address.
    for (const [key, j] of seen) {
      const [p, port, address] = key.split(' ');
      if (
        p === protocol &&
        Number(port) === f.hostPort &&
        (address === hostAddress || address === '0.0.0.0' || hostAddress === '0.0.0.0')
      )
        throw bad(`${field}.hostPort`, `${protocol} port ${f.hostPort} is already forwarded by forwards[${j}]`);
    }
    seen.set(`${protocol} ${f.hostPort} ${hostAddress}`, i);
    forwards.push({ hostPort: f.hostPort, guestPort: f.guestPort, protocol, hostAddress });
  }
  return { ...withImages, userNetwork: { forwards } };
}
