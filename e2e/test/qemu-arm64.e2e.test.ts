import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QemuDriver } from '@execenv/qemu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { arm64Fixtures } from './qemu-fixtures.js';

const fixtures = arm64Fixtures();
if ('missing' in fixtures) console.log(`qemu arm64 e2e skipped: ${fixtures.missing}`);

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

describe.skipIf('missing' in fixtures)('qemu driver, arm64 guest under qemu-system-aarch64', () => {
  const { kernel, busybox, rootfs } = fixtures as Exclude<typeof fixtures, { missing: string }>;
  // TCG on a shared 2-core host: a boot takes about 5 s when idle, much longer when other guests run.
  const driver = new QemuDriver({ arch: 'arm64', kernel, busybox, bootTimeoutMs: 600_000 });
  let stateDir: string;
  let scratch: string;
  beforeAll(async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'execenv-qemu-arm64-state-'));
    scratch = await mkdtemp(join(tmpdir(), 'execenv-qemu-arm64-'));
  });
  afterAll(async () => {
    await rm(stateDir, { recursive: true, force: true });
    await rm(scratch, { recursive: true, force: true });
  });

  it('is available, under TCG on a host of another architecture, and says why', async () => {
    const probe = await driver.probe();
    expect(probe.available, probe.reason).toBe(true);
    expect(probe.version).toMatch(/QEMU emulator version/);
    if (process.arch !== 'arm64') {
      expect(probe.details?.accel).toBe('tcg');
      expect(probe.reason).toMatch(/^an arm64 guest on an amd64 host: software emulation \(TCG\)/);
    }
  });

  it('runs commands and moves files in an aarch64 guest, and leaves nothing on close', async () => {
    const warnings: string[] = [];
    const env = await driver.open(
      { image: rootfs, arch: 'arm64' },
      { stateDir, onEvent: (e) => e.type === 'warning' && warnings.push(e.message) },
    );
    try {
      if (process.arch !== 'arm64') expect(warnings).toEqual([expect.stringMatching(/^qemu: an arm64 guest/)]);
      expect((await env.exec(['uname', '-m'])).stdout).toBe('aarch64\n');
      const piped = await env.exec(['sh', '-c', 'tr a-z A-Z; echo oops >&2; exit 3'], { stdin: 'from stdin\n' });
      expect([piped.stdout, piped.stderr, piped.exitCode]).toEqual(['FROM STDIN\n', 'oops\n', 3]);

      await env.push(new TextEncoder().encode('one file\n'), '/root/file.txt');
      const file = join(scratch, 'file.txt');
      await env.pull('/root/file.txt', file);
      expect(await readFile(file, 'utf8')).toBe('one file\n');

      const dir = join(scratch, 'dir');
      await mkdir(join(dir, 'sub'), { recursive: true });
      await writeFile(join(dir, 'a.txt'), 'a\n');
      await writeFile(join(dir, 'sub', 'b.txt'), 'b\n');
      await env.push(dir, '/work/dir');
      expect((await env.exec(['cat', '/work/dir/a.txt', '/work/dir/sub/b.txt'])).stdout).toBe('a\nb\n');
      await env.exec(['sh', '-c', 'echo c > /work/dir/sub/c.txt'], { check: true });
      const back = join(scratch, 'back');
      await env.pull('/work/dir', back);
      expect((await readdir(back, { recursive: true })).sort()).toEqual(['a.txt', 'sub', 'sub/b.txt', 'sub/c.txt']);
      expect(await readFile(join(back, 'sub', 'c.txt'), 'utf8')).toBe('c\n');
      expect(await qemuProcessesWith(env.id)).toHaveLength(1);
    } finally {
      await env.close();
    }
    expect(await qemuProcessesWith(env.id)).toEqual([]);
    expect(await driver.list({ stateDir })).toEqual([]);
    expect(await readdir(join(stateDir, 'envs')).catch(() => [])).toEqual([]);
  });

  it('refuses an amd64 image before starting a guest', async () => {
    const amd64 = process.env.EXECENV_FIXTURE_BUSYBOX;
    if (!amd64)
      throw new Error('EXECENV_FIXTURE_BUSYBOX is not set: run through vitest (global-setup builds fixtures)');
    await expect(driver.open({ image: amd64 }, { stateDir })).rejects.toMatchObject({
      code: 'INVALID_SPEC',
      field: 'image',
      message: expect.stringMatching(/holds amd64 programs .* boots arm64 guests/),
    });
    expect(await driver.list({ stateDir })).toEqual([]);
  });
});
