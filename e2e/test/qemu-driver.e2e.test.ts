import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createTcpServer } from 'node:net';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Environment, isSnapshottable } from '@execenv/core';
import { Networks } from '@execenv/net';
import { QemuDriver } from '@execenv/qemu';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { busyboxTarball } from './fixtures.js';
import { expectNoNetLeft, expectOneNetwork, firstLine, helloServer, hostSnapshot, netLines } from './net-fixtures.js';
import { qemuKernel } from './qemu-fixtures.js';

const E2E_DIR = fileURLToPath(new URL('..', import.meta.url));
let stateDir: string;
let scratch: string;
beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'execenv-qemu-e2e-state-'));
  scratch = await mkdtemp(join(tmpdir(), 'execenv-qemu-e2e-'));
});
afterAll(async () => {
  await rm(stateDir, { recursive: true, force: true });
  await rm(scratch, { recursive: true, force: true });
});

/** Pids of QEMU processes whose command line names `needle`. */
async function qemuProcessesWith(needle: string): Promise<number[]> {
  const found: number[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.startsWith('qemu-system') && cmdline.includes(needle)) found.push(Number(pid));
  }
  return found;
}

describe('qemu driver on this host', () => {
  const driver = new QemuDriver({ kernel: qemuKernel() });

  it('says which accelerator it uses and why', async () => {
    const probe = await driver.probe();
    expect(probe.available).toBe(true);
    expect(['kvm', 'tcg']).toContain(probe.details?.accel);
    expect(probe.reason).toMatch(/KVM|TCG/);
    console.log(`qemu driver: ${probe.version}; ${probe.reason}`);
    // KVM is chosen by starting QEMU with it: where the CPU cannot virtualise, QEMU itself says why not.
    if (!/^flags\s*:.*\b(vmx|svm)\b/m.test(await readFile('/proc/cpuinfo', 'utf8'))) {
      expect(probe.details?.accel).toBe('tcg');
      expect(probe.reason).toMatch(
        /^KVM does not work here \(.*(qemu-system-x86_64: |KVM).*\): software emulation \(TCG\)$/,
      );
    }
  });

  it('runs commands in a guest with its own kernel, and removes the VM and its files on close', async () => {
    const warnings: string[] = [];
    const env = await driver.open(
      { image: busyboxTarball(), resources: { cpu: 2, memory: '384M' } },
      { stateDir, onEvent: (e) => e.type === 'warning' && warnings.push(e.message) },
    );
    try {
      const guest = await env.exec(['sh', '-c', 'uname -r; nproc; grep MemTotal /proc/meminfo; cat /proc/1/cmdline']);
      const [kernelRelease, cpus, memory, init] = guest.stdout.split('\n');
      expect(kernelRelease).not.toBe(release());
      expect(kernelRelease).toMatch(/^\d+\.\d+/);
      expect(cpus).toBe('2');
      expect(Number(/(\d+) kB/.exec(memory!)?.[1])).toBeGreaterThan(300_000);
      expect(init).toMatch(/execenv-agent/);
      await env.push(new TextEncoder().encode('from the host\n'), '/root/hello.txt');
      const back = join(scratch, 'hello.txt');
      await env.pull('/root/hello.txt', back);
      expect(await readFile(back, 'utf8')).toBe('from the host\n');
      expect((await driver.list({ stateDir })).map((e) => e.id)).toEqual([env.id]);
      expect(await qemuProcessesWith(env.id)).toHaveLength(1);
    } finally {
      await env.close();
    }
    expect(await qemuProcessesWith(env.id)).toEqual([]);
    expect(await driver.list({ stateDir })).toEqual([]);
    expect(await readdir(join(stateDir, 'envs')).catch(() => [])).toEqual([]);
    if ((await driver.probe()).details?.accel === 'tcg') expect(warnings.join('\n')).toMatch(/TCG/);
  });

  it('reboots keeping the disk, and reverts to the image', async () => {
    const env = await driver.open({ image: busyboxTarball() }, { stateDir });
    try {
      await env.exec(['sh', '-c', 'echo kept > /root/mark']);
      // Each command has a process namespace of its own: what runs is watched through its handle.
      const background = env.spawn(['sleep', '600']);
      background.stdout.resume();
      background.stderr.resume();
      const bootId = async () => (await env.exec(['cat', '/proc/sys/kernel/random/boot_id'])).stdout.trim();
      const first = await bootId();
      await env.reboot();
      expect(await bootId()).not.toBe(first);
      expect((await env.exec(['cat', '/root/mark'])).stdout).toBe('kept\n');
      expect((await background.result).signal).toBe('SIGKILL');
      await env.revert();
      expect((await env.exec(['sh', '-c', 'cat /root/mark 2>&1 || true'])).stdout).toMatch(/No such file/);
      expect(await qemuProcessesWith(env.id)).toHaveLength(1);
    } finally {
      await env.close();
    }
    expect(await qemuProcessesWith(env.id)).toEqual([]);
  });

  it('snapshots the disk while the guest runs, and restores it by booting again', async () => {
    const env = await driver.open({ image: busyboxTarball() }, { stateDir });
    try {
      expect(isSnapshottable(env)).toBe(true);
      const sh = async (script: string) => (await env.exec(['sh', '-c', script], { check: true })).stdout;
      await sh('echo as snapshotted > /root/state; echo here > /root/other');
      // Each command has a process namespace of its own: what runs is watched through its handle.
      const background = env.spawn(['sleep', '601']);
      background.stdout.resume();
      background.stderr.resume();
      const bootId = await sh('cat /proc/sys/kernel/random/boot_id');
      await env.snapshot('before');
      // Taken live: the guest and what runs in it go on.
      expect(await sh('cat /proc/sys/kernel/random/boot_id')).toBe(bootId);
      const stillRunning = await Promise.race([
        background.result.then(() => false),
        new Promise((resolve) => setTimeout(() => resolve(true), 500)),
      ]);
      expect(stillRunning).toBe(true);
      await sh('echo changed > /root/state; rm /root/other; echo new > /root/new');
      await env.restore('before');
      expect(await sh('cat /proc/sys/kernel/random/boot_id')).not.toBe(bootId);
      expect(await sh('cat /root/state /root/other')).toBe('as snapshotted\nhere\n');
      expect(await sh('cat /root/new 2>&1 || true')).toMatch(/No such file/);
      expect((await background.result).signal).toBe('SIGKILL');
      await expect(env.restore('never-taken')).rejects.toMatchObject({ code: 'NOT_FOUND', op: 'restore' });
      await expect(env.snapshot('not/a/name')).rejects.toMatchObject({ code: 'INVALID_SPEC', field: 'name' });
      expect(await qemuProcessesWith(env.id)).toHaveLength(1);
    } finally {
      await env.close();
    }
    expect(await qemuProcessesWith(env.id)).toEqual([]);
  });

  it('boots a q35 machine (virtio-pci) and runs a command in it', async () => {
    const q35 = new QemuDriver({ kernel: qemuKernel(), machine: 'q35' });
    const env = await q35.open({ image: busyboxTarball() }, { stateDir });
    try {
      const r = await env.exec(['sh', '-c', 'cat /sys/class/dmi/id/product_name; ls /sys/bus/pci/devices | wc -l'], {
        check: true,
      });
      const [product, pciDevices] = r.stdout.trim().split('\n');
      expect(product).toMatch(/Q35/);
      expect(Number(pciDevices)).toBeGreaterThan(2);
    } finally {
      await env.close();
    }
    expect(await qemuProcessesWith(env.id)).toEqual([]);
  });

  it('quotes the guest console when a guest cannot boot, and leaves nothing behind', async () => {
    // A disk with no filesystem: the guest's init cannot mount it and says so on the console.
    const blank = join(scratch, 'blank.raw');
    await writeFile(blank, Buffer.alloc(16 << 20));
    const before = await hostSnapshot();
    const network = `qemu-fail-${randomBytes(3).toString('hex')}`;
    const failure = await driver.open({ image: blank, network }, { stateDir }).catch((err: unknown) => err);
    expect(failure).toMatchObject({ code: 'TRANSPORT', driver: 'qemu', op: 'open' });
    expect((failure as Error).message).toMatch(/execenv-init: cannot mount the root disk \/dev\/vda/);
    expect(await driver.list({ stateDir })).toEqual([]);
    expect(await readdir(join(stateDir, 'envs')).catch(() => [])).toEqual([]);
    // The rollback released the guest's tap and address, and the network went with them.
    expect(await new Networks({ stateDir }).list()).toEqual([]);
    expect(netLines((await hostSnapshot()).link)).toEqual(netLines(before.link));
  });

  it('refuses what it cannot do before starting anything', async () => {
    await expect(driver.open({ image: busyboxTarball(), network: 'host' }, { stateDir })).rejects.toMatchObject({
      code: 'INVALID_SPEC',
      field: 'network',
    });
    const badForward = { userNetwork: { forwards: [{ hostPort: 70000, guestPort: 80 }] } };
    await expect(
      driver.open({ image: busyboxTarball(), network: 'nat', driverOptions: badForward }, { stateDir }),
    ).rejects.toMatchObject({ code: 'INVALID_SPEC', field: 'driverOptions.userNetwork.forwards[0].hostPort' });
    await expect(
      driver.open({ image: busyboxTarball(), resources: { memory: '64M' } }, { stateDir }),
    ).rejects.toMatchObject({ code: 'INVALID_SPEC' });
    await expect(driver.open({}, { stateDir })).rejects.toMatchObject({ code: 'INVALID_SPEC' });
    expect(await readdir(join(stateDir, 'leases')).catch(() => [])).toEqual([]);
  });
});

