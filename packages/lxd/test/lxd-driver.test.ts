import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LxdDriver } from '../src/lxd-driver.js';
import { FakeLxd } from './fake-lxd.js';

let fake: FakeLxd;
let dir: string;
let driver: LxdDriver;

beforeEach(async () => {
  fake = await FakeLxd.start();
  dir = await mkdtemp(join(tmpdir(), 'execenv-lxd-test-'));
  driver = new LxdDriver({
    endpoint: { socketPath: fake.socketPath },
    stateDir: join(dir, 'state'),
    cacheDir: join(dir, 'cache'),
  });
});
afterEach(async () => {
  (await driver.client()).close();
  await fake.stop();
  await rm(dir, { recursive: true, force: true });
});

const open = { closeOnSignal: false };

describe('LxdDriver.open', () => {
  it('creates a profile and an ephemeral container from an lxd: alias, starts it and waits until it runs commands', async () => {
    const env = await driver.open(
      { image: 'lxd:debian', resources: { cpu: 2, memory: '512M' }, env: { A: 'b' } },
      open,
    );
    expect(fake.calls().slice(0, 5)).toEqual(
      [
        'POST /1.0/profiles',
        'POST /1.0/instances',
        `PUT /1.0/instances/${env.id}/state`,
        `POST /1.0/instances/${env.id}/exec`,
      ].concat(fake.calls()[4] ? [fake.calls()[4]!] : []),
    );
    const profile = fake.requests.find((r) => r.path === '/1.0/profiles')!.json as Record<
      string,
      Record<string, string>
    >;
    expect(profile.config).toMatchObject({
      'limits.cpu': '2',
      'limits.memory': `${512 * 1024 * 1024}B`,
      'security.privileged': 'false',
      'user.execenv.id': env.id,
      'user.execenv.host': hostname(),
    });
    expect(profile.config!['user.execenv.owner']).toMatch(new RegExp(`^${process.pid}:\\d+$`));
    expect(profile.config!['raw.lxc']).toBeUndefined();
    const instance = fake.requests.find((r) => r.path === '/1.0/instances' && r.method === 'POST')!.json;
    expect(instance).toMatchObject({
      name: env.id,
      type: 'container',
      ephemeral: true,
      profiles: ['default', env.id],
      source: { type: 'image', alias: 'debian' },
    });
    expect(fake.requests.find((r) => r.path.endsWith('/state'))!.json).toEqual({ action: 'start', timeout: 30 });
    expect(env.capabilities.has('isolation-container')).toBe(true);
    await env.close();
    expect(fake.instances.size).toBe(0);
    expect(fake.profiles.size).toBe(0);
    expect(await driver.list()).toEqual([]);
  });

  it('runs commands under the session supervisor with the spec env under the exec env', async () => {
    const seen: string[][] = [];
    fake.exec = (cmd, _stdin, body) => {
      seen.push(cmd);
      return { stdout: JSON.stringify(body.environment), status: 0 };
    };
    const env = await driver.open({ image: 'lxd:debian', env: { A: 'spec', B: 'spec' } }, open);
    const r = await env.exec(['printenv'], { env: { B: 'exec' } });
    expect(seen.at(-1)!.slice(0, 2)).toEqual(['sh', '-c']);
    expect(seen.at(-1)!.slice(3)).toEqual(['sh', 'printenv']);
    expect(JSON.parse(r.stdout)).toMatchObject({ A: 'spec', B: 'exec' });
    expect(r.stderr).toBe('');
    await env.close();
  });

  it("kills the command's session inside the instance on timeout", async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const killers: string[][] = [];
    fake.exec = async (cmd) => {
      if (cmd.includes('sleep')) {
        await held;
        return { status: 137 };
      }
      if (String(cmd[2]).startsWith('kill')) {
        killers.push(cmd);
        release();
      }
      return { status: 0 };
    };
    const env = await driver.open({ image: 'lxd:debian' }, open);
    const r = await env.exec(['sleep', '60'], { timeout: 100 });
    expect(r.timedOut).toBe(true);
    expect(killers).toEqual([
      ['sh', '-c', 'kill -9 -"$1" 2>/dev/null; kill -9 "$1" 2>/dev/null; exit 0', 'sh', '4242'],
    ]);
    await env.close();
  });

  it('gives rootfs tarball images an init that only keeps the container up', async () => {
    const { profileRequest } = await import('../src/lxd-instance-config.js');
    const p = profileRequest(
      { id: 'e', owner: '1:2', host: 'h' },
      { image: '/x.tar', driverOptions: { rawLxc: ['lxc.apparmor.profile = unconfined'] } },
      {
        init: ['/bin/sleep', 'infinity'],
      },
    );
    expect(p.config['raw.lxc']).toBe(
      'lxc.apparmor.profile = unconfined\nlxc.init.cmd = /bin/sleep infinity\nlxc.signal.halt = SIGKILL',
    );
  });

  it('refuses bad driver options before anything is created', async () => {
    const err = await driver
      .open({ image: 'lxd:debian', driverOptions: { type: 'jail' as 'container' } }, open)
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'INVALID_SPEC', field: 'driverOptions.type' });
    const noImage = await driver.open({}, open).catch((e: unknown) => e);
    expect(noImage).toMatchObject({ code: 'INVALID_SPEC', field: 'image' });
    expect(fake.calls()).toEqual([]);
  });

  it('removes what it created when the instance cannot be created', async () => {
    const err = await driver.open({ image: 'rootfs-as-disk.img' }, open).catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBeDefined();
    expect(fake.instances.size).toBe(0);
    expect(fake.profiles.size).toBe(0);
  });
});

