import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ChrootDriver, type ChrootEnvironment } from '@execenv/chroot';
import { type ExecenvEvent, isRevertable, mountPoints, open, readLeases } from '@execenv/core';
import { DIRECTORY_CONVERTER_VERSION, ImageCache, RECENT_USE_MS, TREE_COMPLETE } from '@execenv/images';
import { Networks } from '@execenv/net';
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { busyboxTarball, minbaseTarball } from './fixtures.js';
import { envAddress, expectNoNetLeft, expectOneNetwork, firstLine, hostSnapshot } from './net-fixtures.js';

const run = promisify(execFile);
const driver = new ChrootDriver({ mode: 'root' });
let stateDir: string;
let cacheDir: string;

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'execenv-e2e-state-'));
  cacheDir = await mkdtemp(join(tmpdir(), 'execenv-e2e-cache-'));
});
afterAll(async () => {
  await rm(stateDir, { recursive: true, force: true });
  await rm(cacheDir, { recursive: true, force: true });
});

async function mountsUnderState(): Promise<string[]> {
  return (await mountPoints()).filter((m) => m.startsWith(stateDir));
}

describe('chroot driver on this host', () => {
  it('probes available in root mode with its reason and version', async () => {
    const a = await driver.probe();
    expect(a).toMatchObject({ available: true, details: { mode: 'root' } });
    expect(a.version).toMatch(/unshare from util-linux/);
    expect(a.capabilities).toContain('isolation-chroot');
  });

  it.each(['', '.gz', '.xz', '.zst', '.bz2'] as const)('opens the busybox rootfs compressed as "%s"', async (ext) => {
    const d = new ChrootDriver({ mode: 'root', cacheDir });
    await using env = await d.open({ image: busyboxTarball(ext) }, { stateDir });
    const r = await env.exec(['cat', '/etc/os-release']);
    expect(r.stdout).toContain('busybox fixture');
  });

  it('opens a directory image read-only: changes land in the overlay, never in the image', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'execenv-e2e-dir-'));
    try {
      await run('tar', ['-xf', busyboxTarball(), '-C', dir]);
      const before = await readdir(join(dir, 'tmp'));
      {
        await using env = await driver.open({ image: dir }, { stateDir });
        await env.exec(['sh', '-c', 'echo changed > /tmp/new; rm -f /bin/ls'], { check: true });
        expect((await env.exec(['cat', '/tmp/new'])).stdout).toBe('changed\n');
      }
      expect(await readdir(join(dir, 'tmp'))).toEqual(before);
      expect((await readdir(join(dir, 'bin'))).includes('ls')).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('reports progress events from open to destroy, converting an image only the first time', async () => {
    const fresh = new ChrootDriver({ mode: 'root', cacheDir: await mkdtemp(join(cacheDir, 'events-')) });
    const lifecycle = async () => {
      const events: ExecenvEvent[] = [];
      const env = await fresh.open({ image: busyboxTarball() }, { stateDir, onEvent: (e) => events.push(e) });
      await env.exec(['true']);
      await env.close();
      return events.map((e) => e.type);
    };
    const steps = ['create', 'ready', 'exec-start', 'exec-end', 'destroy'];
    expect(await lifecycle()).toEqual(['image-resolve', 'image-convert', ...steps]);
    expect(await lifecycle()).toEqual(['image-resolve', ...steps]);
  });

  it('mounts /proc, /dev and /dev/pts inside its own namespace only, and unmounts everything at close', async () => {
    const env = await driver.open({ image: busyboxTarball() }, { stateDir });
    const r = await env.exec(['sh', '-c', 'ls /dev; test -c /dev/null && echo null-ok; ls /proc | grep -c "^[0-9]"']);
    expect(r.stdout).toContain('null-ok');
    expect(r.stdout).toContain('pts');
    // A fresh pid namespace per exec: the shell, its ls and grep are the only processes it can see, with the init.
    expect(Number(r.stdout.trim().split('\n').at(-1))).toBeLessThanOrEqual(5);
    // The host sees the overlay and the network namespace; /proc, /sys and /dev exist only in the agent's namespace.
    const root = (await mountsUnderState()).filter((m) => m.includes(`/${env.id}/`));
    expect(root.map((m) => m.slice(m.lastIndexOf('/') + 1)).sort()).toEqual(['netns', 'root']);
    await env.close();
    expect(await mountsUnderState()).toEqual([]);
    expect(await readdir(join(stateDir, 'envs'))).toEqual([]);
  });

  it('reverts to the image with its mounts and network intact', async () => {
    await using env = await driver.open({ image: busyboxTarball() }, { stateDir });
    await env.exec(['sh', '-c', 'echo changed > /etc/hostname; rm /bin/ls; touch /tmp/new'], { check: true });
    if (!isRevertable(env)) throw new Error('the chroot driver declares revert');
    await env.revert();
    const r = await env.exec([
      'sh',
      '-c',
      'cat /etc/hostname; test -e /tmp/new || echo new-gone; test -c /dev/null && echo dev-ok; ls /bin/ls',
    ]);
    expect(r.stdout).toBe('busybox\nnew-gone\ndev-ok\n/bin/ls\n');
    expect((await env.exec(['ip', 'link', 'show', 'lo'])).stdout).toMatch(/<LOOPBACK,UP/);
  });

  it('copies the host resolv.conf and hosts in', async () => {
    await using env = await driver.open({ image: busyboxTarball() }, { stateDir });
    expect((await env.exec(['cat', '/etc/hosts'])).stdout).toBe(await readFile('/etc/hosts', 'utf8'));
  });

  it('runs i386 under the 32-bit personality', async () => {
    await using env = await driver.open({ image: busyboxTarball(), arch: 'i386' }, { stateDir });
    expect((await env.exec(['uname', '-m'])).stdout.trim()).toBe('i686');
  });

  it('gives the environment a network namespace of its own with loopback up, unless network is "host"', async () => {
    await using isolated = await driver.open({ image: busyboxTarball() }, { stateDir });
    await using shared = await driver.open({ image: busyboxTarball(), network: 'host' }, { stateDir });
    const count = async (e: typeof isolated) => (await e.exec(['sh', '-c', 'cat /proc/net/dev | wc -l'])).stdout.trim();
    expect(await count(isolated)).toBe('3');
    expect((await isolated.exec(['ip', 'link', 'show', 'lo'])).stdout).toMatch(/<LOOPBACK,UP/);
    // Every exec joins the same namespace: what one serves on loopback, another reaches.
    const server = isolated.spawn(['nc', '-l', '-p', '7777', '-e', 'echo', 'pong']);
    let reply = '';
    for (let i = 0; i < 50 && !reply.includes('pong'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      reply = (await isolated.exec(['sh', '-c', 'echo ping | nc 127.0.0.1 7777'], { timeout: 5000 })).stdout;
    }
    expect(reply).toContain('pong');
    server.kill();
    expect(shared.capabilities.has('network')).toBe(true);
    expect(Number(await count(shared))).toBeGreaterThan(3);
  });

  it('bind-mounts host directories, read-only when asked', async () => {
    const src = await mkdtemp(join(tmpdir(), 'execenv-e2e-mnt-'));
    try {
      await writeFile(join(src, 'hello'), 'from host');
      await using env = await driver.open(
        { image: busyboxTarball(), mounts: [{ source: src, target: '/mnt/in', readOnly: true }] },
        { stateDir },
      );
      expect((await env.exec(['cat', '/mnt/in/hello'])).stdout).toBe('from host');
      const w = await env.exec(['sh', '-c', 'echo x > /mnt/in/new']);
      expect(w.exitCode).not.toBe(0);
    } finally {
      await rm(src, { recursive: true, force: true });
    }
  });

  it('refuses what it cannot do before creating anything', async () => {
    const before = await readLeases(stateDir);
    await expect(driver.open({ image: busyboxTarball(), network: 'Not A Name' }, { stateDir })).rejects.toMatchObject({
      code: 'INVALID_SPEC',
      field: 'network',
    });
    // A rootless chroot cannot make the veth pair a network needs.
    await expect(
      new ChrootDriver({ mode: 'rootless' }).open({ image: busyboxTarball(), network: 'nat' }, { stateDir }),
    ).rejects.toMatchObject({ code: 'INVALID_SPEC', field: 'network', message: expect.stringMatching(/rootless/) });
    await expect(driver.open({ image: busyboxTarball(), arch: 'arm64' }, { stateDir })).rejects.toMatchObject({
      code: 'INVALID_SPEC',
      field: 'arch',
    });
    await expect(
      driver.open({ image: busyboxTarball(), resources: { memory: '1G' } }, { stateDir }),
    ).rejects.toMatchObject({
      code: 'UNSUPPORTED',
    });
    await expect(driver.open({ image: '/nonexistent/rootfs.tar' }, { stateDir })).rejects.toMatchObject({
      code: 'IMAGE_NOT_FOUND',
    });
    expect(await readLeases(stateDir)).toEqual(before);
    expect(await mountsUnderState()).toEqual([]);
  });

  it('refuses a hostile rootfs tarball and writes nothing outside the cache', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'execenv-e2e-hostile-'));
    const marker = `execenv-escape-${process.pid}`;
    try {
      await writeFile(join(dir, 'x'), 'x');
      // GNU tar keeps a leading ../ with --transform tricks only through -P: build the member name directly.
      await run('tar', ['-C', dir, '-cf', join(dir, 'evil.tar'), '-P', '--transform', `s|^x$|../../${marker}|`, 'x']);
      const d = new ChrootDriver({ mode: 'root', cacheDir });
      await expect(d.open({ image: join(dir, 'evil.tar') }, { stateDir })).rejects.toMatchObject({
        code: 'UNSAFE_PATH',
      });
      expect(
        (await readdir(join(cacheDir, 'images', 'converted', `directory-v${DIRECTORY_CONVERTER_VERSION}`))).filter(
          (x) => x.includes('.tmp'),
        ),
      ).toEqual([]);
      await expect(readFile(join(cacheDir, '..', marker))).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('keeps the extracted image through a cache prune while an environment runs on it, and lets it go after', async () => {
    const dir = await mkdtemp(join(cacheDir, 'prune-'));
    const cache = new ImageCache({ dir: join(dir, 'images') });
    const d = new ChrootDriver({ mode: 'root', cacheDir: dir });
    const env = await d.open({ image: busyboxTarball() }, { stateDir });
    const [tree] = await cache.listTrees();
    expect(tree?.inUse).toBe(true);
    // Out of the recent-use window: only the hold can keep it now.
    const old = new Date(Date.now() - 2 * RECENT_USE_MS);
    await utimes(join(tree!.path, TREE_COMPLETE), old, old);
    expect(await cache.prune(0)).toEqual([]);
    expect((await env.exec(['cat', '/etc/os-release'])).stdout).toContain('busybox fixture');
    await env.close();
    expect((await cache.listTrees())[0]?.inUse).toBe(false);
    expect((await cache.prune(0)).map((e) => e.digest)).toContain(tree!.digest);
    expect(await cache.listTrees()).toEqual([]);
  });

  it('is found by name through the registry without importing it', async () => {
    await using env = await open('chroot', { image: busyboxTarball() }, { stateDir });
    expect(env.driver).toBe('chroot');
  });

  it('gives commands pipes, so /dev/stdin opens as under a shell', async () => {
    await using env = await driver.open({ image: busyboxTarball() }, { stateDir });
    const r = await env.exec(['sh', '-c', 'cat /dev/stdin; ls -l /proc/self/fd/1'], { stdin: 'piped in', check: true });
    expect(r.stdout).toMatch(/^piped in.*pipe:/s);
  });

  it('opens the Debian minbase rootfs and runs dpkg', async () => {
    await using env = await driver.open({ image: minbaseTarball() }, { stateDir });
    const r = await env.exec(['dpkg-query', '-W', 'dpkg'], { check: true });
    expect(r.stdout).toMatch(/^dpkg\t/);
  });
});

/** Host pids whose command line contains every one of `words`. */
async function processesWith(...words: string[]): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    const args = cmdline.split('\0');
    if (words.every((w) => args.some((a) => a.includes(w)))) pids.push(Number(entry));
  }
  return pids;
}