/** A TCP port on 127.0.0.1 that was free a moment ago. */
async function freeLoopbackPort(): Promise<number> {
  const probe = createTcpServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as { port: number }).port;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** The guest's global IPv4 address on eth0. */
async function guestAddress(env: Environment): Promise<string> {
  const r = await env.exec(['ip', '-o', '-4', 'addr', 'show', 'dev', 'eth0', 'scope', 'global']);
  return /inet (\S+)\//.exec(r.stdout)?.[1] ?? `none in ${JSON.stringify(r.stdout)}`;
}

describe('qemu guests on networks', () => {
  const driver = new QemuDriver({ kernel: qemuKernel() });
  const tag = randomBytes(3).toString('hex');

  it('puts two guests on a named network: they reach each other and a server at the gateway; close leaves no trace', async () => {
    const before = await hostSnapshot();
    const network = `qemu-e2e-${tag}`;
    const envs: Environment[] = [];
    onTestFinished(async () => {
      for (const env of envs) await env.close();
    });
    for (let i = 0; i < 2; i++) envs.push(await driver.open({ image: busyboxTarball(), network }, { stateDir }));
    const [a, b] = envs as [Environment, Environment];
    await expectOneNetwork(new Networks({ stateDir }), network, [a, b]);
    const [info] = (await new Networks({ stateDir }).list()).filter((n) => n.name === network);

    for (const env of envs.splice(0)) await env.close();
    expect(await new Networks({ stateDir }).list()).toEqual([]);
    const after = await hostSnapshot();
    await expectNoNetLeft(before);
    expect(after.nft).not.toContain(info?.bridge as string);
    expect(await qemuProcessesWith(a.id)).toEqual([]);
    expect(await driver.list({ stateDir })).toEqual([]);
  }, 240_000);

  it('collects the guest, tap and network of an owner that died', async () => {
    const before = await hostSnapshot();
    const network = `qemu-gc-${tag}`;
    const owner = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { QemuDriver } from '@execenv/qemu';
const [kernel, image, network, stateDir] = process.argv.slice(1);
const env = await new QemuDriver({ kernel }).open({ image, network }, { stateDir });
console.log(env.id);
setInterval(() => {}, 60_000);`,
        qemuKernel(),
        busyboxTarball(),
        network,
        stateDir,
      ],
      { cwd: E2E_DIR, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    onTestFinished(async () => {
      owner.kill('SIGKILL');
      await driver.gc({ stateDir });
    });
    const id = await firstLine(owner);
    owner.kill('SIGKILL');
    await new Promise((resolve) => owner.once('exit', resolve));
    expect(await qemuProcessesWith(id)).toHaveLength(1);
    expect((await new Networks({ stateDir }).list()).find((n) => n.name === network)?.holders).toEqual([id]);
    const report = await driver.gc({ stateDir });
    expect(report).toEqual({ removed: [id], errors: [] });
    expect(await qemuProcessesWith(id)).toEqual([]);
    expect(await new Networks({ stateDir }).list()).toEqual([]);
    const after = await hostSnapshot();
    expect(netLines(after.link)).toEqual(netLines(before.link));
    expect(netLines(after.nft)).toEqual(netLines(before.nft));
  }, 180_000);

  it('reaches the host through QEMU user networking, and forwards a host port into the guest', async () => {
    const before = await hostSnapshot();
    const { port } = await helloServer('127.0.0.1');
    const hostPort = await freeLoopbackPort();
    const env = await driver.open(
      {
        image: busyboxTarball(),
        network: 'nat',
        driverOptions: { userNetwork: { forwards: [{ hostPort, guestPort: 8080 }] } },
      },
      { stateDir },
    );
    onTestFinished(() => env.close());
    expect([...env.capabilities]).toEqual(expect.arrayContaining(['network', 'port-forwarding']));
    expect(await guestAddress(env)).toBe('10.0.2.15');
    expect((await env.exec(['cat', '/etc/resolv.conf'])).stdout).toBe('nameserver 10.0.2.3\n');
    // 10.0.2.2 is the host's loopback, seen from the guest through slirp.
    const got = await env.exec(['wget', '-q', '-O', '-', `http://10.0.2.2:${port}/`]);
    expect(got.stdout, got.stderr).toBe('hello 127.0.0.1\n');

    await env.exec(['sh', '-c', 'mkdir -p /tmp/www && echo from the guest > /tmp/www/index.html']);
    // In the foreground until the revert ends it with the guest.
    const httpd = env.exec(['httpd', '-f', '-p', '8080', '-h', '/tmp/www']).catch((err: Error) => err);
    let body = '';
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      body = await fetch(`http://127.0.0.1:${hostPort}/`, { signal: AbortSignal.timeout(5000) })
        .then((r) => r.text())
        .catch((err: Error) => err.message);
      if (body === 'from the guest\n') break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(body).toBe('from the guest\n');
    // A revert boots on a fresh overlay: init configures the interface and resolv.conf again.
    await env.revert();
    await httpd;
    expect(await guestAddress(env)).toBe('10.0.2.15');
    expect((await env.exec(['cat', '/etc/resolv.conf'])).stdout).toBe('nameserver 10.0.2.3\n');
    expect((await env.exec(['wget', '-q', '-O', '-', `http://10.0.2.2:${port}/`])).stdout).toBe('hello 127.0.0.1\n');
    await env.close();
    expect(await qemuProcessesWith(env.id)).toEqual([]);
    expect(await fetch(`http://127.0.0.1:${hostPort}/`).catch(() => 'refused')).toBe('refused');
    // User networking changes nothing on the host.
    const after = await hostSnapshot();
    expect(netLines(after.link)).toEqual(netLines(before.link));
    expect(netLines(after.nft)).toEqual(netLines(before.nft));
  }, 180_000);
});
