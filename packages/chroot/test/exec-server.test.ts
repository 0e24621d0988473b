import { describe, expect, it } from 'vitest';
import { startExecServer } from '../src/exec-server.js';
import { FakeRunner } from './fake-runner.js';

const options = {
  binary: '/cache/bin/execenv-exec-server-x',
  enter: [],
  root: '/state/envs/e/root',
  linux32: false,
  netns: '/state/envs/e/netns',
  socket: '/state/envs/e/exec.sock',
  owner: 0,
};

async function spawnedBy(runner: FakeRunner) {
  for (let i = 0; i < 100 && runner.spawned.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  const s = runner.spawned[0];
  if (!s) throw new Error('nothing was spawned');
  return s;
}

/** Starts a server on a fake runner that says it listens at once; returns what was spawned. */
async function startedReady(runner: FakeRunner, o: Parameters<typeof startExecServer>[1]) {
  const starting = startExecServer(runner, o);
  const s = await spawnedBy(runner);
  s.stdout.write('ready\n');
  return { s, server: await starting };
}

describe('startExecServer', () => {
  it('starts the server with root, personality, network, socket and owner, and a PATH of its own only', async () => {
    const runner = new FakeRunner();
    const { s } = await startedReady(runner, options);
    expect(s.argv).toEqual([
      '/cache/bin/execenv-exec-server-x',
      '/state/envs/e/root',
      '-',
      '/state/envs/e/netns',
      '/state/envs/e/exec.sock',
      '0',
    ]);
    expect(s.opts?.env).toEqual({ PATH: expect.stringContaining('/usr/bin') });
    expect(s.opts?.stdin).toBe('pipe');
  });

  it('enters the holder namespace first in rootless mode, with the host network, linux32 and no owner', async () => {
    const runner = new FakeRunner();
    const { s } = await startedReady(runner, {
      ...options,
      enter: ['nsenter', '--target=99', '--user', '--mount'],
      linux32: true,
      netns: undefined,
      owner: undefined,
    });
    expect(s.argv).toEqual([
      'nsenter',
      '--target=99',
      '--user',
      '--mount',
      '/cache/bin/execenv-exec-server-x',
      '/state/envs/e/root',
      'linux32',
      '-',
      '/state/envs/e/exec.sock',
      '-',
    ]);
  });

  it('waits until the server says it listens', async () => {
    const runner = new FakeRunner();
    let started = false;
    const starting = startExecServer(runner, options).then(() => (started = true));
    const s = await spawnedBy(runner);
    s.stdout.write('rea');
    await new Promise((r) => setTimeout(r, 20));
    expect(started).toBe(false);
    s.stdout.write('dy\n');
    await starting;
    expect(started).toBe(true);
  });

  it('fails with what the server said when it exits before listening', async () => {
    const runner = new FakeRunner();
    const starting = startExecServer(runner, options);
    const s = await spawnedBy(runner);
    s.stderr.write('execenv: cannot listen on /state/envs/e/exec.sock: Address already in use\n');
    s.exit({ exitCode: 1, signal: null });
    await expect(starting).rejects.toMatchObject({
      code: 'DRIVER_UNAVAILABLE',
      message: expect.stringContaining('Address already in use'),
    });
  });

  it('stops by ending its stdin and waiting for it to exit', async () => {
    const runner = new FakeRunner();
    const { s, server } = await startedReady(runner, options);
    let stopped = false;
    const stopping = server.stop().then(() => (stopped = true));
    await new Promise((r) => s.stdin.once('finish', r));
    expect(stopped).toBe(false);
    s.exit({ exitCode: 0, signal: null });
    await stopping;
    expect(stopped).toBe(true);
  });
});