describe('LxdDriver files', () => {
  it('pushes bytes with owner and mode through the files API and pulls them back', async () => {
    const env = await driver.open({ image: 'lxd:debian' }, open);
    await env.push(new TextEncoder().encode('owned'), '/tmp/f', { mode: 0o640, uid: 1234, gid: 2345 });
    expect(fake.files.get('/tmp/f')).toMatchObject({ type: 'file', uid: 1234, gid: 2345, mode: 0o640 });
    const dest = join(dir, 'pulled');
    await env.pull('/tmp/f', dest);
    const { readFile, stat } = await import('node:fs/promises');
    expect(await readFile(dest, 'utf8')).toBe('owned');
    expect((await stat(dest)).mode & 0o777).toBe(0o640);
    const missing = await env.pull('/tmp/none', join(dir, 'x')).catch((e: unknown) => e);
    expect(missing).toMatchObject({ code: 'NOT_FOUND' });
    await env.close();
  });

  it('stats through the files API first, then stat(1) inside for size and special bits', async () => {
    fake.exec = (cmd) => {
      if (cmd[4] !== 'sh' || !String(cmd[6]).includes('stat -c')) return { status: 0 };
      return cmd[8] === '/tmp/s' ? { stdout: '89ed 7 0 0 1700000000\n', status: 0 } : { status: 3 };
    };
    const env = await driver.open({ image: 'lxd:debian' }, open);
    fake.files.set('/tmp/s', { type: 'file', content: Buffer.from('#!/bin/'), uid: 0, gid: 0, mode: 0o755 });
    fake.files.set('/tmp/l', { type: 'symlink', content: Buffer.from('s'), uid: 0, gid: 0, mode: 0o777 });
    expect(await env.stat('/tmp/s')).toEqual({
      type: 'file',
      size: 7,
      mode: 0o4755,
      uid: 0,
      gid: 0,
      mtime: new Date(1700000000 * 1000),
    });
    // Gone before stat(1) ran: still the link the files API saw (LXD gives its target made absolute).
    expect(await env.stat('/tmp/l')).toMatchObject({ type: 'symlink', linkTarget: '/tmp/s' });
    expect(await env.stat('/tmp/none')).toBeNull();
    await env.close();
  });

  it('sets setuid, setgid and sticky bits inside, which the files API drops', async () => {
    const chmods: string[][] = [];
    fake.exec = (cmd) => {
      if (cmd[4] === 'chmod') chmods.push(cmd.slice(4));
      return { status: 0 };
    };
    const env = await driver.open({ image: 'lxd:debian' }, open);
    await env.push(Buffer.from('#!/bin/sh\n'), '/usr/local/bin/s', { mode: 0o4755 });
    expect(chmods).toEqual([['chmod', '4755', '/usr/local/bin/s']]);
    await env.close();
  });

  it('refuses an unsafe archive before anything reaches the instance', async () => {
    const env = await driver.open({ image: 'lxd:debian' }, open);
    const before = fake.requests.length;
    const { pack } = await import('tar-stream');
    const p = pack();
    p.entry({ name: 'ok' }, 'x');
    p.entry({ name: '../escape' }, 'y');
    p.finalize();
    const { Readable } = await import('node:stream');
    const err = await env.pushArchive(Readable.from(p), '/tmp/d').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'UNSAFE_PATH' });
    expect(fake.requests.slice(before).filter((r) => r.path.endsWith('/exec'))).toEqual([]);
    await env.close();
  });
});

