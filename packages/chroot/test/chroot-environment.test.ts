import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lease } from '@execenv/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ChrootEnvironment, DEFAULT_PATH } from '../src/chroot-environment.js';
import { FakeRunner } from './fake-runner.js';

let dir: string;
let runner: FakeRunner;

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
    root: '/state/envs/execenv-unit/root',
    hostRoot: join(dir, 'root'),
    init: '/cache/bin/execenv-init-x',
    enter: [],
    netns: '/state/envs/execenv-unit/netns',
    linux32: false,
    env: { LANG: 'C.UTF-8' },
    resetRoot: async () => {},
    ...overrides,
  });
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'execenv-env-'));
  runner = new FakeRunner();
  await mkdir(join(dir, 'root/etc'), { recursive: true });
  await mkdir(join(dir, 'root/tmp'));
  await writeFile(join(dir, 'root/etc/passwd'), 'root:x:0:0::/root:/bin/sh\nbuilder:x:1000:1001::/b:/bin/sh\n');
  await writeFile(join(dir, 'root/etc/group'), 'root:x:0:\nbuilder:x:1001:\nsbuild:x:120:builder\n');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function nextSpawn() {
  for (let i = 0; i < 100 && runner.spawned.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  const s = runner.spawned.at(-1);
  if (!s) throw new Error('nothing was spawned');
  return s;
}

describe('ChrootEnvironment.exec', () => {
  it('runs argv through unshare and the init with the exact environment, user and cwd', async () => {
    const env = await environment();
    const result = env.exec(['make', '-j2'], { cwd: '/tmp', user: 'builder', env: { CC: 'gcc' } });
    const s = await nextSpawn();
    s.finish('exit 0', 'built');
    expect((await result).stdout).toBe('built');
    expect(s.argv).toEqual([
      'unshare',
      '--mount',
      '--pid',
      '--fork',
      '--kill-child=SIGKILL',
      '--mount-proc=/state/envs/execenv-unit/root/proc',
      '--',
      '/cache/bin/execenv-init-x',
      '/state/envs/execenv-unit/root',
      '/tmp',
      '1000',
      '1001',
      '1001,120',
      '-',
      '/state/envs/execenv-unit/netns',
      '3',
      `PATH=${DEFAULT_PATH}`,
      'LANG=C.UTF-8',
      'CC=gcc',
      '--',
      'make',
      '-j2',
    ]);
    // Host-side helpers get a fixed PATH and nothing of the caller's.
    expect(s.opts?.env).toEqual({ PATH: expect.stringContaining('/usr/bin') });
    expect(s.opts?.extraOutputs).toBe(1);
  });

  it('enters the holder namespace first in rootless mode, with the host network and linux32', async () => {
    const env = await environment({
      enter: ['nsenter', '--target=99', '--user', '--mount'],
      netns: undefined,
      linux32: true,
    });
    const result = env.exec(['true']);
    const s = await nextSpawn();
    s.finish('exit 0');
    await result;
    expect(s.argv.slice(0, 5)).toEqual(['nsenter', '--target=99', '--user', '--mount', 'unshare']);
    expect(s.argv.slice(-7, -4)).toEqual(['linux32', '-', '2']);
  });

  it("takes the command's exit or signal from the init's status line", async () => {
    const env = await environment();
    const a = env.exec(['x']);
    (await nextSpawn()).finish('exit 255');
    expect(await a).toMatchObject({ exitCode: 255, signal: null });
    runner.spawned.length = 0;
    const b = env.exec(['x']);
    (await nextSpawn()).finish('signal 9');
    expect(await b).toMatchObject({ exitCode: null, signal: 'SIGKILL' });
  });

  it('treats an init that never reported as a transport failure, not an exit code', async () => {
    const env = await environment();
    const r = env.exec(['x']);
    (await nextSpawn()).finish('');
    await expect(r).rejects.toMatchObject({ code: 'TRANSPORT' });
  });

  it('kills the host-side process on timeout, which takes the whole pid namespace down', async () => {
    const env = await environment();
    const r = await env.exec(['sleep', '100'], { timeout: 20 }).then(
      (v) => v,
      (e) => e,
    );
    expect(runner.spawned[0]?.killed).toEqual(['SIGKILL']);
    expect(r).toMatchObject({ timedOut: true, signal: 'SIGKILL' });
  });

  it('refuses a missing cwd and an unknown user before spawning anything', async () => {
    const env = await environment();
    await expect(env.exec(['true'], { cwd: '/nope' })).rejects.toMatchObject({ code: 'NOT_FOUND', path: '/nope' });
    await expect(env.exec(['true'], { user: 'ghost' })).rejects.toMatchObject({ code: 'INVALID_SPEC', field: 'user' });
    expect(runner.spawned).toEqual([]);
  });

  it('rejects after close with CLOSED', async () => {
    const env = await environment();
    await env.close();
    await expect(env.exec(['true'])).rejects.toMatchObject({ code: 'CLOSED' });
  });
});
