import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createRunner } from '@execenv/core';
import { findBinary } from '@execenv/core/driver';
import { Networks, resolvConf } from '@execenv/net';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { busyboxTarball } from './fixtures.js';
import { firstLine, hostSnapshot, netLines, waitFor } from './net-fixtures.js';

const run = promisify(execFile);
const E2E_DIR = fileURLToPath(new URL('..', import.meta.url));
const tag = randomBytes(3).toString('hex');
/** Every namespace this file makes: `exvt<tag>-<role>`; the "host" one stands in for the machine. */
const nsName = (role: string) => `exvt${tag}-${role}`;
const HOST_NS = nsName('host');
const made: string[] = [];

async function addNamespace(role: string): Promise<string> {
  const name = nsName(role);
  await run('ip', ['netns', 'add', name]);
  made.push(name);
  return `/run/netns/${name}`;
}

/** Runs argv inside the named namespace of this file; resolves with the result, never rejects. */
async function inNs(role: string, argv: string[], timeout = 10_000) {
  try {
    const r = await run('nsenter', [`--net=/run/netns/${nsName(role)}`, '--', ...argv], { timeout });
    return { ok: true, out: `${r.stdout}${r.stderr}` };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { ok: false, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

/** What a teardown must leave exactly as it found: links, addresses and the whole nftables ruleset. */
async function snapshot(role: string) {
  const [link, addr, nft] = await Promise.all([
    inNs(role, ['ip', '-o', 'link', 'show']),
    inNs(role, ['ip', '-o', 'addr', 'show']),
    inNs(role, ['nft', 'list', 'ruleset']),
  ]);
  return { link: link.out, addr: addr.out, nft: nft.out };
}

async function dnsmasqPids(): Promise<number[]> {
  const r = await run('ps', ['-eo', 'pid=,args=']);
  return r.stdout
    .split('\n')
    .filter((l) => /dnsmasq .*--interface=exvb/.test(l) && l.includes(`/net-${tag}/`))
    .map((l) => Number(l.trim().split(/\s+/)[0]));
}

let stateDir: string;
let runDir: string;
/** The runner every Networks of this file uses: each host command runs in the stand-in host namespace. */
const hostNsRunner = createRunner({ sudo: ['nsenter', `--net=/run/netns/${HOST_NS}`, '--'] });
const networks = () => new Networks({ stateDir, runDir, runner: hostNsRunner, enableForwarding: true });
let empty: Awaited<ReturnType<typeof snapshot>>;

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'execenv-e2e-net-'));
  runDir = `/run/execenv/net-${tag}`;
  await addNamespace('host');
  for (const role of ['a', 'b', 'c', 'd']) await addNamespace(role);
  empty = await snapshot('host');
});

afterAll(async () => {
  await networks().gc();
  for (const name of made.reverse()) await run('ip', ['netns', 'del', name]).catch(() => undefined);
  await rm(stateDir, { recursive: true, force: true });
  await rm(runDir, { recursive: true, force: true });
});

