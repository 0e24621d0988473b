import type { ProcessRunner } from '@execenv/core';
import type { FirewallChoice } from './firewall.js';

/**
 * Options of a Networks manager.
 *
 * @example
 * ```ts
 * import { createRunner } from '@execenv/core';
 * import { Networks, type NetworksOptions } from '@execenv/net';
 *
 * const opts: NetworksOptions = {
 *   runner: createRunner({ sudo: true }), // not root: every ip, nft and dnsmasq through sudo -n
 *   pools: ['10.77.0.0/16'],
 *   enableForwarding: true,
 * };
 * const networks = new Networks(opts);
 * ```
 */
export interface NetworksOptions {
  /** Where networks and leases are recorded. @default defaultStateDir() */
  stateDir?: string;
  /** Runs every host command (ip, nft, dnsmasq, nsenter). @default hostRunner() */
  runner?: ProcessRunner;
  /** Directory of dnsmasq's files, readable by nobody. @default DEFAULT_RUN_DIR */
  runDir?: string;
  /** Private ranges to take subnets from. @default DEFAULT_POOLS */
  pools?: readonly string[];
  /** The IPv6 prefix /64s are taken from for networks with `ipv6`. @default DEFAULT_IPV6_POOL */
  ipv6Pool?: string;
  /** Prefix length of a subnet taken from the pools. @default 24 */
  prefixLength?: number;
  /**
   * Turn on `net.ipv4.ip_forward` when a NAT network needs it and it is off.
   * It is a host-wide setting and is left on. Without this, such a network
   * fails with DRIVER_UNAVAILABLE saying how to turn it on. @default false
   */
  enableForwarding?: boolean;
  /**
   * Where NAT and isolation rules go: the project's nftables table, the
   * built-in iptables chains (tagged with comments), or nftables when `nft`
   * is installed and iptables otherwise. @default 'auto'
   */
  firewall?: FirewallChoice;
  /** Milliseconds to wait for the inter-process lock. @default 10 minutes */
  lockTimeoutMs?: number;
}

/**
 * How a network is made when it does not exist yet; ignored (but checked) when it does.
 *
 * @example
 * ```ts
 * import { type NetworkOptions, Networks } from '@execenv/net';
 *
 * // A network that reaches only the host, on a subnet of its own choosing.
 * const options: NetworkOptions = { subnet: '10.99.0.0/24', nat: false, dns: true };
 * const alloc = await new Networks().allocate({ network: 'builds', holder: 'env-1', options });
 * ```
 */
export interface NetworkOptions {
  /** The network's IPv4 subnet, e.g. `10.99.0.0/24`. @default a free subnet from the pools */
  subnet?: string;
  /** Masquerade traffic to other hosts. @default true */
  nat?: boolean;
  /** Serve DHCP and DNS on the bridge with dnsmasq. @default true */
  dns?: boolean;
  /**
   * Give the network an IPv6 /64 from `ipv6Pool` too (nftables only): every
   * holder gets `<prefix>::<its IPv4 host number>`, the bridge `<prefix>::1`.
   * @default false
   */
  ipv6?: boolean;
}

/**
 * NetworkInfo describes one network as recorded.
 *
 * @example
 * ```ts
 * import { type NetworkInfo, Networks } from '@execenv/net';
 *
 * const recorded: NetworkInfo[] = await new Networks().list();
 * for (const n of recorded)
 *   console.log(`${n.name} ${n.subnet} ${n.bridge ?? '(reserved)'} held by ${n.holders.join(', ')}`);
 * ```
 */
