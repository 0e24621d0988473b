import { readFile } from 'node:fs/promises';
import { DriverUnavailableError } from '@execenv/core';
import { Networks } from '@execenv/net';
import { LxdApiError, type LxdClient } from './lxd-client.js';

/**
 * The LXD-managed bridge `network: 'nat'` attaches instances to.
 *
 * @example
 * ```ts
 * import { LxdClient, NAT_NETWORK } from '@execenv/lxd';
 * const client = new LxdClient({ socketPath: '/var/lib/lxd/unix.socket' });
 * const bridge = await client.get<{ config: Record<string, string> }>(`/1.0/networks/${NAT_NETWORK}`);
 * console.log(bridge.config['ipv4.address']); // e.g. 10.123.0.1/24
 * ```
 */
export const NAT_NETWORK = 'execenvbr0';

/** An IPv4 network as base address and prefix length. */
export interface Ipv4Net {
  base: number;
  prefix: number;
}

function toNumber(ip: string): number {
  return ip.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
}

function toText(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

/** Parses `a.b.c.d/n`. */
export function parseCidr(cidr: string): Ipv4Net {
  const [ip, len] = cidr.split('/');
  const prefix = Number(len ?? 32);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return { base: (toNumber(ip!) & mask) >>> 0, prefix };
}

function overlaps(a: Ipv4Net, b: Ipv4Net): boolean {
  const size = (n: Ipv4Net) => 2 ** (32 - n.prefix);
  return a.base < b.base + size(b) && b.base < a.base + size(a);
}

/** The IPv4 routes of the host, read from /proc/net/route. */
export async function hostRoutes(routeFile = '/proc/net/route'): Promise<Ipv4Net[]> {
  const text = await readFile(routeFile, 'utf8').catch(() => '');
  const nets: Ipv4Net[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const le = (hex: string) => Buffer.from(hex, 'hex').readUInt32LE(0);
    const dest = le(f[1]!);
    const mask = le(f[7]!);
    if (mask === 0) continue;
    let prefix = 0;
    for (let m = mask; m !== 0; m >>>= 1) prefix += m & 1;
    nets.push({ base: dest >>> 0, prefix });
  }
  return nets;
}

/**
 * The first /24 in 10.123.0.0/16..10.200.0.0/16 that overlaps no host route
 * and no network in `taken`; the bridge's address is its `.1`.
 *
 * @example
 * ```ts
 * import { freeSubnet } from '@execenv/lxd';
 * // Networks are { base, prefix }, the base address as a 32-bit number: 10.123.0.0/24 is routed already.
 * freeSubnet([{ base: 0x0a7b0000, prefix: 24 }]); // '10.123.1.1/24'
 * ```
 */
export function freeSubnet(routes: readonly Ipv4Net[], taken: readonly Ipv4Net[] = []): string {
  for (let second = 123; second <= 200; second++)
    for (let third = 0; third < 256; third++) {
      const net = { base: toNumber(`10.${second}.${third}.0`), prefix: 24 };
      if (![...routes, ...taken].some((r) => overlaps(r, net))) return `${toText(net.base + 1)}/24`;
    }
  throw new DriverUnavailableError('lxd', 'no free /24 under 10.123.0.0 - 10.200.255.0 for the execenv bridge');
}

/**
 * How the NAT bridge's subnet is chosen when the bridge has to be made.
 */
export interface NatSubnetChoice {
  /**
   * The daemon runs on this host: the subnet is reserved through @execenv/net
   * (its state in `stateDir`, under its lock) for as long as the bridge is being
   * made, so an @execenv/net network opened at the same moment cannot take it.
   * Absent for a remote daemon, whose host's routes are not this one's.
   */
  local?: { stateDir: string; holder: string };
}

/**
 * Makes sure the NAT bridge exists: an LXD-managed bridge with an explicit
 * free subnet (LXD's own "auto" search fails on hosts like this one), IPv4
 * NAT and no IPv6. Shared by every environment; returns its name.
 */
export async function ensureNatNetwork(client: LxdClient, choice: NatSubnetChoice = {}): Promise<string> {
  try {
    await client.get(`/1.0/networks/${NAT_NETWORK}`);
    return NAT_NETWORK;
  } catch (err) {
    if (!(err instanceof LxdApiError && err.status === 404)) throw err;
  }
  if (!choice.local) {
    const existing = await client.get<{ config?: Record<string, string> }[]>('/1.0/networks', { recursion: '1' });
    const taken = existing
      .map((n) => n.config?.['ipv4.address'])
      .filter((a): a is string => !!a && a.includes('/'))
      .map(parseCidr);
    await createNatNetwork(client, freeSubnet(await hostRoutes(), taken));
    return NAT_NETWORK;
  }
  const { stateDir, holder } = choice.local;
  const networks = new Networks({ stateDir });
  const reservation = await networks.reserveSubnet({ name: NAT_NETWORK, holder });
  try {
    // Once LXD has made the bridge, its address and route keep every later choice off the subnet.
    await createNatNetwork(client, `${reservation.gateway}/${reservation.prefixLength}`);
  } finally {
    await networks.release(holder, NAT_NETWORK);
  }
  return NAT_NETWORK;
}

async function createNatNetwork(client: LxdClient, address: string): Promise<void> {
  try {
    await client.call({
      method: 'POST',
      path: '/1.0/networks',
      body: {
        name: NAT_NETWORK,
        type: 'bridge',
        description: 'execenv: NAT bridge of environments opened with network "nat"',
        config: { 'ipv4.address': address, 'ipv4.nat': 'true', 'ipv6.address': 'none', 'user.execenv.network': 'nat' },
      },
    });
  } catch (err) {
    // Created meanwhile by another environment opening at the same time.
    if (!(err instanceof LxdApiError && (err.status === 409 || /already exists/i.test(err.message)))) throw err;
  }
}
