import { mkdir, mkdtemp, readlink, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mountBinds, mountRoot, type RootLayout } from '../src/chroot-mounts.js';

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
  await mkdir(layout.root);
  ran.length = 0;
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('mountRoot', () => {
  it('mounts the overlay, proc, sys, a minimal dev, devpts and shm, in that order (root mode)', async () => {
    await mountRoot(layout, ctx('root'));
    const r = layout.root;
    expect(ran).toEqual([
      ['mount', '-t', 'overlay', 'overlay', '-o', `lowerdir=/cache/base,upperdir=${dir}/upper,workdir=${dir}/work`, r],
      ['mount', '-t', 'proc', '-o', 'nosuid,nodev,noexec', 'proc', `${r}/proc`],
      ['mount', '--rbind', '/sys', `${r}/sys`],
      ['mount', '--make-rslave', `${r}/sys`],
      ['mount', '-t', 'tmpfs', '-o', 'mode=755,nosuid,size=65536k', 'tmpfs', `${r}/dev`],
      ...['null', 'zero', 'full', 'random', 'urandom', 'tty'].map((d) => [
        'mount',
        '--bind',
        `/dev/${d}`,
        `${r}/dev/${d}`,
      ]),
      ['mount', '-t', 'devpts', '-o', 'newinstance,ptmxmode=0666,mode=620', 'devpts', `${r}/dev/pts`],
      ['mount', '-t', 'tmpfs', '-o', 'mode=1777,nosuid,nodev', 'tmpfs', `${r}/dev/shm`],
    ]);
    expect(await readlink(`${r}/dev/ptmx`)).toBe('pts/ptmx');
    expect(await readlink(`${r}/dev/fd`)).toBe('/proc/self/fd');
  });

  it('uses userxattr and an rbind of /proc in rootless mode', async () => {
    await mountRoot(layout, ctx('rootless'));
    expect(ran[0]?.[5]).toMatch(/,userxattr$/);
    expect(ran[1]).toEqual(['mount', '--rbind', '/proc', `${layout.root}/proc`]);
  });

  it('refuses layer paths overlayfs cannot parse, before mounting anything', async () => {
    await expect(mountRoot({ ...layout, base: '/images/a,b' }, ctx('root'))).rejects.toMatchObject({
      code: 'INVALID_SPEC',
      field: 'image',
    });
    expect(ran).toEqual([]);
  });
});

describe('mountBinds', () => {
  it('resolves targets inside the root, so an image symlink cannot point a mount at the host', async () => {
    const { symlink } = await import('node:fs/promises');
    await symlink('/', `${layout.root}/escape`);
    await mountBinds(layout, [{ source: '/srv/data', target: '/escape/etc', readOnly: true }], ctx('root'));
    expect(ran).toEqual([
      ['mount', '--rbind', '/srv/data', `${layout.root}/etc`],
      ['mount', '-o', 'remount,bind,ro', `${layout.root}/etc`],
    ]);
    expect((await stat(`${layout.root}/etc`)).isDirectory()).toBe(true);
  });
});

describe('createNetworkNamespace', () => {
  it('binds a new network namespace to a file and brings its loopback up', async () => {
    const { createNetworkNamespace } = await import('../src/chroot-mounts.js');
    await createNetworkNamespace(`${dir}/netns`, ctx('root'));
    expect(ran).toEqual([
      ['unshare', '--net', '--', 'mount', '--bind', '/proc/self/ns/net', `${dir}/netns`],
      ['nsenter', `--net=${dir}/netns`, '--', 'ip', 'link', 'set', 'lo', 'up'],
    ]);
  });
});