/** Host pids running exactly `argv` (the owner's own command line, which names it too, does not count). */
async function processesRunning(...argv: string[]): Promise<number[]> {
  const want = `${argv.join('\0')}\0`;
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    if ((await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')) === want) pids.push(Number(entry));
  }
  return pids;
}

/** Polls until `check` holds, for up to `ms`. */
async function eventually(check: () => Promise<boolean>, ms = 10_000): Promise<boolean> {
  for (const deadline = Date.now() + ms; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50)))
    if (await check()) return true;
  return check();
}

const SLEEP_MARK = '31337';

describe('cleanup when the owner goes away', () => {
  const child = (mode: string) => `
    import { ChrootDriver } from '@execenv/chroot';
    const env = await new ChrootDriver({ mode: '${mode}' }).open({ image: process.env.IMAGE }, { stateDir: process.env.STATE });
    env.exec(['sleep', '${SLEEP_MARK}']).catch(() => {});
    console.log(env.id);
    setInterval(() => {}, 1000);
  `;

  const children: ChildProcess[] = [];
  // A failed check must not leave an owner alive: kill it, then collect what it left.
  afterEach(async () => {
    for (const p of children.splice(0))
      if (p.exitCode === null && p.signalCode === null) {
        const exited = new Promise((r) => p.once('exit', r));
        p.kill('SIGKILL');
        await exited;
      }
    await driver.gc({ stateDir });
  });

  async function openInChild(mode: string) {
    const p = spawn(process.execPath, ['--input-type=module', '-e', child(mode)], {
      env: { ...process.env, IMAGE: busyboxTarball(), STATE: stateDir },
      stdio: ['ignore', 'pipe', 'inherit'],
      cwd: new URL('..', import.meta.url).pathname,
    });
    children.push(p);
    const id = await new Promise<string>((resolve, reject) => {
      p.stdout.once('data', (c: Buffer) => resolve(c.toString().trim()));
      p.once('exit', (code) => reject(new Error(`child exited ${code}`)));
    });
    return { p, id };
  }

  it('closes open environments on SIGTERM', async () => {
    const { p, id } = await openInChild('root');
    expect((await driver.list({ stateDir })).map((e) => e.id)).toContain(id);
    const exited = new Promise((r) => p.once('exit', (_code, signal) => r(signal)));
    p.kill('SIGTERM');
    expect(await exited).toBe('SIGTERM');
    expect((await driver.list({ stateDir })).map((e) => e.id)).not.toContain(id);
    expect(await mountsUnderState()).toEqual([]);
  });

  it.each(['root', 'rootless'])('gc removes what a SIGKILLed owner left (%s mode)', async (mode) => {
    const { p, id } = await openInChild(mode);
    expect(await eventually(async () => (await processesRunning('sleep', SLEEP_MARK)).length === 1)).toBe(true);
    // The agent, and for the running command its supervisor and the namespace's init: forks share the command line.
    expect((await processesWith('execenv-agent', id)).length).toBeGreaterThan(0);
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
    // The running command and the agent die with their owner, before any gc.
    expect(await eventually(async () => (await processesRunning('sleep', SLEEP_MARK)).length === 0)).toBe(true);
    expect(await eventually(async () => (await processesWith('execenv-agent', id)).length === 0)).toBe(true);
    const left = (await driver.list({ stateDir })).find((e) => e.id === id);
    expect(left).toMatchObject({ ownerAlive: false });
    expect(left?.resources.length).toBeGreaterThan(0);
    const report = await driver.gc({ stateDir });
    expect(report).toEqual({ removed: [id], errors: [] });
    expect(await driver.list({ stateDir })).toEqual([]);
    expect(await mountsUnderState()).toEqual([]);
    expect(await readdir(join(stateDir, 'envs'))).toEqual([]);
  });
});

