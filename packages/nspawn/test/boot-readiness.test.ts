import { FakeAgentSession } from '@execenv/core/testing';
import { describe, expect, it } from 'vitest';
import { waitUntilBooted } from '../src/boot-readiness.js';

const wait = { envId: 'execenv-unit', timeoutMs: 1_000, console: () => 'Welcome to Debian GNU/Linux 12 (bookworm)!' };

describe('waitUntilBooted', () => {
  it('asks systemctl to wait for the system, and accepts running and degraded', async () => {
    for (const state of ['running', 'degraded']) {
      const session = new FakeAgentSession({
        commands: { systemctl: () => ({ stdout: `${state}\n`, exitCode: state === 'running' ? 0 : 1 }) },
      });
      await waitUntilBooted(session, wait);
      expect(session.execs.map((e) => e.argv)).toEqual([['systemctl', 'is-system-running', '--wait']]);
      expect(session.execs[0]).toMatchObject({ cwd: '/', uid: 0, gid: 0, groups: [] });
    }
  });

  it('asks again while systemd is not far enough to answer', async () => {
    const answers = [
      { stdout: 'offline\n', exitCode: 1 },
      { stderr: 'Failed to connect to bus: No such file or directory\n', exitCode: 1 },
      { stdout: 'running\n' },
    ];
    let asked = 0;
    const session = new FakeAgentSession({ commands: { systemctl: () => answers[asked++] } });
    await waitUntilBooted(session, wait);
    expect(asked).toBe(3);
  });

  it('stops waiting with ABORTED when the open is aborted', async () => {
    const session = new FakeAgentSession({
      commands: {
        systemctl: ({ signal }) => new Promise((r) => signal.addEventListener('abort', () => r({ signal: 'SIGKILL' }))),
      },
    });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 20);
    await expect(waitUntilBooted(session, { ...wait, signal: ac.signal })).rejects.toMatchObject({ code: 'ABORTED' });
  });

  it('refuses other states with DRIVER_UNAVAILABLE quoting the console', async () => {
    const session = new FakeAgentSession({ commands: { systemctl: () => ({ stdout: 'maintenance\n', exitCode: 1 }) } });
    await expect(waitUntilBooted(session, wait)).rejects.toMatchObject({
      code: 'DRIVER_UNAVAILABLE',
      message: expect.stringMatching(/says "maintenance".*\n.*Welcome to Debian/s),
    });
  });

  it('says the image lacks systemd when systemctl is missing', async () => {
    const session = new FakeAgentSession();
    await expect(waitUntilBooted(session, wait)).rejects.toMatchObject({
      code: 'DRIVER_UNAVAILABLE',
      message: expect.stringContaining('the image has no systemctl'),
    });
  });

  it('times out with TIMEOUT when the system never settles', async () => {
    const session = new FakeAgentSession({
      commands: {
        systemctl: ({ signal }) => new Promise((r) => signal.addEventListener('abort', () => r({ signal: 'SIGKILL' }))),
      },
    });
    await expect(waitUntilBooted(session, { ...wait, timeoutMs: 50 })).rejects.toMatchObject({
      code: 'TIMEOUT',
      message: expect.stringContaining('did not finish booting within 50 ms'),
    });
  });
});
