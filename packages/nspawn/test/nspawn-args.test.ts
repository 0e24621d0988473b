import { describe, expect, it } from 'vitest';
import { escapeNspawnPath, nspawnArgv } from '../src/nspawn-args.js';

const base = {
  nspawn: '/usr/bin/systemd-nspawn',
  machine: 'execenv-abc',
  directory: '/cache/trees/abc',
  upper: '/state/nspawn/envs/execenv-abc/upper',
  mode: 'plain' as const,
  network: 'none' as const,
  runtimeDir: '/state/nspawn/envs/execenv-abc/run',
  agentBinary: '/pkg/bin/amd64/execenv-agent',
  binds: [],
  linux32: false,
  scope: false,
  properties: [],
  killInit: true,
};

describe('nspawnArgv', () => {
  it('runs the agent as init over an overlay of the image, without machined, in a private network', () => {
    expect(nspawnArgv({ ...base, setpriv: '/usr/bin/setpriv' })).toEqual([
      '/usr/bin/systemd-nspawn',
      '--quiet',
      '--register=no',
      '--keep-unit',
      '--settings=no',
      '--link-journal=no',
      '--machine=execenv-abc',
      '--directory=/cache/trees/abc',
      '--overlay=/cache/trees/abc:/state/nspawn/envs/execenv-abc/upper:/',
      '--private-network',
      '--bind=/state/nspawn/envs/execenv-abc/run:/run/execenv',
      '--bind-ro=/pkg/bin/amd64/execenv-agent:/run/execenv-agent',
      '--setenv=EXECENV_AGENT_TREE=subreaper',
      '--console=pipe',
      '--',
      '/run/execenv-agent',
      '--listen',
      '/run/execenv/agent.sock',
    ]);
  });

  it('boots a kept machine directory on the host network, with binds, the 32-bit personality and an orderly stop', () => {
    expect(
      nspawnArgv({
        ...base,
        machine: 'builder',
        directory: '/state/nspawn/machines/builder',
        upper: undefined,
        mode: 'boot',
        setpriv: '/usr/bin/setpriv',
        network: 'host',
        linux32: true,
        killInit: false,
        binds: [
          { source: '/srv/src', target: '/build/src', readOnly: true },
          { source: '/srv/out:1', target: '/build/out' },
        ],
      }),
    ).toEqual([
      '/usr/bin/setpriv',
      '--pdeathsig',
      'SIGTERM',
      '--',
      '/usr/bin/systemd-nspawn',
      '--quiet',
      '--register=no',
      '--keep-unit',
      '--settings=no',
      '--link-journal=no',
      '--machine=builder',
      '--directory=/state/nspawn/machines/builder',
      '--personality=x86',
      '--bind=/state/nspawn/envs/execenv-abc/run:/run/execenv',
      '--bind-ro=/pkg/bin/amd64/execenv-agent:/run/execenv-agent',
      '--bind-ro=/srv/src:/build/src',
      '--bind=/srv/out\\:1:/build/out',
      '--console=read-only',
      '--boot',
      '--',
      '--show-status=yes',
      '--log-target=console',
    ]);
  });

  it('runs a container on a network in the namespace prepared for it', () => {
    const netns = '/state/nspawn/envs/execenv-abc/netns';
    const argv = nspawnArgv({ ...base, network: { namespacePath: netns } });
    expect(argv.slice(8, 12)).toEqual([
      '--overlay=/cache/trees/abc:/state/nspawn/envs/execenv-abc/upper:/',
      `--network-namespace-path=${netns}`,
      '--resolv-conf=off',
      '--bind=/state/nspawn/envs/execenv-abc/run:/run/execenv',
    ]);
    expect(argv).not.toContain('--private-network');
    expect(nspawnArgv({ ...base, mode: 'boot', network: { namespacePath: netns } })).toContain(
      `--network-namespace-path=${netns}`,
    );
  });

  it('kills a booted ephemeral init outright', () => {
    const argv = nspawnArgv({ ...base, mode: 'boot' });
    expect(argv.slice(-6)).toEqual([
      '--console=read-only',
      '--kill-signal=SIGKILL',
      '--boot',
      '--',
      '--show-status=yes',
      '--log-target=console',
    ]);
  });

  it('gives the container a scope with resource properties where systemd is PID 1', () => {
    const argv = nspawnArgv({ ...base, scope: true, properties: ['CPUQuota=200%', 'MemoryMax=536870912'] });
    expect(argv.slice(0, 6)).toEqual([
      '/usr/bin/systemd-nspawn',
      '--quiet',
      '--register=no',
      '--property=CPUQuota=200%',
      '--property=MemoryMax=536870912',
      '--settings=no',
    ]);
    expect(argv).not.toContain('--keep-unit');
  });
});

describe('escapeNspawnPath', () => {
  it('escapes colons and backslashes, which nspawn reads as separators and escapes', () => {
    expect(escapeNspawnPath('/a:b\\c')).toBe('/a\\:b\\\\c');
    expect(escapeNspawnPath('/plain/path')).toBe('/plain/path');
  });
});
