import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Networks } from '@execenv/net';
import { describe, expect, it } from 'vitest';
import { LxdClient } from '../src/lxd-client.js';
import { ensureNatNetwork, freeSubnet, hostRoutes, NAT_NETWORK, parseCidr } from '../src/lxd-network.js';
import { FakeLxd } from './fake-lxd.js';

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

describe('ensureNatNetwork', () => {
  it('on a local daemon, takes the bridge subnet from @execenv/net, off what its networks hold, and keeps no reservation', async () => {
    const fake = await FakeLxd.start();
    const stateDir = await mkdtemp(join(tmpdir(), 'execenv-lxd-net-'));
    try {
      const networks = new Networks({ stateDir });
      // Another environment's network, reserved in the same state while the bridge is being made.
      const other = await networks.reserveSubnet({ name: 'other-net', holder: 'other-env' });
      const client = new LxdClient({ socketPath: fake.socketPath });
      expect(await ensureNatNetwork(client, { local: { stateDir, holder: 'env-1' } })).toBe(NAT_NETWORK);
      const created = fake.requests.find((r) => r.method === 'POST' && r.path === '/1.0/networks');
      expect(created).toBeDefined();
      const address = (created!.json as { config: Record<string, string> }).config['ipv4.address']!;
      expect(address).toMatch(/^\d+\.\d+\.\d+\.1\/\d+$/);
      const ours = parseCidr(address);
      const theirs = parseCidr(other.subnet);
      const size = (n: { base: number; prefix: number }) => 2 ** (32 - n.prefix);
      expect(ours.base + size(ours) <= theirs.base || theirs.base + size(theirs) <= ours.base).toBe(true);
      // The pools of @execenv/net, not the range of freeSubnet.
      expect(address.startsWith('10.123.')).toBe(false);
      expect((await networks.list()).map((n) => n.name)).toEqual(['other-net']);
    } finally {
      await fake.stop();
      await rm(stateDir, { recursive: true, force: true });
    }
  });
});
