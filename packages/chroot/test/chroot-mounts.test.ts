import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { agentArgv } from '../src/agent-server.js';
import { createNetworkNamespace, mountOverlay, type RootLayout } from '../src/chroot-mounts.js';

let dir: string;
let layout: RootLayout;
const ran: string[][] = [];
const ctx = (mode: 'root' | 'rootless') => ({
  mode,
  run: async (argv: string[]) => void ran.push(argv),
  hostPath: (p: string) => p,
});

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'execenv-mounts-'));
  layout = { base: '/cache/base', upper: `${dir}/upper`, work: `${dir}/work`, root: `${dir}/root` };
  ran.length = 0;
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('mountOverlay', () => {
  it('mounts only the overlay on the host: everything inside is mounted by the agent', async () => {
    await mountOverlay(layout, ctx('root'));
    expect(ran).toEqual([
      [
        'mount',
        '-t',
        'overlay',
        'overlay',
        '-o',
        `lowerdir=/cache/base,upperdir=${dir}/upper,workdir=${dir}/work`,
        layout.root,
      ],
    ]);
  });

  it('keeps overlay metadata in user xattrs in rootless mode', async () => {
    await mountOverlay(layout, ctx('rootless'));
    expect(ran[0]?.[5]).toMatch(/,userxattr$/);
  });

  it('refuses layer paths overlayfs cannot parse, before mounting anything', async () => {
    await expect(mountOverlay({ ...layout, base: '/images/a,b' }, ctx('root'))).rejects.toMatchObject({
      code: 'INVALID_SPEC',
      field: 'image',
    });
    expect(ran).toEqual([]);
  });
});

describe('agentArgv', () => {
  it('starts the agent as the init of the root, with binds, network, personality and socket', () => {
    expect(
      agentArgv({
        binary: '/pkg/bin/amd64/execenv-agent',
        enter: ['nsenter', '--target=42', '--user', '--mount'],
        root: '/state/root',
        linux32: true,
        netns: '/state/netns',
        socket: '/state/agent.sock',
        owner: 1000,
        binds: [
          { source: '/srv/data', target: '/data', readOnly: true },
          { source: '/srv/out', target: '/out' },
        ],
      }),
    ).toEqual([
      'nsenter',
      '--target=42',
      '--user',
      '--mount',
      '/pkg/bin/amd64/execenv-agent',
      '--root',
      '/state/root',
      '--netns',
      '/state/netns',
      '--personality',
      'linux32',
      '--bind-ro',
      '/srv/data',
      '/data',
      '--bind',
      '/srv/out',
      '/out',
      '--listen',
      '/state/agent.sock',
      '--socket-owner',
      '1000',
    ]);
  });
});

describe('createNetworkNamespace', () => {
  it('binds a new network namespace to a file and brings its loopback up', async () => {
    await createNetworkNamespace(`${dir}/netns`, ctx('root'));
    expect(ran).toEqual([
      ['unshare', '--net', '--', 'mount', '--bind', '/proc/self/ns/net', `${dir}/netns`],
      ['nsenter', `--net=${dir}/netns`, '--', 'ip', 'link', 'set', 'lo', 'up'],
    ]);
  });
});
