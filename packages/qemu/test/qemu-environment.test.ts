import { isSnapshottable } from '@execenv/core';
import { FakeAgentSession, FakeRunner } from '@execenv/core/testing';
import { QemuImg } from '@execenv/images';
import { describe, expect, it } from 'vitest';
import { DiskSnapshots } from '../src/disk-snapshots.js';
import { type GuestRestart, QemuEnvironment } from '../src/qemu-environment.js';
import type { QmpClient } from '../src/qmp.js';

const DISK = '/state/envs/execenv-test/disk.qcow2';

/**
 * A QEMU environment on fakes: the guest's agent, QMP (answers or fails as
 * `qmpFails` says) and qemu-img through a FakeRunner (`snapshot -a` failing
 * with `applyFails`). Every step lands in
 * `steps`, in order.
 */
function fakeGuest(opts: { sync?: boolean; qmpFails?: string; applyFails?: string } = {}) {
  const steps: string[] = [];
  const sync = () => {
    steps.push('guest: sync');
    return {};
  };
  const newSession = () => new FakeAgentSession({ commands: opts.sync === false ? {} : { sync } });
  const sessions = [newSession()];
  const runner = new FakeRunner();
  const qemuImgRan = runner.run.bind(runner);
  runner.run = async (argv, o) => {
    steps.push(argv.join(' '));
    if (opts.applyFails && argv.includes('-a')) throw new Error(opts.applyFails);
    return qemuImgRan(argv, o);
  };
  const qmp = {
    execute: async (command: string, args?: Record<string, unknown>) => {
      steps.push(`qmp: ${command} ${JSON.stringify(args)}`);
      if (opts.qmpFails) throw new Error(opts.qmpFails);
      return {};
    },
  } as unknown as QmpClient;
  const snapshots = new DiskSnapshots({
    disk: DISK,
    device: 'root',
    qemuImg: new QemuImg(runner),
    qmp: () => qmp,
    context: { envId: 'execenv-test' },
  });
  const env = new QemuEnvironment({
    id: 'execenv-test',
    driver: 'qemu',
    capabilities: ['isolation-machine', 'root', 'revert', 'reboot', 'snapshot'],
    closeOnSignal: false,
    session: sessions[0]!,
    restart: async ({ graceful, whileStopped }: GuestRestart) => {
      steps.push(graceful ? 'stop: shut down cleanly' : 'stop: quit');
      await whileStopped?.();
      steps.push('boot');
      sessions.push(newSession());
      return sessions.at(-1)!;
    },
    freshDisk: async () => void steps.push('fresh overlay'),
    snapshots,
    destroy: async () => {},
  });
  return { env, steps, sessions };
}

describe('QemuEnvironment snapshots', () => {
  it('is snapshottable', () => {
    expect(isSnapshottable(fakeGuest().env)).toBe(true);
  });

  it('takes a snapshot of the running guest after it synced, and replaces one of the same name', async () => {
    const { env, steps, sessions } = fakeGuest();
    await env.snapshot('configured');
    expect(steps).toEqual([
      'guest: sync',
      'qmp: blockdev-snapshot-internal-sync {"device":"root","name":"configured"}',
    ]);
    expect(sessions[0]!.execs[0]).toMatchObject({ argv: ['sync'], uid: 0, gid: 0, cwd: '/' });
    steps.length = 0;
    await env.snapshot('configured');
    expect(steps).toEqual([
      'guest: sync',
      'qmp: blockdev-snapshot-delete-internal-sync {"device":"root","name":"configured"}',
      'qmp: blockdev-snapshot-internal-sync {"device":"root","name":"configured"}',
    ]);
    expect(sessions).toHaveLength(1); // the guest kept running
  });

  it('restores by quitting the guest, applying the snapshot with qemu-img and booting again; commands running are killed', async () => {
    const { env, steps, sessions } = fakeGuest();
    await env.snapshot('configured');
    const background = env.exec(['sleep', 'infinity']);
    await new Promise((resolve) => setTimeout(resolve, 10));
    steps.length = 0;
    await env.restore('configured');
    expect(steps).toEqual(['stop: quit', `qemu-img snapshot -a configured ${DISK}`, 'boot']);
    expect((await background).signal).toBe('SIGKILL');
    await env.exec(['true']);
    expect(sessions[1]!.execs.map((e) => e.argv)).toEqual([['true']]);
    await env.restore('configured'); // a snapshot can be restored again
    expect(steps.filter((s) => s.startsWith('qemu-img'))).toHaveLength(2);
  });

  it('refuses an unknown snapshot as NOT_FOUND and a malformed name as INVALID_SPEC, doing nothing', async () => {
    const { env, steps } = fakeGuest();
    await expect(env.restore('missing')).rejects.toMatchObject({
      code: 'NOT_FOUND',
      op: 'restore',
      envId: 'execenv-test',
      message: expect.stringContaining('has no snapshot "missing"'),
    });
    for (const name of ['', '1', '2.0', 'a/b', 'with space', '-x', 'x'.repeat(65), 7 as unknown as string]) {
      await expect(env.snapshot(name)).rejects.toMatchObject({ code: 'INVALID_SPEC', field: 'name' });
      await expect(env.restore(name)).rejects.toMatchObject({ code: 'INVALID_SPEC', field: 'name' });
    }
    expect(steps).toEqual([]);
    await env.snapshot(`a${'x'.repeat(63)}`);
  });

  it('shuts the guest down cleanly and snapshots with qemu-img when the image has no sync', async () => {
    const { env, steps } = fakeGuest({ sync: false });
    await env.snapshot('base');
    expect(steps).toEqual(['stop: shut down cleanly', `qemu-img snapshot -c base ${DISK}`, 'boot']);
    steps.length = 0;
    await env.snapshot('base');
    expect(steps).toEqual([
      'stop: shut down cleanly',
      `qemu-img snapshot -d base ${DISK}`,
      `qemu-img snapshot -c base ${DISK}`,
      'boot',
    ]);
  });

  it('forgets its snapshots on revert: a fresh overlay has none', async () => {
    const { env, steps } = fakeGuest();
    await env.snapshot('configured');
    steps.length = 0;
    await env.revert();
    expect(steps).toEqual(['stop: quit', 'fresh overlay', 'boot']);
    await expect(env.restore('configured')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it("reports QEMU's refusal as TRANSPORT and keeps no name", async () => {
    const { env } = fakeGuest({ qmpFails: 'GenericError: Device has no medium' });
    await expect(env.snapshot('configured')).rejects.toMatchObject({
      code: 'TRANSPORT',
      op: 'snapshot',
      message: expect.stringContaining('Device has no medium'),
    });
    await expect(env.restore('configured')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('boots the guest again when applying a snapshot fails, then reports the failure', async () => {
    const { env, steps, sessions } = fakeGuest({ applyFails: "qemu-img: Could not apply snapshot 'configured'" });
    await env.snapshot('configured');
    steps.length = 0;
    await expect(env.restore('configured')).rejects.toThrow('Could not apply snapshot');
    expect(steps).toEqual(['stop: quit', `qemu-img snapshot -a configured ${DISK}`, 'boot']);
    await env.exec(['true']);
    expect(sessions[1]!.execs.map((e) => e.argv)).toEqual([['true']]);
  });
});
