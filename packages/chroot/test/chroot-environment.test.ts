import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lease } from '@execenv/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ChrootEnvironment, DEFAULT_PATH } from '../src/chroot-environment.js';
import { FakeExecServer } from './fake-exec-server.js';
import { FakeRunner } from './fake-runner.js';

let dir: string;
let runner: FakeRunner;
let server: FakeExecServer;

async function environment(overrides: Partial<ConstructorParameters<typeof ChrootEnvironment>[0]> = {}) {
  const lease = await Lease.create(join(dir, 'state'), 'execenv-unit', 'chroot');
  return new ChrootEnvironment({
    id: 'execenv-unit',
    driver: 'chroot',
    capabilities: ['isolation-chroot', 'root'],
    closeOnSignal: false,
    runner,
    lease,
    undo: async () => {},
    hostRoot: join(dir, 'root'),
    execServer: server,
    env: { LANG: 'C.UTF-8' },
    resetRoot: async () => {},
    ...overrides,
  });
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'execenv-env-'));
  runner = new FakeRunner();
  server = new FakeExecServer();
  await mkdir(join(dir, 'root/etc'), { recursive: true });
  await mkdir(join(dir, 'root/tmp'));
  await writeFile(join(dir, 'root/etc/passwd'), 'root:x:0:0::/root:/bin/sh\nbuilder:x:1000:1001::/b:/bin/sh\n');
  await writeFile(join(dir, 'root/etc/group'), 'root:x:0:\nbuilder:x:1001:\nsbuild:x:120:builder\n');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('ChrootEnvironment.exec', () => {
  it('asks the exec server for argv with the exact environment, user, groups and cwd', async () => {
    const env = await environment();
    const result = env.exec(['make', '-j2'], { cwd: '/tmp', user: 'builder', env: { CC: 'gcc' } });
    const c = await server.next();
    c.finish({ exitCode: 0, signal: null }, 'built');
    expect((await result).stdout).toBe('built');
    expect(c.request).toEqual({
      cwd: '/tmp',
      uid: 1000,
      gid: 1001,
      groups: [1001, 120],
      env: { PATH: DEFAULT_PATH, LANG: 'C.UTF-8', CC: 'gcc' },
      argv: ['make', '-j2'],
    });
  });

  it("reports the command's exit or signal as the server gives it", async () => {
    const env = await environment();
    const a = env.exec(['x']);
    (await server.next()).finish({ exitCode: 255, signal: null });
    expect(await a).toMatchObject({ exitCode: 255, signal: null });
    const b = env.exec(['x']);
    (await server.next()).finish({ exitCode: null, signal: 'SIGKILL' });
    expect(await b).toMatchObject({ exitCode: null, signal: 'SIGKILL' });
  });

  it('treats a command the server could not start as a transport failure, not an exit code', async () => {
    const env = await environment();
    const r = env.exec(['x']);
    (await server.next()).fail(new Error('unshare: Operation not permitted'));
    await expect(r).rejects.toMatchObject({ code: 'TRANSPORT', message: expect.stringContaining('unshare') });
  });

  it('kills the command on timeout, which takes the whole pid namespace down', async () => {
    const env = await environment();
    const r = await env.exec(['sleep', '100'], { timeout: 20 }).then(
      (v) => v,
      (e) => e,
    );
    expect(server.started[0]?.killed).toBe(true);
    expect(r).toMatchObject({ timedOut: true, signal: 'SIGKILL' });
  });

  it('refuses a missing cwd and an unknown user before spawning anything', async () => {
    const env = await environment();
    await expect(env.exec(['true'], { cwd: '/nope' })).rejects.toMatchObject({ code: 'NOT_FOUND', path: '/nope' });
    await expect(env.exec(['true'], { user: 'ghost' })).rejects.toMatchObject({ code: 'INVALID_SPEC', field: 'user' });
    expect(server.started).toEqual([]);
  });

  it('kills running commands and stops the server at close, then rejects with CLOSED', async () => {
    const env = await environment();
    const running = env.exec(['sleep', '100']).catch((e) => e);
    await server.next();
    await env.close();
    expect(server.started[0]?.killed).toBe(true);
    expect(server.stopped).toBe(true);
    await running;
    await expect(env.exec(['true'])).rejects.toMatchObject({ code: 'CLOSED' });
  });
});