describe('chroot environments on networks', () => {
  const tag = randomBytes(3).toString('hex');

  it('puts two environments on a named network: they reach each other and a server at the gateway, not another network; close leaves no trace', async () => {
    const before = await hostSnapshot();
    const network = `chroot-e2e-${tag}`;
    const envs: ChrootEnvironment[] = [];
    onTestFinished(async () => {
      for (const env of envs) await env.close();
    });
    for (const name of [network, network, `chroot-e2e-other-${tag}`])
      envs.push(await driver.open({ image: busyboxTarball(), network: name }, { stateDir }));
    const [a, b, elsewhere] = envs as [ChrootEnvironment, ChrootEnvironment, ChrootEnvironment];
    const gateway = await expectOneNetwork(new Networks({ stateDir }), network, [a, b], elsewhere);
    const addressA = await envAddress(a);

    // Revert empties the overlay: the network's resolv.conf is written again, the namespace and its address stay.
    await a.revert();
    expect((await a.exec(['cat', '/etc/resolv.conf'])).stdout).toBe(`nameserver ${gateway}\nsearch execenv\n`);
    expect(await envAddress(a)).toBe(addressA);

    for (const env of envs.splice(0)) await env.close();
    expect((await new Networks({ stateDir }).list()).map((n) => n.name)).toEqual([]);
    await expectNoNetLeft(before);
    expect(await mountsUnderState()).toEqual([]);
  }, 180_000);

  it('collects the veth and network of an owner that died', async () => {
    const before = await hostSnapshot();
    const network = `chroot-gc-${tag}`;
    const owner = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { ChrootDriver } from '@execenv/chroot';
const [image, network, stateDir] = process.argv.slice(1);
const env = await new ChrootDriver({ mode: 'root' }).open({ image, network }, { stateDir });
console.log(env.id);
setInterval(() => {}, 60_000);`,
        busyboxTarball(),
        network,
        stateDir,
      ],
      { cwd: new URL('..', import.meta.url).pathname, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    onTestFinished(async () => {
      owner.kill('SIGKILL');
      await driver.gc({ stateDir });
    });
    const id = await firstLine(owner);
    owner.kill('SIGKILL');
    await new Promise((resolve) => owner.once('exit', resolve));
    expect((await new Networks({ stateDir }).list()).find((n) => n.name === network)?.holders).toEqual([id]);
    const report = await driver.gc({ stateDir });
    expect(report.removed).toContain(id);
    expect(report.errors).toEqual([]);
    expect(await new Networks({ stateDir }).list()).toEqual([]);
    await expectNoNetLeft(before);
    expect(await mountsUnderState()).toEqual([]);
  }, 120_000);
});