describe('@execenv/net in network namespaces made by the test', () => {
  it('connects environments on one network, to each other and the gateway, and isolates other networks', async () => {
    const nets = networks();
    const ns = (role: string) => ({ path: `/run/netns/${nsName(role)}` });
    onTestFinished(async () => {
      for (const h of ['a', 'b', 'c']) await nets.release(`${h}-${tag}`);
    });
    const a = await nets.attachNamespace({ network: 'nat', holder: `a-${tag}`, netns: ns('a') });
    const b = await nets.attachNamespace({ network: 'nat', holder: `b-${tag}`, netns: ns('b') });
    const c = await nets.attachNamespace({ network: 'other', holder: `c-${tag}`, netns: ns('c') });
    expect(a.network.bridge).toBe(b.network.bridge);
    expect(c.network.subnet).not.toBe(a.network.subnet);
    expect(a.address).not.toBe(b.address);

    const ping = (role: string, ip: string) => inNs(role, ['ping', '-c', '1', '-W', '1', ip]);
    expect((await ping('a', b.address)).ok, 'a reaches b').toBe(true);
    expect((await ping('b', a.address)).ok, 'b reaches a').toBe(true);
    expect((await ping('a', a.gateway)).ok, 'a reaches its gateway').toBe(true);
    expect((await ping('c', c.gateway)).ok, 'c reaches its gateway').toBe(true);
    // Forwarding is on in the stand-in host, so only the rules keep the networks apart.
    expect((await inNs('host', ['cat', '/proc/sys/net/ipv4/ip_forward'])).out.trim()).toBe('1');
    expect((await ping('a', c.address)).ok, 'a must not reach c').toBe(false);
    expect((await ping('c', b.address)).ok, 'c must not reach b').toBe(false);

    await nets.release(`a-${tag}`);
    expect((await ping('b', b.gateway)).ok, 'b keeps its network after a left').toBe(true);
    await nets.release(`b-${tag}`);
    await nets.release(`c-${tag}`);
    expect(await snapshot('host')).toEqual(empty);
    expect(await nets.list()).toEqual([]);
  });

  it('serves the allocated address over DHCP and the environments’ names over DNS', async () => {
    const nets = networks();
    try {
      const a = await nets.attachNamespace({
        network: 'dns',
        holder: `a-${tag}`,
        netns: { path: `/run/netns/${nsName('a')}` },
      });
      const d = await nets.attachNamespace({
        network: 'dns',
        holder: `d-${tag}`,
        netns: { path: `/run/netns/${nsName('d')}` },
      });
      expect(resolvConf(d)).toBe(`nameserver ${d.gateway}\nsearch execenv\n`);
      const lookup = await inNs('d', ['busybox', 'nslookup', `a-${tag}.execenv`, d.gateway]);
      expect(lookup.out).toMatch(new RegExp(`Address:\\s+${a.address.replaceAll('.', '\\.')}\\b`));
      // DHCP answers the interface's MAC with exactly the address the allocator chose.
      await inNs('d', ['ip', 'addr', 'flush', 'dev', 'eth0']);
      const dhcp = await inNs('d', [
        'busybox',
        'udhcpc',
        '-i',
        'eth0',
        '-n',
        '-q',
        '-f',
        '-t',
        '5',
        '-T',
        '1',
        '-s',
        '/bin/true',
      ]);
      expect(dhcp.out).toContain(`lease of ${d.address} obtained`);
      expect(await dnsmasqPids()).toHaveLength(1);
    } finally {
      await nets.release(`a-${tag}`);
      await nets.release(`d-${tag}`);
    }
    expect(await dnsmasqPids()).toEqual([]);
    expect(await snapshot('host')).toEqual(empty);
  });

  it('gives 50 distinct addresses to 50 concurrent allocations from 10 processes; gc reclaims them', async () => {
    // Each worker prints its addresses, then holds them until its stdin closes.
    const worker = `
      import { createRunner } from '@execenv/core';
      import { Networks } from '@execenv/net';
      const [stateDir, runDir, hostNs, name] = process.argv.slice(1);
      const nets = new Networks({ stateDir, runDir, enableForwarding: true,
        runner: createRunner({ sudo: ['nsenter', '--net=' + hostNs, '--'] }) });
      const got = await Promise.all([0, 1, 2, 3, 4].map((i) => nets.allocate({ network: 'crowd', holder: name + '-' + i })));
      console.log(JSON.stringify(got.map((a) => [a.address, a.network.subnet])));
      process.stdin.resume();
      process.stdin.on('end', () => process.exit(0));
    `;
    const started = performance.now();
    const workers = Array.from({ length: 10 }, (_, p) =>
      spawn(
        process.execPath,
        ['--input-type=module', '-e', worker, stateDir, runDir, `/run/netns/${HOST_NS}`, `p${p}`],
        {
          cwd: E2E_DIR,
          stdio: ['pipe', 'pipe', 'inherit'],
        },
      ),
    );
    try {
      const outputs = await Promise.all(workers.map(firstLine));
      const elapsed = Math.round(performance.now() - started);
      const got = outputs.flatMap((line) => JSON.parse(line) as [string, string][]);
      console.log(`50 allocations from 10 processes (process start included): ${elapsed} ms`);
      expect(got).toHaveLength(50);
      expect(new Set(got.map(([ip]) => ip)).size).toBe(50);
      expect(new Set(got.map(([, subnet]) => subnet)).size).toBe(1);
      const [listed] = await networks().list();
      expect(listed?.holders).toHaveLength(50);
    } finally {
      for (const w of workers) w.stdin?.end();
      await Promise.all(workers.map((w) => (w.exitCode === null ? new Promise((r) => w.once('exit', r)) : undefined)));
    }
    // Every worker has exited: their leases are dead, and gc removes them with the network.
    const report = await networks().gc();
    expect(report.errors).toEqual([]);
    expect(report.removed).toContain('crowd');
    expect(await snapshot('host')).toEqual(empty);
    expect(await dnsmasqPids()).toEqual([]);
  });

  it.each(['bridge', 'dnsmasq', 'link'] as const)(
    'leaves nothing gc cannot remove after a crash once the %s step began',
    async (point) => {
      const script = `
        import { createRunner } from '@execenv/core';
        import { Networks } from '@execenv/net';
        const [stateDir, runDir, hostNs, netns] = process.argv.slice(1);
        const nets = new Networks({ stateDir, runDir, enableForwarding: true,
          runner: createRunner({ sudo: ['nsenter', '--net=' + hostNs, '--'] }) });
        await nets.attachNamespace({ network: 'crash', holder: 'victim', netns: { path: netns } });
        setInterval(() => {}, 1000);
      `;
      const child: ChildProcess = spawn(
        process.execPath,
        ['--input-type=module', '-e', script, stateDir, runDir, `/run/netns/${HOST_NS}`, `/run/netns/${nsName('a')}`],
        { cwd: E2E_DIR, stdio: ['ignore', 'ignore', 'pipe'] },
      );
      const exited = new Promise((r) => child.once('exit', r));
      const reached = async () => {
        try {
          const s = JSON.parse(await readFile(join(stateDir, 'net', 'networks.json'), 'utf8'));
          const n = s.networks?.crash;
          if (point === 'link') return Boolean(n?.holders?.victim?.link);
          return Boolean(n?.steps?.includes(point));
        } catch {
          return false;
        }
      };
      const deadline = Date.now() + 20_000;
      let stderr = '';
      child.stderr?.on('data', (chunk) => {
        stderr += String(chunk);
      });
      while (!(await reached()) && Date.now() < deadline && child.exitCode === null)
        await new Promise((r) => setTimeout(r, 2));
      const killedThere = await reached();
      child.kill('SIGKILL');
      await exited;
      expect(killedThere, `the child never reached the ${point} step: ${stderr}`).toBe(true);
      const report = await networks().gc();
      expect(report.errors).toEqual([]);
      expect(await snapshot('host')).toEqual(empty);
      expect(await dnsmasqPids()).toEqual([]);
      expect(await networks().list()).toEqual([]);
    },
  );

  it('connects and isolates over IPv6 too, when a network asks for it', async () => {
    const nets = networks();
    const ns = (role: string) => ({ path: `/run/netns/${nsName(role)}` });
    try {
      const options = { ipv6: true, dns: false };
      const a = await nets.attachNamespace({ network: 'v6', holder: `a-${tag}`, netns: ns('a'), options });
      const b = await nets.attachNamespace({ network: 'v6', holder: `b-${tag}`, netns: ns('b'), options });
      const c = await nets.attachNamespace({ network: 'v6-other', holder: `c-${tag}`, netns: ns('c'), options });
      expect(a.address6).toMatch(/^fd0e:78ec:e0e0:/);
      expect(c.network.subnet6).not.toBe(a.network.subnet6);
      const ping6 = (role: string, ip: string) => inNs(role, ['ping', '-6', '-c', '1', '-W', '1', ip]);
      expect((await ping6('a', b.address6 as string)).ok, 'a reaches b').toBe(true);
      expect((await ping6('b', a.gateway6 as string)).ok, 'b reaches its gateway').toBe(true);
      expect((await inNs('host', ['cat', '/proc/sys/net/ipv6/conf/all/forwarding'])).out.trim()).toBe('1');
      expect((await ping6('a', c.address6 as string)).ok, 'a must not reach c').toBe(false);
    } finally {
      for (const h of ['a', 'b', 'c']) await nets.release(`${h}-${tag}`);
    }
    expect(await snapshot('host')).toEqual(empty);
  });

  it('puts a tap for a VM on the bridge and removes it', async () => {
    const nets = networks();
    try {
      const tap = await nets.attachTap({ network: 'vms', holder: `vm-${tag}`, options: { dns: false } });
      const shown = await inNs('host', ['ip', '-j', '-d', 'link', 'show', 'dev', tap.tap]);
      expect(JSON.parse(shown.out)[0]).toMatchObject({ ifname: tap.tap, master: tap.network.bridge });
    } finally {
      await nets.release(`vm-${tag}`);
    }
    expect(await snapshot('host')).toEqual(empty);
  });

  // Last here: iptables-nft leaves its (empty) filter and nat tables behind, which the snapshots above compare.
  it('isolates networks with the iptables fallback too, and removes exactly its rules', async () => {
    const rules = async () => ({
      filter: (await inNs('host', ['iptables', '-w', '-S'])).out,
      nat: (await inNs('host', ['iptables', '-w', '-t', 'nat', '-S'])).out,
      link: (await inNs('host', ['ip', '-o', 'link', 'show'])).out,
      addr: (await inNs('host', ['ip', '-o', 'addr', 'show'])).out,
    });
    const before = await rules();
    const nets = new Networks({ stateDir, runDir, runner: hostNsRunner, enableForwarding: true, firewall: 'iptables' });
    try {
      const ns = (role: string) => ({ path: `/run/netns/${nsName(role)}` });
      const a = await nets.attachNamespace({
        network: 'ipt-1',
        holder: `a-${tag}`,
        netns: ns('a'),
        options: { dns: false },
      });
      const c = await nets.attachNamespace({
        network: 'ipt-2',
        holder: `c-${tag}`,
        netns: ns('c'),
        options: { dns: false },
      });
      expect((await inNs('host', ['iptables', '-w', '-S', 'FORWARD'])).out).toContain(`--comment ${a.network.bridge}`);
      expect((await inNs('a', ['ping', '-c', '1', '-W', '1', a.gateway])).ok).toBe(true);
      expect((await inNs('a', ['ping', '-c', '1', '-W', '1', c.address])).ok, 'a must not reach c').toBe(false);
    } finally {
      await nets.release(`a-${tag}`);
      await nets.release(`c-${tag}`);
    }
    expect(await rules()).toEqual(before);
  });
});

