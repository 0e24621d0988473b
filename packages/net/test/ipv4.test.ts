import { describe, expect, it } from 'vitest';
import { hostAddresses, isHostAddress, macFor, overlaps, parseSubnet, rangeOf, subnetsOf } from '../src/ipv4.js';

describe('parseSubnet', () => {
  it('gives the network, gateway, broadcast and netmask of a CIDR', () => {
    expect(parseSubnet('10.213.4.0/24')).toEqual({
      cidr: '10.213.4.0/24',
      prefixLength: 24,
      network: '10.213.4.0',
      gateway: '10.213.4.1',
      broadcast: '10.213.4.255',
      netmask: '255.255.255.0',
    });
  });

  it('takes a host address with a prefix as its network', () => {
    expect(parseSubnet('172.29.7.9/20').cidr).toBe('172.29.0.0/20');
  });

  it.each(['10.1.2.0', '10.1.2.0/33', 'fd00::/64', 'x/24', '10.1.2.0/30'])('refuses %s with INVALID_SPEC', (cidr) => {
    expect(() => parseSubnet(cidr, 'options.subnet')).toThrow(
      expect.objectContaining({ code: 'INVALID_SPEC', field: 'options.subnet' }),
    );
  });
});

describe('hostAddresses', () => {
  it('skips the network, the gateway and the broadcast address', () => {
    const all = [...hostAddresses(parseSubnet('10.0.0.0/29'))];
    expect(all).toEqual(['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6']);
    expect([...hostAddresses(parseSubnet('10.0.0.0/24'))]).toHaveLength(253);
  });

  it('knows which addresses an environment may hold', () => {
    const s = parseSubnet('10.0.0.0/24');
    expect(['10.0.0.0', '10.0.0.1', '10.0.0.255', '10.0.1.2', 'nope'].map((ip) => isHostAddress(s, ip))).toEqual([
      false,
      false,
      false,
      false,
      false,
    ]);
    expect(isHostAddress(s, '10.0.0.254')).toBe(true);
  });
});

describe('subnetsOf', () => {
  it('splits a pool into subnets in order', () => {
    const cidrs = [...subnetsOf('10.213.0.0/22', 24)].map((s) => s.cidr);
    expect(cidrs).toEqual(['10.213.0.0/24', '10.213.1.0/24', '10.213.2.0/24', '10.213.3.0/24']);
  });

  it('refuses a prefix shorter than the pool', () => {
    expect(() => [...subnetsOf('10.213.0.0/24', 16)]).toThrow(expect.objectContaining({ code: 'INVALID_SPEC' }));
  });
});

describe('rangeOf and overlaps', () => {
  it('finds overlaps between CIDRs and single addresses, and ignores what is not IPv4', () => {
    const a = rangeOf('10.213.0.0/16')!;
    expect(overlaps(a, rangeOf('10.213.5.0/24')!)).toBe(true);
    expect(overlaps(a, rangeOf('10.213.255.255')!)).toBe(true);
    expect(overlaps(a, rangeOf('10.214.0.0/24')!)).toBe(false);
    expect(overlaps(rangeOf('0.0.0.0/0')!, rangeOf('10.0.0.1')!)).toBe(true);
    expect(rangeOf('default')).toBeUndefined();
    expect(rangeOf('fe80::/64')).toBeUndefined();
  });
});

describe('macFor', () => {
  it('makes a locally administered unicast MAC from the address', () => {
    expect(macFor('10.213.0.2')).toBe('0a:58:0a:d5:00:02');
    expect(Number.parseInt(macFor('192.168.1.1').slice(0, 2), 16) & 0b11).toBe(0b10);
  });
});
