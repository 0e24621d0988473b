import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Networks } from '../src/networks.js';
import type { NetState } from '../src/state-store.js';
import { type Answer, hostWithRoutes, ScriptedRunner } from './scripted-runner.js';

let stateDir: string;

beforeEach(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'execenv-net-test-'));
});
afterEach(async () => {
  await rm(stateDir, { recursive: true, force: true });
});

async function state(): Promise<NetState> {
  return JSON.parse(await readFile(join(stateDir, 'net', 'networks.json'), 'utf8')) as NetState;
}

function networks(runner: ScriptedRunner, extra: Partial<ConstructorParameters<typeof Networks>[0]> = {}) {
  return new Networks({ stateDir, runner, ...extra });
}

describe('Networks.allocate', () => {
  it('makes the network on a subnet the host does not use, and hands out addresses from .2 up', async () => {
    const runner = new ScriptedRunner(hostWithRoutes('10.213.0.0/23'));
    const nets = networks(runner);
    const a = await nets.allocate({ network: 'build', holder: 'execenv-aaaa', options: { dns: false } });
    const bridge = a.network.bridge as string;
    expect(bridge).toMatch(/^exvb[a-z0-9]{8}$/);
    expect(a).toMatchObject({
      address: '10.213.2.2',
      gateway: '10.213.2.1',
      prefixLength: 24,
      netmask: '255.255.255.0',
      mac: '0a:58:0a:d5:02:02',
      hostname: 'execenv-aaaa',
      nameservers: [],
      network: { name: 'build', subnet: '10.213.2.0/24', nat: true, dns: false, holders: ['execenv-aaaa'] },
    });
    expect(runner.commands).toEqual([
      'cat /proc/sys/net/ipv4/ip_forward',
      'ip -j -4 route show table all',
      'ip -j -4 addr show',
      'ip -batch -',
      'nft -f -',
    ]);
    expect(runner.ran.at(-2)?.input).toBe(
      `link add name ${bridge} type bridge\naddr add 10.213.2.1/24 dev ${bridge}\nlink set dev ${bridge} up\n`,
    );
    expect(runner.ran.at(-1)?.input).toContain(`masquerade comment "${bridge}"`);
    // Every host command runs with the fixed host PATH and the C locale, never the caller's environment.
    expect(new Set(runner.envs.map((e) => JSON.stringify(e)))).toEqual(
      new Set([JSON.stringify({ PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' })]),
    );

    const b = await nets.allocate({ network: 'build', holder: 'execenv-bbbb' });
    const again = await nets.allocate({ network: 'build', holder: 'execenv-aaaa' });
    expect([b.address, again.address]).toEqual(['10.213.2.3', '10.213.2.2']);
    expect(runner.ran.filter((r) => r.input?.includes('type bridge'))).toHaveLength(1);
  });

  it('refuses bad requests with INVALID_SPEC before running anything', async () => {
    const runner = new ScriptedRunner(hostWithRoutes());
    const nets = networks(runner);
    const bad: [Parameters<Networks['attachNamespace']>[0], string][] = [
      [{ network: 'host', holder: 'e1', netns: { pid: 1 } }, 'network'],
      [{ network: 'Bad Name', holder: 'e1', netns: { pid: 1 } }, 'network'],
      [{ network: 'n', holder: '../e1', netns: { pid: 1 } }, 'holder'],
      [{ network: 'n', holder: 'e1', netns: { path: 'relative/ns' } }, 'netns'],
      [{ network: 'n', holder: 'e1', netns: { pid: -3 } }, 'netns'],
      [{ network: 'n', holder: 'e1', netns: { pid: 1 }, ifname: 'a-name-far-too-long' }, 'ifname'],
      [{ network: 'n', holder: 'e1', netns: { pid: 1 }, options: { subnet: '10.0.0.0/30' } }, 'options.subnet'],
      [{ network: 'n', holder: 'e1', netns: { pid: 1 }, hostname: 'no_underscores' }, 'hostname'],
    ];
    for (const [req, field] of bad)
      await expect(nets.attachNamespace(req), field).rejects.toMatchObject({ code: 'INVALID_SPEC', field });
    expect(runner.ran).toEqual([]);
  });

  it('refuses a subnet that overlaps the host, creating nothing', async () => {
    const runner = new ScriptedRunner(hostWithRoutes('10.50.0.0/16'));
    await expect(
      networks(runner).allocate({ network: 'n', holder: 'e1', options: { subnet: '10.50.3.0/24', dns: false } }),
    ).rejects.toMatchObject({
      code: 'INVALID_SPEC',
      field: 'options.subnet',
      message: expect.stringContaining('10.50.0.0/16'),
    });
    expect(runner.commands).not.toContain('ip -batch -');
    expect((await state()).networks).toEqual({});
  });

  it('refuses a NAT network while forwarding is off, unless told to turn it on', async () => {
    const off = (argv: readonly string[]): Answer | undefined =>
      argv[1] === '/proc/sys/net/ipv4/ip_forward' ? { stdout: '0\n' } : hostWithRoutes()(argv);
    const runner = new ScriptedRunner(off);
    await expect(
      networks(runner).allocate({ network: 'n', holder: 'e1', options: { dns: false } }),
    ).rejects.toMatchObject({
      code: 'DRIVER_UNAVAILABLE',
      message: expect.stringContaining('net.ipv4.ip_forward=1'),
    });
    expect(runner.commands).not.toContain('ip -batch -');

    const enabling = new ScriptedRunner(off);
    await networks(enabling, { enableForwarding: true }).allocate({
      network: 'n',
      holder: 'e1',
      options: { dns: false },
    });
    expect(enabling.commands).toContain('sysctl -q -w net.ipv4.ip_forward=1');
    // A network without NAT does not need forwarding.
    const isolated = new ScriptedRunner(off);
    await networks(isolated).allocate({ network: 'm', holder: 'e1', options: { dns: false, nat: false } });
    expect(isolated.commands).not.toContain('cat /proc/sys/net/ipv4/ip_forward');
  });

  it('undoes a half-made network when a step fails, and forgets it', async () => {
    const runner = new ScriptedRunner((argv) =>
      argv[0] === 'nft' && argv[1] === '-f'
        ? { exitCode: 1, stderr: 'Error: Could not process rule\n' }
        : hostWithRoutes()(argv),
    );
    await expect(
      networks(runner).allocate({ network: 'n', holder: 'e1', options: { dns: false } }),
    ).rejects.toMatchObject({
      code: 'EXEC_FAILED',
      message: expect.stringContaining('Could not process rule'),
    });
    const bridge = /link add name (\S+) type bridge/.exec(runner.ran.map((r) => r.input).join('\n'))?.[1];
    expect(runner.commands.slice(-3)).toEqual([
      'nft -f -',
      'nft -j -a list table inet execenv',
      `ip link del dev ${bridge}`,
    ]);
    expect((await state()).networks).toEqual({});
  });

  it('never hands out one address twice to parallel callers on one state directory', { timeout: 30_000 }, async () => {
    const runner = new ScriptedRunner(hostWithRoutes());
    const managers = [1, 2, 3, 4].map(() => networks(runner));
    const all = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        managers[i % 4]!.allocate({ network: 'shared', holder: `env-${i}`, options: { dns: false } }),
      ),
    );
    const addresses = all.map((a) => a.address);
    expect(new Set(addresses).size).toBe(40);
    expect(new Set(all.map((a) => a.network.bridge)).size).toBe(1);
  });
});

describe('Networks.attachNamespace and release', () => {
  it('wires a veth into the namespace, and release removes it and then the idle network', async () => {
    const runner = new ScriptedRunner(hostWithRoutes());
    const nets = networks(runner);
    const link = await nets.attachNamespace({
      network: 'nat',
      holder: 'execenv-aaaa',
      netns: { pid: 4242 },
      options: { dns: false },
    });
    const { hostInterface: h, network } = link;
    const peer = h.replace(/^exvh/, 'exvp');
    expect(link).toMatchObject({ address: '10.213.0.2', ifname: 'eth0' });
    expect(runner.ran.slice(-2)).toEqual([
      {
        argv: ['ip', '-batch', '-'],
        input: [
          `link add name ${h} type veth peer name ${peer} netns /proc/4242/ns/net`,
          `link set dev ${h} master ${network.bridge}`,
          `link set dev ${h} up`,
          '',
        ].join('\n'),
      },
      {
        argv: ['nsenter', '--net=/proc/4242/ns/net', '--', 'ip', '-batch', '-'],
        input: [
          `link set dev ${peer} name eth0`,
          'link set dev eth0 address 0a:58:0a:d5:00:02',
          'addr add 10.213.0.2/24 dev eth0',
          'link set dev eth0 up',
          'link set dev lo up',
          'route add default via 10.213.0.1 dev eth0',
          '',
        ].join('\n'),
      },
    ]);
    await expect(
      nets.attachNamespace({ network: 'nat', holder: 'execenv-aaaa', netns: { pid: 4242 } }),
    ).rejects.toMatchObject({ code: 'INVALID_SPEC', field: 'holder' });

    runner.ran.length = 0;
    await nets.release('execenv-aaaa');
    expect(runner.commands).toEqual([
      `ip link del dev ${h}`,
      'nft -j -a list table inet execenv',
      `ip link del dev ${network.bridge}`,
    ]);
    expect((await state()).networks).toEqual({});
    runner.ran.length = 0;
    await nets.release('execenv-aaaa');
    expect(runner.ran).toEqual([]);
  });

  it('gives the address back when wiring fails, leaving no link', async () => {
    const runner = new ScriptedRunner((argv) =>
      argv[0] === 'nsenter'
        ? { exitCode: 1, stderr: 'nsenter: cannot open /proc/4242/ns/net\n' }
        : hostWithRoutes()(argv),
    );
    const nets = networks(runner);
    await nets.allocate({ network: 'nat', holder: 'keeper', options: { dns: false } });
    await expect(nets.attachNamespace({ network: 'nat', holder: 'e1', netns: { pid: 4242 } })).rejects.toMatchObject({
      code: 'EXEC_FAILED',
    });
    const h = /link add name (exvh\S+)/.exec(runner.ran.map((r) => r.input).join('\n'))?.[1];
    expect(runner.commands).toContain(`ip link del dev ${h}`);
    expect(Object.keys((await state()).networks.nat?.holders ?? {})).toEqual(['keeper']);
  });

  it('makes a tap for a VM that the given user may open', async () => {
    const runner = new ScriptedRunner(hostWithRoutes());
    const tap = await networks(runner).attachTap({
      network: 'vms',
      holder: 'vm1',
      user: 'builder',
      options: { dns: false },
    });
    expect(tap.tap).toMatch(/^exvt[a-z0-9]{8}$/);
    expect(runner.ran.at(-1)).toEqual({
      argv: ['ip', '-batch', '-'],
      input: `tuntap add dev ${tap.tap} mode tap user builder\nlink set dev ${tap.tap} master ${tap.network.bridge}\nlink set dev ${tap.tap} up\n`,
    });
  });
});

describe('reclaiming what dead owners left', () => {
  const dead = { pid: 2 ** 22 + 17, startTime: '1' };

  async function seed(s: NetState) {
    const { mkdir } = await import('node:fs/promises');
    await mkdir(join(stateDir, 'net'), { recursive: true });
    await writeFile(join(stateDir, 'net', 'networks.json'), JSON.stringify(s));
  }

  it('reuses the address of a dead holder after deleting its link', async () => {
    await seed({
      version: 1,
      networks: {
        nat: {
          name: 'nat',
          kind: 'bridge',
          subnet: '10.213.0.0/24',
          bridge: 'exvbdeadbeef',
          nat: true,
          dns: false,
          steps: ['bridge', 'firewall'],
          ready: true,
          holders: {
            gone: {
              owner: dead,
              address: '10.213.0.2',
              mac: '0a:58:0a:d5:00:02',
              link: { kind: 'veth', name: 'exvhdeadbeef' },
            },
            live: { owner: { pid: process.pid, startTime: await startTime() }, address: '10.213.0.3' },
          },
          createdAt: '2026-01-01T00:00:00Z',
        },
      },
    });
    const runner = new ScriptedRunner(hostWithRoutes());
    const a = await networks(runner).allocate({ network: 'nat', holder: 'new' });
    expect(runner.commands).toEqual(['ip link del dev exvhdeadbeef']);
    expect(a.address).toBe('10.213.0.2');
  });

  it('gc removes a network whose setup a crash cut short, and reports it', async () => {
    await seed({
      version: 1,
      networks: {
        n: {
          name: 'n',
          kind: 'bridge',
          subnet: '10.213.0.0/24',
          bridge: 'exvbdeadbeef',
          nat: true,
          dns: true,
          steps: ['bridge', 'firewall', 'dnsmasq'],
          ready: false,
          runDir: join(stateDir, 'run', 'exvbdeadbeef'),
          holders: { gone: { owner: dead, address: '10.213.0.2', link: { kind: 'veth', name: 'exvhdeadbeef' } } },
          createdAt: '2026-01-01T00:00:00Z',
        },
      },
    });
    const runner = new ScriptedRunner(hostWithRoutes());
    const report = await networks(runner).gc();
    expect(report).toEqual({ removed: ['n/gone', 'n'], errors: [] });
    expect(runner.commands).toEqual([
      'ip link del dev exvhdeadbeef',
      'nft -j -a list table inet execenv',
      'ip link del dev exvbdeadbeef',
    ]);
    expect((await state()).networks).toEqual({});
  });
});

describe('Networks.reserveSubnet', () => {
  it('sets aside a subnet no network or route uses, shared by name until its last holder leaves', async () => {
    const runner = new ScriptedRunner(hostWithRoutes('10.213.0.0/24'));
    const nets = networks(runner);
    await nets.allocate({ network: 'nat', holder: 'e1', options: { dns: false } });
    const r1 = await nets.reserveSubnet({ name: 'lxdbr-x', holder: 'lxd-1' });
    const r2 = await nets.reserveSubnet({ name: 'lxdbr-x', holder: 'lxd-2' });
    expect(r1).toEqual({
      name: 'lxdbr-x',
      holder: 'lxd-1',
      subnet: '10.213.2.0/24',
      gateway: '10.213.2.1',
      prefixLength: 24,
      netmask: '255.255.255.0',
    });
    expect(r2.subnet).toBe(r1.subnet);
    await expect(nets.allocate({ network: 'lxdbr-x', holder: 'e2' })).rejects.toMatchObject({ code: 'INVALID_SPEC' });
    runner.ran.length = 0;
    await nets.release('lxd-1');
    await nets.release('lxd-2');
    expect(runner.ran).toEqual([]);
    expect(Object.keys((await state()).networks)).toEqual(['nat']);
  });
});

async function startTime(): Promise<string> {
  const { processStartTime } = await import('@execenv/core');
  return (await processStartTime(process.pid)) as string;
}

describe('IPv6', () => {
  it('gives the network a free /64 and each holder <prefix>::<host number>, masqueraded with nft', async () => {
    const runner = new ScriptedRunner(hostWithRoutes());
    const nets = networks(runner);
    const link = await nets.attachNamespace({
      network: 'v6',
      holder: 'e1',
      netns: { path: '/run/netns/x' },
      options: { dns: false, ipv6: true },
    });
    expect(link).toMatchObject({
      address: '10.213.0.2',
      address6: 'fd0e:78ec:e0e0:1::2',
      gateway6: 'fd0e:78ec:e0e0:1::1',
      network: { subnet6: 'fd0e:78ec:e0e0:1::/64' },
    });
    expect(runner.commands).toContain('cat /proc/sys/net/ipv6/conf/all/forwarding');
    const inputs = runner.ran.map((r) => r.input ?? '').join('');
    expect(inputs).toContain(`addr add fd0e:78ec:e0e0:1::1/64 dev ${link.network.bridge} nodad\n`);
    expect(inputs).toContain(
      'addr add fd0e:78ec:e0e0:1::2/64 dev eth0 nodad\nroute add ::/0 via fd0e:78ec:e0e0:1::1 dev eth0\n',
    );
    expect(inputs).toContain('ip6 saddr fd0e:78ec:e0e0:1::/64 ip6 daddr != fd0e:78ec:e0e0:1::/64 masquerade');
  });

  it('is refused with the iptables firewall, creating nothing', async () => {
    const runner = new ScriptedRunner(hostWithRoutes());
    await expect(
      networks(runner, { firewall: 'iptables' }).allocate({ network: 'v6', holder: 'e1', options: { ipv6: true } }),
    ).rejects.toMatchObject({ code: 'INVALID_SPEC', field: 'options.ipv6' });
    expect(runner.commands).not.toContain('ip -batch -');
  });
});

describe('state failures', () => {
  it('reports a corrupt state file as an ExecenvError, running nothing', async () => {
    const { mkdir } = await import('node:fs/promises');
    await mkdir(join(stateDir, 'net'), { recursive: true });
    await writeFile(join(stateDir, 'net', 'networks.json'), '{ not json');
    const runner = new ScriptedRunner(hostWithRoutes());
    await expect(networks(runner).allocate({ network: 'n', holder: 'e1' })).rejects.toMatchObject({
      code: 'EXEC_FAILED',
      message: expect.stringContaining('network state'),
    });
    await expect(networks(runner).list()).rejects.toMatchObject({ code: 'EXEC_FAILED' });
    expect(runner.ran).toEqual([]);
  });
});
