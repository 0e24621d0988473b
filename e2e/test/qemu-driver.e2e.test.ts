import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { QemuDriver } from '@execenv/qemu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxTarball } from './fixtures.js';
import { qemuKernel } from './qemu-fixtures.js';

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
      await env.exec(['sh', '-c', 'echo kept > /root/mark; sleep 600 &']);
      const bootId = async () => (await env.exec(['cat', '/proc/sys/kernel/random/boot_id'])).stdout.trim();
      const first = await bootId();
      await env.reboot();
      expect(await bootId()).not.toBe(first);
      expect((await env.exec(['cat', '/root/mark'])).stdout).toBe('kept\n');
      expect((await env.exec(['sh', '-c', 'pgrep -f "sleep 600" || true'])).stdout).toBe('');
      await env.revert();
      expect((await env.exec(['sh', '-c', 'cat /root/mark 2>&1 || true'])).stdout).toMatch(/No such file/);
      expect(await qemuProcessesWith(env.id)).toHaveLength(1);
    } finally {
      await env.close();
    }
    expect(await qemuProcessesWith(env.id)).toEqual([]);
  });

  it('quotes the guest console when a guest cannot boot, and leaves nothing behind', async () => {
    // A disk with no filesystem: the guest's init cannot mount it and says so on the console.
    const blank = join(scratch, 'blank.raw');
    await writeFile(blank, Buffer.alloc(16 << 20));
    const failure = await driver.open({ image: blank }, { stateDir }).catch((err: unknown) => err);
    expect(failure).toMatchObject({ code: 'TRANSPORT', driver: 'qemu', op: 'open' });
    expect((failure as Error).message).toMatch(/execenv-init: cannot mount the root disk \/dev\/vda/);
    expect(await driver.list({ stateDir })).toEqual([]);
    expect(await readdir(join(stateDir, 'envs')).catch(() => [])).toEqual([]);
  });

  it('refuses what it cannot do before starting anything', async () => {
    await expect(driver.open({ image: busyboxTarball(), network: 'nat' }, { stateDir })).rejects.toMatchObject({
      code: 'INVALID_SPEC',
    });
    await expect(
      driver.open({ image: busyboxTarball(), resources: { memory: '64M' } }, { stateDir }),
    ).rejects.toMatchObject({ code: 'INVALID_SPEC' });
    await expect(driver.open({}, { stateDir })).rejects.toMatchObject({ code: 'INVALID_SPEC' });
    expect(await readdir(join(stateDir, 'leases')).catch(() => [])).toEqual([]);
  });
});
