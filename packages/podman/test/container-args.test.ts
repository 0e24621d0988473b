import { describe, expect, it } from 'vitest';
import { createArgs } from '../src/container-args.js';

describe('createArgs', () => {
  it('makes the agent the entrypoint, listening in the bind-mounted runtime directory', () => {
    expect(
      createArgs({
        name: 'execenv-abc',
        image: 'localhost/execenv-rootfs:00ff',
        owner: '42:1234@host',
        transport: 'socket',
        agentBinary: '/opt/agent/execenv-agent',
        runtimeDir: '/tmp/execenv-podman-x',
        network: 'none',
      }),
    ).toEqual([
      'create',
      '--name',
      'execenv-abc',
      '-i',
      '--user',
      '0:0',
      '--workdir',
      '/',
      '--label',
      'execenv.id=execenv-abc',
      '--label',
      'execenv.owner=42:1234@host',
      '--network',
      'none',
      '--mount',
      'type=bind,source=/opt/agent/execenv-agent,destination=/.execenv/agent,ro=true',
      '--mount',
      'type=bind,source=/tmp/execenv-podman-x,destination=/.execenv/run',
      '--entrypoint',
      '["/.execenv/agent","--listen","/.execenv/run/agent.sock"]',
      'localhost/execenv-rootfs:00ff',
    ]);
  });

  it('gives the exec transport a private tmpfs for the socket and no host paths', () => {
    const args = createArgs({ name: 'e', image: 'i', owner: 'o', transport: 'exec', network: 'podman' });
    expect(args).toContain('--tmpfs');
    expect(args[args.indexOf('--tmpfs') + 1]).toBe('/.execenv/run:mode=0700');
    expect(args.join(' ')).not.toContain('type=bind');
  });

  it('maps cpus, memory, pids and mounts', () => {
    const args = createArgs({
      name: 'e',
      image: 'i',
      owner: 'o',
      transport: 'exec',
      network: 'none',
      resources: { cpu: 2, memory: '512M' },
      pids: 100,
      mounts: [
        { source: '/srv/in', target: '/in', readOnly: true },
        { source: '/srv/out', target: '/out' },
      ],
    });
    expect(args.slice(args.indexOf('--cpus'), args.indexOf('--entrypoint'))).toEqual([
      '--cpus',
      '2',
      '--memory',
      String(512 * 1024 * 1024),
      '--pids-limit',
      '100',
      '--mount',
      'type=bind,source=/srv/in,destination=/in,ro=true',
      '--mount',
      'type=bind,source=/srv/out,destination=/out',
    ]);
  });

  it('refuses a mount path podman would split at a comma', () => {
    expect(() =>
      createArgs({
        name: 'e',
        image: 'i',
        owner: 'o',
        transport: 'exec',
        network: 'none',
        mounts: [{ source: '/srv/a,b', target: '/in' }],
      }),
    ).toThrow(expect.objectContaining({ code: 'INVALID_SPEC' }));
  });
});

describe('createArgs with start', () => {
  it('runs the container with --rm in the same podman process, writing where its conmon pid goes', () => {
    const plan = { name: 'e', image: 'i', owner: 'o', transport: 'exec' as const, network: 'none' };
    const args = createArgs({ ...plan, conmonPidFile: '/tmp/x/conmon.pid' }, true);
    expect(args.slice(0, 10)).toEqual([
      'run',
      '--rm',
      '--name',
      'e',
      '-i',
      '--user',
      '0:0',
      '--workdir',
      '/',
      '--conmon-pidfile',
    ]);
    expect(args[10]).toBe('/tmp/x/conmon.pid');
    expect(createArgs({ ...plan, conmonPidFile: '/tmp/x/conmon.pid' })).not.toContain('--conmon-pidfile');
    expect(args.at(-1)).toBe('i');
  });
});
