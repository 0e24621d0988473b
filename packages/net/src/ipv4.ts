import { InvalidSpecError } from '@execenv/core';
import IPCIDR from 'ip-cidr';

/**
 * Subnet is an IPv4 network: its CIDR, first and last address, and what this package puts in it.
 *
 * @example
 * ```ts
 * import { parseSubnet, type Subnet } from '@execenv/net';
 *
 * const subnet: Subnet = parseSubnet('192.168.50.0/28');
 * console.log(`${subnet.gateway}/${subnet.prefixLength} ${subnet.netmask} brd ${subnet.broadcast}`);
 * // 192.168.50.1/28 255.255.255.240 brd 192.168.50.15
 * ```
 */
export interface Subnet {
  /** Canonical CIDR, e.g. `10.213.4.0/24`. */
  readonly cidr: string;
  /** The prefix length, e.g. 24. */
  readonly prefixLength: number;
  /** The network address, e.g. `10.213.4.0`. */
  readonly network: string;
  /** The gateway: the first host address, given to the bridge. */
  readonly gateway: string;
  /** The broadcast address, e.g. `10.213.4.255`. */
  readonly broadcast: string;
  /** The netmask in dotted form, e.g. `255.255.255.0`. */
  readonly netmask: string;
}

/** The smallest subnet (largest prefix) that leaves room for a gateway and some hosts: a /29. */
export const MAX_PREFIX_LENGTH = 29;

/** Parses a dotted IPv4 address into an unsigned 32-bit number; undefined when it is not one. */
export function ipToNumber(ip: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return undefined;
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

/** Formats an unsigned 32-bit number as a dotted IPv4 address. */
export function numberToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function maskOf(prefixLength: number): number {
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
}

/**
 * Parses an IPv4 CIDR into a Subnet. A host address with a prefix
 * (`10.1.2.3/24`) is taken as its network. Throws InvalidSpecError naming
 * `field` when it is not an IPv4 CIDR or is smaller than a /29.
 *
 * @example
 * ```ts
 * import { parseSubnet } from '@execenv/net';
 *
 * const subnet = parseSubnet('10.99.0.7/24'); // a host address is taken as its network
 * subnet.cidr; // '10.99.0.0/24'
 * subnet.gateway; // '10.99.0.1'
 * parseSubnet('10.99.0.0/30', 'options.subnet'); // throws InvalidSpecError: smaller than a /29
 * ```
 */
export function parseSubnet(cidr: string, field = 'subnet'): Subnet {
  if (typeof cidr !== 'string' || !IPCIDR.isValidCIDR(cidr) || !cidr.includes('.'))
    throw new InvalidSpecError(field, `not an IPv4 CIDR: ${JSON.stringify(cidr)}`);
  const parsed = new IPCIDR(cidr);
  const prefixLength = Number(cidr.slice(cidr.indexOf('/') + 1));
  if (prefixLength > MAX_PREFIX_LENGTH)
    throw new InvalidSpecError(field, `${cidr} is too small: a network needs at least a /${MAX_PREFIX_LENGTH}`);
  const first = ipToNumber(String(parsed.start())) as number;
  const last = ipToNumber(String(parsed.end())) as number;
  return subnetOf(first, prefixLength, last);
}

function subnetOf(first: number, prefixLength: number, last: number): Subnet {
  return {
    cidr: `${numberToIp(first)}/${prefixLength}`,
    prefixLength,
    network: numberToIp(first),
    gateway: numberToIp(first + 1),
    broadcast: numberToIp(last),
    netmask: numberToIp(maskOf(prefixLength)),
  };
}

/** A numeric range [first, last] of addresses. */
export interface Range {
  first: number;
  last: number;
}

/** The address range of a CIDR (`a.b.c.d/n`) or of a single address; undefined for anything else (IPv6, `default`). */
export function rangeOf(cidrOrIp: string): Range | undefined {
  const [ip, len] = cidrOrIp.split('/');
  const n = ipToNumber(ip ?? '');
  if (n === undefined) return undefined;
  const prefixLength = len === undefined ? 32 : Number(len);
  if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > 32) return undefined;
  const first = (n & maskOf(prefixLength)) >>> 0;
  return { first, last: (first + 2 ** (32 - prefixLength) - 1) >>> 0 };
}

/** Reports whether two ranges share an address. */
export function overlaps(a: Range, b: Range): boolean {
  return a.first <= b.last && b.first <= a.last;
}

/**
 * The subnets of `prefixLength` inside `pool`, in order: `10.213.0.0/16`
 * split into /24s gives `10.213.0.0/24`, `10.213.1.0/24`, ...
 */
export function* subnetsOf(pool: string, prefixLength: number): Generator<Subnet> {
  const range = parseSubnet(pool, 'pool');
  if (prefixLength < range.prefixLength)
    throw new InvalidSpecError('prefixLength', `a /${prefixLength} does not fit in the pool ${pool}`);
  const size = 2 ** (32 - prefixLength);
  const first = ipToNumber(range.network) as number;
  const last = ipToNumber(range.broadcast) as number;
  for (let start = first; start + size - 1 <= last; start += size)
    yield subnetOf(start, prefixLength, start + size - 1);
}

/**
 * The host addresses of a subnet an environment may get, lowest first: every
 * address but the network, the gateway and the broadcast address.
 */
export function* hostAddresses(subnet: Subnet): Generator<string> {
  const first = ipToNumber(subnet.gateway) as number;
  const last = ipToNumber(subnet.broadcast) as number;
  for (let n = first + 1; n < last; n++) yield numberToIp(n);
}

/** Reports whether `ip` is an address an environment may get in `subnet`. */
export function isHostAddress(subnet: Subnet, ip: string): boolean {
  const n = ipToNumber(ip);
  if (n === undefined) return false;
  return n > (ipToNumber(subnet.gateway) as number) && n < (ipToNumber(subnet.broadcast) as number);
}

/**
 * A stable, locally administered unicast MAC address for an IPv4 address
 * (`0a:58:` and the four address bytes), so DHCP can hand out the address
 * the allocator chose.
 *
 * @example
 * ```ts
 * import { macFor } from '@execenv/net';
 *
 * macFor('10.213.0.2'); // '0a:58:0a:d5:00:02'
 * macFor(link.address) === link.mac; // true: the MAC DHCP hands the allocated address to
 * ```
 */
export function macFor(ip: string): string {
  const n = ipToNumber(ip);
  if (n === undefined) throw new InvalidSpecError('address', `not an IPv4 address: ${JSON.stringify(ip)}`);
  const bytes = [0x0a, 0x58, n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}