export interface NetworkInfo {
  /** Its name. */
  readonly name: string;
  /** `bridge`, or `reservation` for a subnet a backend bridges itself. */
  readonly kind: 'bridge' | 'reservation';
  /** Its subnet's CIDR. */
  readonly subnet: string;
  /** The gateway (the bridge's address). */
  readonly gateway: string;
  /** The subnet's prefix length. */
  readonly prefixLength: number;
  /** The subnet's netmask. */
  readonly netmask: string;
  /** The bridge interface, for kind `bridge`. */
  readonly bridge: string | undefined;
  /** Its IPv6 /64, when it has one. */
  readonly subnet6: string | undefined;
  /** Its IPv6 gateway, when it has one. */
  readonly gateway6: string | undefined;
  /** Whether traffic to other hosts is masqueraded. */
  readonly nat: boolean;
  /** Whether dnsmasq serves DHCP and DNS. */
  readonly dns: boolean;
  /** The ids of its holders. */
  readonly holders: readonly string[];
}

/**
 * What allocate asks for.
 *
 * @example
 * ```ts
 * import { type AllocateRequest, Networks } from '@execenv/net';
 *
 * const req: AllocateRequest = { network: 'nat', holder: env.id, hostname: 'db' };
 * const alloc = await new Networks().allocate(req); // the same address again for the same holder
 * ```
 */
export interface AllocateRequest {
  /** The network's name: `nat` or any name from `EnvSpec.network`. */
  network: string;
  /** Who holds the address: the environment id. One address per holder and network. */
  holder: string;
  /** The name DNS answers for the address. @default holder */
  hostname?: string;
  /** How to make the network if it does not exist. */
  options?: NetworkOptions;
}

/**
 * Allocation is one holder's address on a network and what to configure with it.
 *
 * @example
 * ```ts
 * import { type Allocation, Networks } from '@execenv/net';
 *
 * // A backend that wires the address itself: reserve it, then configure the interface.
 * const alloc: Allocation = await new Networks().allocate({ network: 'nat', holder: env.id });
 * console.log(`${alloc.address}/${alloc.prefixLength} via ${alloc.gateway}, mac ${alloc.mac}`);
 * ```
 */
export interface Allocation {
  /** The network. */
  readonly network: NetworkInfo;
  /** The holder. */
  readonly holder: string;
  /** The address (no prefix). */
  readonly address: string;
  /** The subnet's prefix length. */
  readonly prefixLength: number;
  /** The subnet's netmask. */
  readonly netmask: string;
  /** The default gateway. */
  readonly gateway: string;
  /** The IPv6 address (prefix length 64), when the network has IPv6. */
  readonly address6: string | undefined;
  /** The IPv6 default gateway, when the network has IPv6. */
  readonly gateway6: string | undefined;
  /** The MAC address the interface should have (DHCP hands `address` to it). */
  readonly mac: string;
  /** The name DNS answers for the address, if any. */
  readonly hostname: string | undefined;
  /** Name servers for the environment's resolv.conf (the gateway when the network has DNS). */
  readonly nameservers: readonly string[];
  /** Search domains for the environment's resolv.conf. */
  readonly searchDomains: readonly string[];
}

/**
 * A network namespace: the path of its nsfs file, or a process in it.
 *
 * @example
 * ```ts
 * import type { NetnsRef } from '@execenv/net';
 *
 * const byPid: NetnsRef = { pid: init.pid! }; // a process inside the namespace
 * const byPath: NetnsRef = { path: '/run/netns/demo' }; // made with `ip netns add demo`
 * await networks.attachNamespace({ network: 'nat', holder: 'env-1', netns: byPid });
 * ```
 */
export type NetnsRef = { path: string } | { pid: number };

/**
 * What attachNamespace asks for.
 *
 * @example
 * ```ts
 * import { type AttachNamespaceRequest, Networks } from '@execenv/net';
 *
 * const req: AttachNamespaceRequest = {
 *   network: 'nat',
 *   holder: env.id,
 *   netns: { path: '/run/netns/demo' },
 *   ifname: 'eth1', // the default is eth0
 * };
 * const link = await new Networks().attachNamespace(req);
 * ```
 */
