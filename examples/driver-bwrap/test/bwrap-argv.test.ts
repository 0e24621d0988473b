import { describe, expect, it } from 'vitest';
import { sandboxArgv } from '../src/bwrap-argv.js';

const plan = {
  bwrap: '/usr/bin/bwrap',
  agent: '/opt/agent/execenv-agent',
  root: '/state/envs/execenv-x/root',
  network: 'none' as const,
  mounts: [],
};

describe('sandboxArgv', () => {
  it('starts the agent as the init of the root, in private namespaces without a network', () => {
    expect(sandboxArgv(plan)).toEqual([
      '/usr/bin/bwrap',
      '--die-with-parent',
      '--unshare-ipc',
      '--unshare-uts',
      '--unshare-net',
      '--cap-add',
      'ALL',
      '--dev',
      '/dev',
      '--ro-bind',
      '/opt/agent/execenv-agent',
      '/execenv-agent',
      '--bind',
      '/state/envs/execenv-x/root',
      '/newroot',
      '--',
      '/execenv-agent',
      '--root',
      '/newroot',
      '--stdio',
    ]);
  });

  it('shares the host network only when asked', () => {
    expect(sandboxArgv({ ...plan, network: 'host' })).not.toContain('--unshare-net');
  });

  it('stages each mount in the sandbox, then lets the agent attach it inside the root', () => {
    const argv = sandboxArgv({
      ...plan,
      mounts: [
        { source: '/srv/src', target: '/build/src', readOnly: true },
        { source: '/srv/out', target: '/build/out' },
      ],
    });
    const dashDash = argv.indexOf('--');
    expect(argv.slice(0, dashDash).join(' ')).toContain(
      '--ro-bind /srv/src /execenv-binds/0 --bind /srv/out /execenv-binds/1',
    );
    expect(argv.slice(dashDash).join(' ')).toBe(
      '-- /execenv-agent --root /newroot --bind-ro /execenv-binds/0 /build/src --bind /execenv-binds/1 /build/out --stdio',
    );
  });
});