describe('@execenv/net on this host, with real backends', () => {
  let root: string;
  let server: Server;
  let sleeper: ChildProcess | undefined;
  const stateDirHost = () => join(stateDir, 'host');

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'execenv-e2e-net-root-'));
    await run('tar', ['-xf', busyboxTarball(), '-C', root]);
  });
  afterAll(async () => {
    sleeper?.kill('SIGKILL');
    server?.close();
    await new Networks({ stateDir: stateDirHost() }).gc();
    await rm(root, { recursive: true, force: true });
  });

  it('reaches a server on the host side of the bridge and resolves its own name; teardown leaves no trace', async () => {
    const before = await hostSnapshot();
    const nets = new Networks({ stateDir: stateDirHost() });
    // The environment: a process in a new network namespace, chrooted into the busybox rootfs.
    sleeper = spawn('unshare', ['--net', '--', 'chroot', root, '/bin/sleep', '600'], { stdio: 'ignore' });
    const pid = sleeper.pid as number;
    await waitFor(
      async () =>
        (await run('readlink', [`/proc/${pid}/ns/net`])).stdout !==
        (await run('readlink', ['/proc/self/ns/net'])).stdout,
    );
    const holder = `chroot-${tag}`;
    const link = await nets.attachNamespace({ network: 'nat', holder, netns: { pid } });
    try {
      // A driver writes resolv.conf through its agent; this rootfs is the test's own directory.
      await writeFile(join(root, 'etc', 'resolv.conf'), resolvConf(link) as string);
      server = createServer((_req, res) => res.end(`hello ${link.address}\n`));
      await new Promise<void>((r) => server.listen(0, link.gateway, r));
      const port = (server.address() as { port: number }).port;
      const inEnv = (argv: string[]) =>
        run('nsenter', [`--net=/proc/${pid}/ns/net`, '--', 'chroot', root, ...argv], { timeout: 15_000 });
      const got = await inEnv(['/usr/bin/wget', '-q', '-O', '-', `http://${link.gateway}:${port}/`]);
      expect(got.stdout).toBe(`hello ${link.address}\n`);
      const name = await inEnv(['/usr/bin/nslookup', `${holder}.execenv`]);
      expect(name.stdout).toContain(link.address);
    } finally {
      await nets.release(holder);
      sleeper.kill('SIGKILL');
    }
    const after = await hostSnapshot();
    expect(netLines(after.link)).toEqual(netLines(before.link));
    expect(netLines(after.addr)).toEqual(netLines(before.addr));
    expect(netLines(after.nft)).toEqual(netLines(before.nft));
    expect(after.nft.includes(link.network.bridge as string)).toBe(false);
  });

  it('gives a systemd-nspawn container a network through --network-namespace-path', async () => {
    if (!(await findBinary('systemd-nspawn'))) {
      console.log('skipped: systemd-nspawn is not installed (tools/setup/nspawn.sh installs it)');
      return;
    }
    const nets = new Networks({ stateDir: stateDirHost() });
    const netnsPath = await addNamespace('nspawn');
    const holder = `nspawn-${tag}`;
    try {
      const link = await nets.attachNamespace({ network: 'nat', holder, netns: { path: netnsPath } });
      const server = createServer((_req, res) => res.end(`hello nspawn ${link.address}\n`));
      await new Promise<void>((r) => server.listen(0, link.gateway, r));
      try {
        const port = (server.address() as { port: number }).port;
        const r = await run(
          'systemd-nspawn',
          [
            '-D',
            root,
            '--register=no',
            '--keep-unit',
            '-q',
            '--pipe',
            `--network-namespace-path=${netnsPath}`,
            '--',
            '/usr/bin/wget',
            '-q',
            '-O',
            '-',
            `http://${link.gateway}:${port}/`,
          ],
          { timeout: 30_000 },
        );
        expect(r.stdout).toBe(`hello nspawn ${link.address}\n`);
      } finally {
        server.close();
      }
    } finally {
      await nets.release(holder);
    }
    expect((await nets.list()).map((n) => n.name)).not.toContain('nat');
  });

  it('opens its tap in QEMU (a guest needs a kernel and initramfs, which this test does not build)', async () => {
    if (!(await findBinary('qemu-system-x86_64'))) {
      console.log('skipped: qemu-system-x86_64 is not installed');
      return;
    }
    const nets = new Networks({ stateDir: stateDirHost() });
    const holder = `qemu-${tag}`;
    try {
      const tap = await nets.attachTap({ network: 'nat', holder });
      const qemu = spawn(
        'qemu-system-x86_64',
        [
          '-M',
          'microvm',
          '-accel',
          'tcg',
          '-nodefaults',
          '-display',
          'none',
          '-S',
          '-netdev',
          `tap,id=n0,ifname=${tap.tap},script=no,downscript=no`,
          '-device',
          `virtio-net-device,netdev=n0,mac=${tap.mac}`,
        ],
        { stdio: 'ignore' },
      );
      try {
        // A tap has carrier once a process holds it open.
        await waitFor(
          async () => (await run('ip', ['-o', 'link', 'show', 'dev', tap.tap])).stdout.includes('LOWER_UP'),
          15_000,
        );
      } finally {
        qemu.kill('SIGKILL');
      }
      console.log('QEMU guest traffic not exercised here: qemu-driver.e2e.test.ts boots guests on taps of a network');
    } finally {
      await nets.release(holder);
    }
  });

  it('gives LXD a subnet for its managed bridge that no other network takes', async () => {
    const lxc = await run('lxc', ['network', 'list', '--format', 'csv']).catch(() => undefined);
    if (!lxc) {
      console.log('skipped: no LXD daemon answers `lxc network list` (tools/setup/lxd.sh starts one)');
      return;
    }
    const nets = new Networks({ stateDir: stateDirHost() });
    const name = `exvl${tag}`;
    const reservation = await nets.reserveSubnet({ name, holder: `lxd-${tag}` });
    try {
      await run('lxc', [
        'network',
        'create',
        name,
        `ipv4.address=${reservation.gateway}/${reservation.prefixLength}`,
        'ipv4.nat=true',
        'ipv6.address=none',
      ]);
      try {
        expect((await run('lxc', ['network', 'get', name, 'ipv4.address'])).stdout.trim()).toBe(
          `${reservation.gateway}/${reservation.prefixLength}`,
        );
        const other = await nets.allocate({ network: `beside-${tag}`, holder: `e-${tag}`, options: { dns: false } });
        expect(other.network.subnet).not.toBe(reservation.subnet);
        await nets.release(`e-${tag}`);
        // Even once the reservation is gone, the live LXD bridge keeps its subnet taken: the host's routes say so.
        await nets.release(`lxd-${tag}`);
        const pinned = new Networks({ stateDir: stateDirHost(), pools: [reservation.subnet, '10.214.0.0/16'] });
        const next = await pinned.allocate({ network: `after-${tag}`, holder: `f-${tag}`, options: { dns: false } });
        expect(next.network.subnet).not.toBe(reservation.subnet);
        await pinned.release(`f-${tag}`);
      } finally {
        await run('lxc', ['network', 'delete', name]);
      }
    } finally {
      await nets.release(`lxd-${tag}`);
    }
  });
});
