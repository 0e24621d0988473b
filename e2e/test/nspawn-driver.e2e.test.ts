import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import type { Environment } from '@execenv/core';
import { Networks } from '@execenv/net';
import { NspawnDriver } from '@execenv/nspawn';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { busyboxTarball, systemdTarball } from './fixtures.js';
import { expectIndexThroughConfig } from './image-config-fixtures.js';
import { expectNoNetLeft, expectOneNetwork, firstLine, helloServer, hostSnapshot } from './net-fixtures.js';

const driver = new NspawnDriver();
const machine = `e2e-${randomBytes(4).toString('hex')}`;

afterAll(async () => {
  await driver.removeMachine(machine);
});

/** Host pids whose command line names `id` (systemd-nspawn --machine=ID, the container's processes do not). */
async function hostProcessesNaming(id: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(id)) found.push(Number(entry));
  }
  return found;
}

describe('nspawn driver on this host', () => {
  it('probes available, saying resource limits need a systemd scope this host lacks', async () => {
    const p = await driver.probe();
    expect(p.available).toBe(true);
    expect(p.version).toMatch(/^systemd \d+/);
    if (p.details?.manager === 'none') {
      expect(p.capabilities).not.toContain('resource-limits');
      await expect(driver.open({ image: busyboxTarball(), resources: { memory: '256M' } })).rejects.toMatchObject({
        code: 'UNSUPPORTED',
        field: 'resources',
      });
    }
  });

  it('never changes the image: each ephemeral environment starts from it', async () => {
    const first = await driver.open({ image: busyboxTarball() });
    await first.exec(['sh', '-c', 'echo changed > /etc/marker && rm /bin/true'], { check: true });
    await first.close();
    await using second = await driver.open({ image: busyboxTarball() });
    expect((await second.exec(['test', '-e', '/etc/marker'])).exitCode).toBe(1);
    expect((await second.exec(['/bin/true'])).exitCode).toBe(0);
  });

  it('keeps a named machine directory with ephemeral: false, and a later open reuses it', async () => {
    const spec = { image: busyboxTarball(), ephemeral: false, driverOptions: { machine } };
    {
      await using env = await driver.open(spec);
      expect((await env.exec(['hostname'])).stdout.trim()).toBe(machine);
      await env.push(new TextEncoder().encode('kept\n'), '/root/kept');
    }
    {
      await using env = await driver.open(spec);
      expect((await env.exec(['cat', '/root/kept'])).stdout).toBe('kept\n');
      await expect(driver.removeMachine(machine)).rejects.toMatchObject({ code: 'INVALID_SPEC' });
    }
  });

  it('has only loopback with network none, and the host’s interfaces with network host', async () => {
    const links = async (network: string) => {
      await using env = await driver.open({ image: busyboxTarball(), network });
      return (await env.exec(['ls', '/sys/class/net'], { check: true })).stdout.split(/\s+/).filter(Boolean);
    };
    expect(await links('none')).toEqual(['lo']);
    const host = (await readdir('/sys/class/net')).sort();
    expect((await links('host')).sort()).toEqual(host);
    await expect(driver.open({ image: busyboxTarball(), network: 'Not A Name' })).rejects.toMatchObject({
      code: 'INVALID_SPEC',
      field: 'network',
    });
  });

  it('opens 8 environments at once', async () => {
    const started = performance.now();
    const envs: Environment[] = await Promise.all(
      Array.from({ length: 8 }, () => driver.open({ image: busyboxTarball() })),
    );
    try {
      const seen = await Promise.all(envs.map((env) => env.exec(['hostname']).then((r) => r.stdout.trim())));
      expect(seen).toEqual(envs.map((env) => env.id));
    } finally {
      await Promise.all(envs.map((env) => env.close()));
    }
    console.log(
      `nspawn: 8 environments opened, used and closed in parallel in ${Math.round(performance.now() - started)} ms`,
    );
    for (const env of envs) expect(await hostProcessesNaming(env.id)).toEqual([]);
  });

  it('refuses to boot an image without systemd, quoting its console, and leaves nothing', async () => {
    const before = (await driver.list()).map((e) => e.id);
    const err = await driver
      .open({ image: busyboxTarball(), driverOptions: { boot: true, startTimeoutMs: 20_000 } })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'DRIVER_UNAVAILABLE' });
    // busybox's own init boots, prints and waits on its console; systemctl is what is missing.
    expect((err as Error).message).toMatch(/did not boot: the image has no systemctl.*its console said:\n/s);
    expect((await driver.list()).map((e) => e.id)).toEqual(before);
  });
});