describe('LxdDriver virtual machines (recorded exchanges: KVM is not available here)', () => {
  it('creates a virtual-machine instance without raw.lxc and waits until its agent runs commands', async () => {
    fake.execUnavailable = { times: 3, error: "VM agent isn't currently running" };
    const env = await driver.open({ image: 'lxd:debian-12', driverOptions: { type: 'virtual-machine' } }, open);
    const instance = fake.requests.find((r) => r.path === '/1.0/instances' && r.method === 'POST')!.json;
    expect(instance).toMatchObject({ type: 'virtual-machine', source: { alias: 'debian-12' } });
    const profile = fake.requests.find((r) => r.path === '/1.0/profiles')!.json as { config: Record<string, string> };
    expect(profile.config['raw.lxc']).toBeUndefined();
    expect(profile.config['security.privileged']).toBeUndefined();
    expect(fake.requests.filter((r) => r.path.endsWith('/exec')).length).toBe(4);
    expect(env.capabilities.has('isolation-machine')).toBe(true);
    await env.close();
  });

  it('times out naming the state and the last failure when the VM agent never answers', async () => {
    fake.execUnavailable = { times: 1000, error: "VM agent isn't currently running" };
    const err = await driver
      .open({ image: 'lxd:debian-12', driverOptions: { type: 'virtual-machine', readyTimeoutMs: 600 } }, open)
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'TIMEOUT' });
    expect((err as Error).message).toMatch(
      /state: Running; last attempt: .*VM agent isn't currently running.*vhost_vsock/,
    );
    expect(fake.instances.size).toBe(0);
    expect(fake.profiles.size).toBe(0);
  });
});

describe('LxdDriver.gc', () => {
  it('removes instances and profiles whose user.execenv.owner on this host is dead, and nothing else', async () => {
    const dead = {
      'user.execenv.id': 'execenv-dead',
      'user.execenv.owner': '999999999:1',
      'user.execenv.host': hostname(),
    };
    const elsewhere = { ...dead, 'user.execenv.id': 'execenv-far', 'user.execenv.host': 'another-host' };
    const { ownerOf } = await import('@execenv/core');
    const me = await ownerOf();
    const live = { ...dead, 'user.execenv.id': 'execenv-live', 'user.execenv.owner': `${me.pid}:${me.startTime}` };
    fake.instances.set('execenv-dead', { name: 'execenv-dead', status: 'Running', ephemeral: false, config: dead });
    fake.instances.set('execenv-far', { name: 'execenv-far', status: 'Running', config: elsewhere });
    fake.instances.set('execenv-live', { name: 'execenv-live', status: 'Running', config: live });
    fake.instances.set('someone-else', { name: 'someone-else', status: 'Running', config: {} });
    fake.profiles.set('execenv-dead', { name: 'execenv-dead', config: dead });
    fake.profiles.set('default', { name: 'default', config: {} });
    const report = await driver.gc();
    expect(report).toEqual({ removed: ['execenv-dead'], errors: [] });
    expect([...fake.instances.keys()].sort()).toEqual(['execenv-far', 'execenv-live', 'someone-else']);
    expect([...fake.profiles.keys()]).toEqual(['default']);
  });
});

describe('LxdDriver.pruneImages', () => {
  it('removes idle images it imported that no instance uses, never published or foreign ones', async () => {
    const old = '2026-01-01T00:00:00Z';
    fake.images.set('aa', {
      fingerprint: 'aa',
      properties: { 'execenv.imported': 'execenv-img-aa' },
      last_used_at: old,
    });
    fake.images.set('bb', {
      fingerprint: 'bb',
      properties: { 'execenv.imported': 'execenv-img-bb' },
      last_used_at: old,
    });
    fake.images.set('cc', { fingerprint: 'cc', properties: { 'execenv.published-from': 'x' }, last_used_at: old });
    fake.images.set('dd', { fingerprint: 'dd', properties: {}, last_used_at: old });
    fake.images.set('ee', {
      fingerprint: 'ee',
      properties: { 'execenv.imported': 'execenv-img-ee' },
      last_used_at: new Date().toISOString(),
    });
    fake.instances.set('c1', { name: 'c1', config: { 'volatile.base_image': 'bb' } });
    expect(await driver.pruneImages()).toEqual(['execenv-img-aa']);
    expect([...fake.images.keys()].sort()).toEqual(['bb', 'cc', 'dd', 'ee']);
    expect(await driver.pruneImages({ maxIdleMs: 0 })).toEqual(['execenv-img-ee']);
  });
});

describe('LxdDriver.probe', () => {
  it('reports the version and endpoint, or why not', async () => {
    const a = await driver.probe();
    expect(a).toMatchObject({ available: true, version: '5.0.2', details: { endpoint: fake.socketPath } });
    const missing = new LxdDriver({ endpoint: { socketPath: join(dir, 'none.socket') } });
    const b = await missing.probe();
    expect(b.available).toBe(false);
    expect(b.reason).toContain('none.socket');
    await writeFile(join(dir, 'x'), '');
  });
});
