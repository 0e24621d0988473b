import { DEFAULT_PATH } from '@execenv/core/driver';
import { FakeAgentSession } from '@execenv/core/testing';
import { describe, expect, it } from 'vitest';
import { ChrootEnvironment } from '../src/chroot-environment.js';

const PASSWD = 'root:x:0:0::/root:/bin/sh\nbuilder:x:1000:1001::/b:/bin/sh\n';
const GROUP = 'root:x:0:\nbuilder:x:1001:\nsbuild:x:120:builder\n';

function environment(sessions: FakeAgentSession[], destroyed: string[] = []) {
  const first = new FakeAgentSession({ files: { '/etc/passwd': PASSWD, '/etc/group': GROUP, '/tmp/.keep': '' } });
  sessions.push(first);
  return new ChrootEnvironment({
    id: 'execenv-unit',
    driver: 'chroot',
    capabilities: ['isolation-chroot', 'root', 'revert'],
    closeOnSignal: false,
    session: first,
    env: { LANG: 'C.UTF-8' },
    restart: async () => {
      const next = new FakeAgentSession({ files: { '/etc/passwd': PASSWD } });
      sessions.push(next);
      return next;
    },
    destroy: async () => void destroyed.push('destroyed'),
  });
}

describe('ChrootEnvironment', () => {
  it('asks its agent for argv with the exact environment, user, groups and cwd', async () => {
    const sessions: FakeAgentSession[] = [];
    const env = environment(sessions);
    await env.exec(['true'], { cwd: '/tmp', user: 'builder', env: { CC: 'gcc' } });
    expect(sessions[0]?.execs).toEqual([
      {
        cwd: '/tmp',
        uid: 1000,
        gid: 1001,
        groups: [1001, 120],
        env: { PATH: DEFAULT_PATH, LANG: 'C.UTF-8', CC: 'gcc' },
        argv: ['true'],
      },
    ]);
    await env.close();
  });

  it('reverts by killing running commands and moving to the restarted agent', async () => {
    const sessions: FakeAgentSession[] = [];
    const env = environment(sessions);
    const running = env.exec(['sleep', '100']);
    await new Promise((r) => setTimeout(r, 10));
    await env.revert();
    expect(await running).toMatchObject({ signal: 'SIGKILL' });
    await env.exec(['echo', 'after']);
    expect(sessions).toHaveLength(2);
    expect(sessions[1]?.execs.map((e) => e.argv)).toEqual([['echo', 'after']]);
    await env.close();
  });

  it('refuses revert after close, and closes its agent session and lifecycle once', async () => {
    const sessions: FakeAgentSession[] = [];
    const destroyed: string[] = [];
    const env = environment(sessions, destroyed);
    await env.close();
    await env.close();
    await expect(env.revert()).rejects.toMatchObject({ code: 'CLOSED' });
    expect(destroyed).toEqual(['destroyed']);
    expect(sessions[0]?.closed).toBe(true);
  });
});