describe('nspawn boot mode', () => {
  it('boots systemd as PID 1, where commands can use systemctl', async () => {
    await using env = await driver.open({ image: systemdTarball(), driverOptions: { boot: true } });
    expect((await env.exec(['cat', '/proc/1/comm'])).stdout.trim()).toBe('systemd');
    const state = await env.exec(['systemctl', 'is-system-running']);
    expect(['running', 'degraded']).toContain(state.stdout.trim());
  });

  it('reports what the guest printed when it does not boot in time, and leaves nothing', async () => {
    const before = (await driver.list()).map((e) => e.id);
    const err = await driver
      .open({ image: systemdTarball(), driverOptions: { boot: true, startTimeoutMs: 150 } })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'TIMEOUT' });
    expect((err as Error).message).toMatch(/not ready after 150 ms|did not finish booting within 150 ms/);
    expect((await driver.list()).map((e) => e.id)).toEqual(before);
  });
});

describe('nspawn containers on networks', () => {
  const tag = randomBytes(3).toString('hex');

  it('puts two containers on a named network: they reach each other and a server at the gateway, not another network; close leaves no trace', async () => {
    const before = await hostSnapshot();
    const network = `nspawn-e2e-${tag}`;
    const other = `nspawn-e2e-other-${tag}`;
    const envs: Environment[] = [];
    onTestFinished(async () => {
      for (const env of envs) await env.close();
    });
    for (const name of [network, network, other])
      envs.push(await driver.open({ image: busyboxTarball(), network: name }));
    const [a, b, elsewhere] = envs as [Environment, Environment, Environment];
    const _gateway = await expectOneNetwork(new Networks(), network, [a, b], elsewhere);

    for (const env of envs.splice(0)) await env.close();
    const left = (await new Networks().list()).filter((n) => n.name === network || n.name === other);
    expect(left).toEqual([]);
    await expectNoNetLeft(before);
    for (const env of [a, b, elsewhere]) expect(await hostProcessesNaming(env.id)).toEqual([]);
  }, 180_000);

  it('boots systemd on the nat network, which reaches a server at the gateway', async () => {
    const env = await driver.open({ image: systemdTarball(), network: 'nat', driverOptions: { boot: true } });
    onTestFinished(() => env.close());
    expect(env.capabilities.has('network')).toBe(true);
    const nat = (await new Networks().list()).find((n) => n.name === 'nat');
    expect(nat?.holders).toContain(env.id);
    const gateway = nat?.gateway as string;
    expect((await env.exec(['cat', '/etc/resolv.conf'])).stdout).toBe(`nameserver ${gateway}\nsearch execenv\n`);
    const { port } = await helloServer(gateway);
    // The image has bash but no HTTP client: a request by hand over bash's /dev/tcp.
    const got = await env.exec([
      'bash',
      '-c',
      'exec 3<>"/dev/tcp/$1/$2" && printf "GET / HTTP/1.0\\r\\n\\r\\n" >&3 && cat <&3',
      'bash',
      gateway,
      String(port),
    ]);
    const subnetPrefix = gateway.replace(/\.\d+$/, '.');
    expect(got.stdout, got.stderr).toMatch(new RegExp(`hello ${subnetPrefix.replaceAll('.', '\\.')}\\d+\n$`));
    await env.close();
    expect((await new Networks().list()).find((n) => n.name === 'nat')?.holders ?? []).not.toContain(env.id);
  }, 240_000);

  it('collects the veth and network of an owner that died', async () => {
    const before = await hostSnapshot();
    const network = `nspawn-gc-${tag}`;
    const owner = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { NspawnDriver } from '@execenv/nspawn';
const [image, network] = process.argv.slice(1);
const env = await new NspawnDriver().open({ image, network });
console.log(env.id);
setInterval(() => {}, 60_000);`,
        busyboxTarball(),
        network,
      ],
      { cwd: new URL('..', import.meta.url).pathname, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    onTestFinished(async () => {
      owner.kill('SIGKILL');
      await driver.gc();
    });
    const id = await firstLine(owner);
    owner.kill('SIGKILL');
    await new Promise((resolve) => owner.once('exit', resolve));
    expect((await new Networks().list()).find((n) => n.name === network)?.holders).toEqual([id]);
    const report = await driver.gc();
    expect(report.removed).toContain(id);
    expect(report.errors).toEqual([]);
    expect((await new Networks().list()).find((n) => n.name === network)).toBeUndefined();
    await expectNoNetLeft(before);
    expect(await hostProcessesNaming(id)).toEqual([]);
  }, 120_000);
});

describe('nspawn images through the shared configuration', () => {
  it("open('nspawn', { image: 'index:…' }) takes its server, key and cache from the config file", async () => {
    // rootfs.tar.xz and meta.tar.xz, downloaded and verified, in the configured cache.
    await expectIndexThroughConfig('nspawn', 2);
  }, 120_000);
});
