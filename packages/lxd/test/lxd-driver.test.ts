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
  it('creates a profile and an ephemeral container from an lxd: alias, starts it and its agent', async () => {
    const env = await driver.open(
      { image: 'lxd:debian', resources: { cpu: 2, memory: '512M' }, env: { A: 'b' } },
      open,
    );
    // The daemon listens on this host: the agent binary is mounted by the profile, nothing is copied.
    expect(fake.calls()).toEqual([
      'POST /1.0/profiles',
      'POST /1.0/instances',
      `PUT /1.0/instances/${env.id}/state`,
      `POST /1.0/instances/${env.id}/exec`,
    ]);
    const agentExec = fake.requests.filter((r) => r.path.endsWith('/exec')).at(-1)!.json as Record<string, unknown>;
    expect(agentExec).toMatchObject({ command: ['/dev/.execenv-agent', '--stdio'], 'wait-for-websocket': true });
    const profile = fake.requests.find((r) => r.path === '/1.0/profiles')!.json as Record<
      string,
      Record<string, unknown>
    >;
    const { agentBinaryPath } = await import('@execenv/agent');
    expect(profile.devices).toEqual({
      'execenv-agent': { type: 'disk', source: await agentBinaryPath(), path: '/dev/.execenv-agent', readonly: 'true' },
    });
    expect(profile.config).toMatchObject({
      'limits.cpu': '2',
      'limits.memory': `${512 * 1024 * 1024}B`,
      'security.privileged': 'false',
      'user.execenv.id': env.id,
      'user.execenv.host': hostname(),
    });
    // Nothing goes into /dev, which keeps LXC's default size.
    expect(profile.config!['raw.lxc']).toBeUndefined();
    expect(profile.config!['user.execenv.owner']).toMatch(new RegExp(`^${process.pid}:\\d+$`));
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
    const before = fake.requests.length;
    await env.close();
    // A forced stop deletes the ephemeral instance; the DELETE after it finds it gone.
    expect(
      fake.requests
        .slice(before)
        .filter((r) => !r.path.startsWith('/1.0/operations/'))
        .map((r) => [r.method, r.path, r.json]),
    ).toEqual([
      ['PUT', `/1.0/instances/${env.id}/state`, { action: 'stop', force: true }],
      ['DELETE', `/1.0/instances/${env.id}`, undefined],
      ['DELETE', `/1.0/profiles/${env.id}`, undefined],
    ]);
    expect(fake.instances.size).toBe(0);
    expect(fake.profiles.size).toBe(0);
    expect(await driver.list()).toEqual([]);
  });

  it('writes the agent of the instance architecture into a larger /dev of a privileged container', async () => {
    const env = await driver.open({ image: 'lxd:debian', driverOptions: { privileged: true } }, open);
    expect(fake.calls()).toEqual([
      'POST /1.0/profiles',
      'POST /1.0/instances',
      `PUT /1.0/instances/${env.id}/state`,
      `GET /1.0/instances/${env.id}`,
      `POST /1.0/instances/${env.id}/files`,
      `POST /1.0/instances/${env.id}/exec`,
    ]);
    const profile = fake.requests.find((r) => r.path === '/1.0/profiles')!.json as Record<
      string,
      Record<string, unknown>
    >;
    expect(profile.devices).toEqual({});
    // LXC's default /dev (500 kB) does not hold the agent.
    expect(profile.config).toMatchObject({
      'security.privileged': 'true',
      'raw.lxc': 'lxc.autodev.tmpfs.size = 16777216',
    });
    const put = fake.requests.find((r) => r.path.endsWith('/files'))!;
    expect(put.query.path).toBe('/dev/.execenv-agent');
    expect(put.headers).toMatchObject({
      'x-lxd-mode': '0755',
      'x-lxd-uid': '0',
      'x-lxd-gid': '0',
      'x-lxd-type': 'file',
    });
    const { readFile } = await import('node:fs/promises');
    const { agentBinaryPath } = await import('@execenv/agent');
    const binary = await readFile(await agentBinaryPath('amd64'));
    // Sent with its length, not chunked.
    expect(put.headers['content-length']).toBe(String(binary.length));
    expect(put.headers['transfer-encoding']).toBeUndefined();
    expect(put.body.equals(binary)).toBe(true);
    await env.close();
    expect(fake.instances.size).toBe(0);
  });

  it("writes the agent in when told the daemon does not see this host's files", async () => {
    const remoteLike = new LxdDriver({
      endpoint: { socketPath: fake.socketPath },
      stateDir: join(dir, 'state'),
      cacheDir: join(dir, 'cache'),
      agentMount: false,
    });
    const env = await remoteLike.open({ image: 'lxd:debian' }, open);
    try {
      expect(fake.calls().slice(3)).toEqual([
        `GET /1.0/instances/${env.id}`,
        `POST /1.0/instances/${env.id}/files`,
        `POST /1.0/instances/${env.id}/exec`,
      ]);
      const profile = fake.requests.find((r) => r.path === '/1.0/profiles')!.json as { devices: unknown };
      expect(profile.devices).toEqual({});
    } finally {
      await env.close();
      (await remoteLike.client()).close();
    }
  });

  it('deletes an instance that is stopped already', async () => {
    const { deleteInstance } = await import('../src/lxd-driver.js');
    fake.instances.set('stopped', { name: 'stopped', status: 'Stopped', ephemeral: false });
    await deleteInstance(await driver.client(), 'stopped');
    expect(fake.instances.size).toBe(0);
    await deleteInstance(await driver.client(), 'gone');
    expect(fake.calls()).toEqual([
      'PUT /1.0/instances/stopped/state',
      'DELETE /1.0/instances/stopped',
      'PUT /1.0/instances/gone/state',
    ]);
  });

  it('runs every command through the agent, with the spec env under the exec env, and no exec of its own', async () => {
    const env = await driver.open({ image: 'lxd:debian', env: { A: 'spec', B: 'spec' } }, open);
    const execs = fake.requests.filter((r) => r.path.endsWith('/exec')).length;
    const r = await env.exec(['sh', '-c', 'echo "$A $B"; echo err >&2; exit 3'], { env: { B: 'exec' } });
    expect(r).toMatchObject({ stdout: 'spec exec\n', stderr: 'err\n', exitCode: 3 });
    const timed = await env.exec(['sleep', '60'], { timeout: 100 });
    expect(timed.timedOut).toBe(true);
    expect(fake.requests.filter((r) => r.path.endsWith('/exec')).length).toBe(execs);
    await env.close();
  });

  it('fails the open with DRIVER_UNAVAILABLE and removes everything when the agent does not start', async () => {
    fake.instancesArchitecture = 'mips';
    const err = await driver
      .open({ image: 'lxd:debian', driverOptions: { privileged: true } }, open)
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'INVALID_SPEC', field: 'architecture' });
    expect(fake.instances.size).toBe(0);
    expect(fake.profiles.size).toBe(0);
  });

  it('lets an instance being created finish before an aborted open removes it', async () => {
    fake.createMs = 400;
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const err = await driver.open({ image: 'lxd:debian' }, { ...open, signal: ac.signal }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ABORTED' });
    // Never started: created, then removed with its profile.
    expect(fake.calls().filter((c) => c.endsWith('/state') || c.endsWith('/exec'))).toHaveLength(1);
    expect(fake.instances.size).toBe(0);
    expect(fake.profiles.size).toBe(0);
    expect(await driver.list()).toEqual([]);
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
      'lxc.autodev.tmpfs.size = 16777216\nlxc.apparmor.profile = unconfined\nlxc.init.cmd = /bin/sleep infinity\nlxc.signal.halt = SIGKILL',
    );
  });

  it('refuses bad driver options before anything is created', async () => {
    const err = await driver
      .open({ image: 'lxd:debian', driverOptions: { type: 'jail' as 'container' } }, open)
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'INVALID_SPEC', field: 'driverOptions.type' });
    const noImage = await driver.open({}, open).catch((e: unknown) => e);
    expect(noImage).toMatchObject({ code: 'INVALID_SPEC', field: 'image' });
    const host = await driver.open({ image: 'lxd:debian', network: 'host' }, open).catch((e: unknown) => e);
    expect(host).toMatchObject({ code: 'INVALID_SPEC', field: 'network' });
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
  it('pushes file content through the files API, special bits through the agent, and pulls through the agent', async () => {
    const env = await driver.open({ image: 'lxd:debian' }, open);
    await env.push(new TextEncoder().encode('owned'), '/tmp/f', { mode: 0o640, uid: 1234, gid: 2345 });
    expect(fake.files.get('/tmp/f')).toMatchObject({ uid: 1234, gid: 2345, mode: 0o640 });
    // The fake's agent runs on this host: a path of this test's own stands for one inside.
    const { chmod, mkdir, readFile, stat, writeFile } = await import('node:fs/promises');
    const inside = join(dir, 'inside');
    await mkdir(inside);
    await writeFile(`${inside}/s`, '#!/bin/sh\n', { mode: 0o755 });
    // The files API drops setuid, setgid and sticky: the agent sets them after the write.
    await env.push(Buffer.from('#!/bin/sh\n'), `${inside}/s`, { mode: 0o4755 });
    expect(fake.files.get(`${inside}/s`)?.content.toString()).toBe('#!/bin/sh\n');
    expect((await stat(`${inside}/s`)).mode & 0o7777).toBe(0o4755);
    await chmod(`${inside}/s`, 0o640);
    const dest = join(dir, 'pulled');
    await env.pull(`${inside}/s`, dest);
    expect(await readFile(dest, 'utf8')).toBe('#!/bin/sh\n');
    expect((await stat(dest)).mode & 0o777).toBe(0o640);
    const missing = await env.pull(`${inside}/none`, join(dir, 'x')).catch((e: unknown) => e);
    expect(missing).toMatchObject({ code: 'NOT_FOUND' });
    await env.close();
  });
});

describe('LxdDriver virtual machines (recorded exchanges: KVM is not available here)', () => {
  it('creates a virtual-machine instance without raw.lxc, waits until its agent runs commands, starts ours', async () => {
    fake.execUnavailable = { times: 3, error: "VM agent isn't currently running" };
    const env = await driver.open({ image: 'lxd:debian-12', driverOptions: { type: 'virtual-machine' } }, open);
    const instance = fake.requests.find((r) => r.path === '/1.0/instances' && r.method === 'POST')!.json;
    expect(instance).toMatchObject({ type: 'virtual-machine', source: { alias: 'debian-12' } });
    const profile = fake.requests.find((r) => r.path === '/1.0/profiles')!.json as { config: Record<string, string> };
    expect(profile.config['raw.lxc']).toBeUndefined();
    expect(profile.config['security.privileged']).toBeUndefined();
    // Three refused while the VM's own agent was not up, one that ran, then ours.
    expect(fake.requests.filter((r) => r.path.endsWith('/exec')).length).toBe(5);
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
