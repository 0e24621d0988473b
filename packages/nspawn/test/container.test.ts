import { FakeRunner } from '@execenv/core/testing';
import { describe, expect, it } from 'vitest';
import { type ProcessInspector, startContainer } from '../src/container.js';

const tick = () => new Promise((r) => setImmediate(r));

function inspector(init: { pid: number; startTime: string } | undefined): ProcessInspector {
  return { startTime: async (pid) => (pid === 4242 ? '777' : undefined), init: async () => init };
}

const start = {
  argv: ['/usr/bin/systemd-nspawn', '--quiet', '--', '/run/execenv-agent'],
  env: { PATH: '/usr/bin:/bin', SYSTEMD_NSPAWN_LOCK: '0' },
  envId: 'execenv-unit',
  timeoutMs: 2_000,
};

describe('startContainer', () => {
  it('plain mode: spawns nspawn as given, leases nspawn then the init, and is ready on the agent’s line', async () => {
    const runner = new FakeRunner();
    const leased: unknown[] = [];
    const started = startContainer(runner, {
      ...start,
      mode: 'plain',
      inspect: inspector({ pid: 4300, startTime: '778' }),
      onProcess: async (p) => void leased.push(p),
    });
    const nspawn = runner.spawned[0]!;
    expect(nspawn.argv).toEqual(start.argv);
    expect(nspawn.opts).toEqual({ env: start.env, stdin: 'pipe', stdout: 'pipe', stderr: 'pipe' });
    nspawn.stdout.write('ready\n');
    const container = await started;
    expect(leased).toEqual([
      { pid: 4242, startTime: '777' },
      { pid: 4300, startTime: '778' },
    ]);
    expect(container.init).toEqual({ pid: 4300, startTime: '778' });
    // Stopping closes the agent's stdin: it kills everything inside and exits, and nspawn with it.
    const stopped = container.stop();
    await tick();
    expect(nspawn.stdin.writableEnded).toBe(true);
    expect(nspawn.killed).toEqual([]);
    nspawn.exit({ exitCode: 0, signal: null });
    await stopped;
  });

  it('boot mode: ready once the init runs, stopped with SIGTERM to nspawn', async () => {
    const runner = new FakeRunner();
    const container = await startContainer(runner, {
      ...start,
      mode: 'boot',
      inspect: inspector({ pid: 4301, startTime: '779' }),
    });
    runner.spawned[0]!.stdout.write('Welcome to Debian GNU/Linux 12 (bookworm)!\n');
    await tick();
    expect(container.output()).toContain('Welcome to Debian');
    await container.stop();
    expect(runner.spawned[0]!.killed).toEqual(['SIGTERM']);
  });

  it('fails with DRIVER_UNAVAILABLE quoting nspawn when it exits before ready', async () => {
    const runner = new FakeRunner();
    const started = startContainer(runner, { ...start, mode: 'plain', inspect: inspector(undefined) });
    const nspawn = runner.spawned[0]!;
    nspawn.stderr.write("Directory /x doesn't look like it has an OS tree (/usr/ directory is missing). Refusing.\n");
    await tick();
    nspawn.exit({ exitCode: 1, signal: null });
    await expect(started).rejects.toMatchObject({
      code: 'DRIVER_UNAVAILABLE',
      envId: 'execenv-unit',
      message: expect.stringContaining('/usr/ directory is missing'),
    });
  });

  it('times out with TIMEOUT quoting the guest, and kills nspawn', async () => {
    const runner = new FakeRunner();
    const started = startContainer(runner, {
      ...start,
      timeoutMs: 50,
      mode: 'boot',
      inspect: inspector(undefined),
    });
    runner.spawned[0]!.stdout.write('[FAILED] Failed to start something.service\n');
    await expect(started).rejects.toMatchObject({
      code: 'TIMEOUT',
      message: expect.stringContaining('[FAILED] Failed to start something.service'),
    });
    expect(runner.spawned[0]!.killed).toEqual(['SIGKILL']);
  });
});