export interface AttachNamespaceRequest extends AllocateRequest {
  /** The namespace to attach. */
  netns: NetnsRef;
  /** The interface's name inside the namespace. @default 'eth0' */
  ifname?: string;
}

/**
 * NamespaceLink is an address wired into a network namespace through a veth pair.
 *
 * @example
 * ```ts
 * import type { NamespaceLink } from '@execenv/net';
 *
 * const link: NamespaceLink = await networks.attachNamespace({ network: 'nat', holder: 'env-1', netns: { pid } });
 * console.log(`${link.ifname}: ${link.address}/${link.prefixLength}`); // eth0: 10.213.0.2/24
 * console.log(`host end ${link.hostInterface} on ${link.network.bridge}`);
 * ```
 */
export interface NamespaceLink extends Allocation {
  /** The host end of the veth pair, on the bridge. */
  readonly hostInterface: string;
  /** The interface inside the namespace. */
  readonly ifname: string;
}

/**
 * What attachTap asks for.
 *
 * @example
 * ```ts
 * import { type AttachTapRequest, Networks } from '@execenv/net';
 *
 * // The unprivileged user that runs QEMU may open the tap.
 * const req: AttachTapRequest = { network: 'nat', holder: 'vm-1', user: 'qemu' };
 * const link = await new Networks().attachTap(req);
 * ```
 */
export interface AttachTapRequest extends AllocateRequest {
  /** A user (name or uid) allowed to open the tap without privileges. @default root only */
  user?: string | number;
}

/**
 * TapLink is an address for a VM and the tap device on the bridge it reaches it through.
 *
 * @example
 * ```ts
 * import type { TapLink } from '@execenv/net';
 *
 * const link: TapLink = await networks.attachTap({ network: 'nat', holder: 'vm-1' });
 * qemuArgs.push('-netdev', `tap,id=n0,ifname=${link.tap},script=no,downscript=no`);
 * qemuArgs.push('-device', `virtio-net-pci,netdev=n0,mac=${link.mac}`);
 * ```
 */
export interface TapLink extends Allocation {
  /** The tap device (QEMU: `-netdev tap,ifname=<tap>,script=no,downscript=no`). */
  readonly tap: string;
}

/**
 * What reserveSubnet asks for.
 *
 * @example
 * ```ts
 * import { Networks, type ReserveSubnetRequest } from '@execenv/net';
 *
 * // LXD's bridge for this project; without `subnet`, a free one from the pools.
 * const req: ReserveSubnetRequest = { name: 'execenvbr0', holder: env.id };
 * const reservation = await new Networks().reserveSubnet(req);
 * ```
 */
export interface ReserveSubnetRequest {
  /** The reservation's name, shared by every holder that gives it (e.g. the backend's bridge name). */
  name: string;
  /** Who holds it. */
  holder: string;
  /** The subnet wanted. @default a free subnet from the pools */
  subnet?: string;
}

/**
 * SubnetReservation is a subnet set aside for a backend that makes its own bridge (LXD).
 *
 * @example
 * ```ts
 * import { execFileSync } from 'node:child_process';
 * import type { SubnetReservation } from '@execenv/net';
 *
 * const r: SubnetReservation = await networks.reserveSubnet({ name: 'execenvbr0', holder: env.id });
 * const address = `ipv4.address=${r.gateway}/${r.prefixLength}`;
 * execFileSync('lxc', ['network', 'create', r.name, address, 'ipv4.nat=true', 'ipv6.address=none']);
 * ```
 */
export interface SubnetReservation {
  /** The reservation's name. */
  readonly name: string;
  /** The holder. */
  readonly holder: string;
  /** The subnet's CIDR. */
  readonly subnet: string;
  /** The address to give the backend's bridge. */
  readonly gateway: string;
  /** The subnet's prefix length. */
  readonly prefixLength: number;
  /** The subnet's netmask. */
  readonly netmask: string;
}
