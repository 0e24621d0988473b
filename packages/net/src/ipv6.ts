import { InvalidSpecError } from '@execenv/core';
import IPCIDR from 'ip-cidr';

/** Subnet6 is an IPv6 /64 of a network: its CIDR and its gateway (`::1`). */
export interface Subnet6 {
  /** Canonical CIDR, e.g. `fd0e:78ec:0:3::/64`. */
  readonly cidr: string;
  /** The gateway, given to the bridge, e.g. `fd0e:78ec:0:3::1`. */
  readonly gateway: string;
}

/** An IPv6 range [first, last]. */
export interface Range6 {
  first: bigint;
  last: bigint;
}

const BITS = 128n;

/** Parses an IPv6 address (any form) into a 128-bit number; undefined when it is not one. */
export function ipv6ToBigInt(ip: string): bigint | undefined {
  if (!ip.includes(':') || !IPCIDR.isValidAddress(ip)) return undefined;
  const full = String(new IPCIDR(`${ip}/128`).start());
  return BigInt(`0x${full.replaceAll(':', '')}`);
}

/** Formats a 128-bit number as a compressed IPv6 address. */
export function formatIpv6(n: bigint): string {
  const groups = Array.from({ length: 8 }, (_, i) => Number((n >> BigInt(112 - 16 * i)) & 0xffffn));
  let best = { at: -1, len: 0 };
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.len && j - i > 1) best = { at: i, len: j - i };
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best.at < 0) return hex.join(':');
  return `${hex.slice(0, best.at).join(':')}::${hex.slice(best.at + best.len).join(':')}`;
}

/** The range of an IPv6 CIDR or single address; undefined for anything else. */
export function range6Of(cidrOrIp: string): Range6 | undefined {
  const [ip, len] = cidrOrIp.split('/');
  const n = ipv6ToBigInt(ip ?? '');
  if (n === undefined) return undefined;
  const prefixLength = BigInt(len === undefined ? 128 : Number(len));
  if (prefixLength < 0n || prefixLength > BITS) return undefined;
  const size = 1n << (BITS - prefixLength);
  const first = n - (n % size);
  return { first, last: first + size - 1n };
}

/** Reports whether two IPv6 ranges share an address. */
export function overlaps6(a: Range6, b: Range6): boolean {
  return a.first <= b.last && b.first <= a.last;
}

function subnet6At(first: bigint): Subnet6 {
  return { cidr: `${formatIpv6(first)}/64`, gateway: formatIpv6(first + 1n) };
}

/** Parses an IPv6 /64 given for a network. Throws InvalidSpecError naming `field` otherwise. */
export function parseSubnet6(cidr: string, field = 'subnet6'): Subnet6 {
  const range = typeof cidr === 'string' && cidr.endsWith('/64') ? range6Of(cidr) : undefined;
  if (!range) throw new InvalidSpecError(field, `not an IPv6 /64: ${JSON.stringify(cidr)}`);
  return subnet6At(range.first);
}

/** The /64s of an IPv6 pool (a prefix of at most 64 bits), in order. */
export function* subnets6Of(pool: string): Generator<Subnet6> {
  const range = range6Of(pool);
  const len = Number(pool.split('/')[1]);
  if (!range || !pool.includes(':') || !(len <= 64))
    throw new InvalidSpecError('ipv6Pool', `not an IPv6 prefix of at most 64 bits: ${JSON.stringify(pool)}`);
  for (let first = range.first; first + (1n << 64n) - 1n <= range.last; first += 1n << 64n) yield subnet6At(first);
}

/** The IPv6 address of the holder whose IPv4 address is host number `host` of its subnet: `<prefix>::<host>`. */
export function address6For(subnet: Subnet6, host: number): string {
  return formatIpv6((range6Of(subnet.cidr) as Range6).first + BigInt(host));
}
