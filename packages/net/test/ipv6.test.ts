import { describe, expect, it } from 'vitest';
import { address6For, formatIpv6, ipv6ToBigInt, overlaps6, parseSubnet6, range6Of, subnets6Of } from '../src/ipv6.js';

describe('IPv6 helpers', () => {
  it('round-trips addresses in their compressed form', () => {
    for (const ip of ['fd0e:78ec:e0e0:3::1', '::1', 'fe80::1:2', '2001:db8:0:1:1:1:1:1', 'fd00::'])
      expect(formatIpv6(ipv6ToBigInt(ip) as bigint)).toBe(ip);
    expect(formatIpv6(ipv6ToBigInt('fd00:0:0:1:0:0:0:5') as bigint)).toBe('fd00:0:0:1::5');
    expect(ipv6ToBigInt('10.0.0.1')).toBeUndefined();
  });

  it('splits a pool into /64s and places holders by their IPv4 host number', () => {
    const it = subnets6Of('fd0e:78ec:e0e0::/48');
    const first = it.next().value;
    const second = it.next().value;
    expect(first).toEqual({ cidr: 'fd0e:78ec:e0e0::/64', gateway: 'fd0e:78ec:e0e0::1' });
    expect(second?.cidr).toBe('fd0e:78ec:e0e0:1::/64');
    expect(address6For(parseSubnet6('fd0e:78ec:e0e0:1::/64'), 2)).toBe('fd0e:78ec:e0e0:1::2');
    expect(() => subnets6Of('10.0.0.0/8').next()).toThrow(expect.objectContaining({ code: 'INVALID_SPEC' }));
    expect(() => parseSubnet6('fd00::/48')).toThrow(expect.objectContaining({ code: 'INVALID_SPEC' }));
  });

  it('finds overlaps', () => {
    const pool = range6Of('fd0e:78ec:e0e0::/48')!;
    expect(overlaps6(pool, range6Of('fd0e:78ec:e0e0:5::/64')!)).toBe(true);
    expect(overlaps6(pool, range6Of('fd0e:78ec:e0e1::1')!)).toBe(false);
    expect(range6Of('default')).toBeUndefined();
  });
});
