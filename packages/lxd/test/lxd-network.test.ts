import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { freeSubnet, hostRoutes, parseCidr } from '../src/lxd-network.js';

describe('freeSubnet', () => {
  it('takes the first /24 under 10.123.0.0 that no route and no other network uses', () => {
    expect(freeSubnet([])).toBe('10.123.0.1/24');
    expect(freeSubnet([parseCidr('10.123.0.0/24')])).toBe('10.123.1.1/24');
    expect(freeSubnet([parseCidr('10.123.0.0/23')], [parseCidr('10.123.2.1/24')])).toBe('10.123.3.1/24');
    expect(freeSubnet([parseCidr('10.0.0.0/8')].slice(1), [parseCidr('10.123.0.0/16')])).toBe('10.124.0.1/24');
  });

  it('never picks a subnet inside a wide route', () => {
    expect(() => freeSubnet([parseCidr('10.0.0.0/8')])).toThrow(/no free \/24/);
  });
});

describe('hostRoutes', () => {
  it('reads destinations and masks from /proc/net/route', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'execenv-routes-'));
    try {
      const file = join(dir, 'route');
      await writeFile(
        file,
        'Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n' +
          'eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n' +
          'eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n' +
          'br0\t00007B0A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n',
      );
      expect(await hostRoutes(file)).toEqual([parseCidr('192.0.2.0/24'), parseCidr('10.123.0.0/16')]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
