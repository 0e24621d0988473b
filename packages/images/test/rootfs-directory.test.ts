import { execFile } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type ExecenvEvent, hostRunner } from '@execenv/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ImageCache } from '../src/image-cache.js';
import { DIRECTORY_CONVERTER_VERSION, rootfsDirectory } from '../src/rootfs-directory.js';
import { tarOf } from '../src/testing/image-files.js';

const run = promisify(execFile);
let dir: string;
let cache: ImageCache;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'execenv-rootfs-'));
  cache = new ImageCache({ dir: join(dir, 'cache') });
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

type Entry = { name: string; type?: 'file' | 'directory' | 'symlink' | 'link'; linkname?: string; content?: string };
async function tarball(name: string, entries: Entry[]): Promise<string> {
  const path = join(dir, name);
  const mode = (e: Entry) => (e.type === 'directory' ? 0o755 : 0o644);
  await writeFile(
    path,
    await tarOf(
      entries.map((e) => ({
        header: { name: e.name, type: e.type ?? 'file', linkname: e.linkname, mode: mode(e) },
        body: e.content ?? '',
      })),
    ),
  );
  return path;
}

const rootfs: Entry[] = [
  { name: './', type: 'directory' },
  { name: './etc/', type: 'directory' },
  { name: './etc/os-release', content: 'ID=test\n' },
  { name: './bin/', type: 'directory' },
  { name: './bin/sh', content: '#!' },
  { name: './bin/ash', type: 'link', linkname: './bin/sh' },
  { name: './usr/', type: 'directory' },
  { name: './usr/lib', type: 'symlink', linkname: '../lib' },
];

describe('rootfsDirectory', () => {
  it.each([
    ['plain', []],
    ['gzip', ['gzip', '-kf']],
    ['xz', ['xz', '-kf']],
    ['zstd', ['zstd', '-qkf']],
    ['bzip2', ['bzip2', '-kf']],
  ])('extracts a %s tarball once, then answers from the cache', async (_format, compress) => {
    let path = await tarball('rootfs.tar', rootfs);
    if (compress.length > 0) {
      await run(compress[0]!, [...compress.slice(1), path]);
      path = `${path}.${{ gzip: 'gz', xz: 'xz', zstd: 'zst', bzip2: 'bz2' }[compress[0] as 'gzip']}`;
    }
    const events: ExecenvEvent[] = [];
    const root = await rootfsDirectory(path, { cache, runner: hostRunner(), onEvent: (e) => events.push(e) });
    expect(await readFile(join(root, 'etc/os-release'), 'utf8')).toBe('ID=test\n');
    expect(await readdir(join(root, 'bin'))).toEqual(['ash', 'sh']);
    expect(await rootfsDirectory(path, { cache, runner: hostRunner() })).toBe(root);
    expect(events.filter((e) => e.type === 'image-convert')).toHaveLength(1);
  });

  it.skipIf(process.getuid?.() !== 0)(
    'keeps owners, modes, hardlinks, symlinks and device nodes when running as root',
    async () => {
      const path = join(dir, 'special.tar');
      await writeFile(
        path,
        await tarOf([
          { header: { name: './', type: 'directory', mode: 0o755 } },
          { header: { name: './su', mode: 0o4755, uid: 1234, gid: 5678 }, body: 'x' },
          { header: { name: './su-again', type: 'link', linkname: './su' } },
          { header: { name: './to-su', type: 'symlink', linkname: 'su' } },
          { header: { name: './null', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3 } },
          { header: { name: './sda', type: 'block-device', mode: 0o660, devmajor: 8, devminor: 0, gid: 6 } },
          { header: { name: './fifo', type: 'fifo', mode: 0o600 } },
        ]),
      );
      const root = await rootfsDirectory(path, { cache, runner: hostRunner() });
      const su = await lstat(join(root, 'su'));
      expect([su.uid, su.gid, su.mode & 0o7777, su.nlink]).toEqual([1234, 5678, 0o4755, 2]);
      expect((await lstat(join(root, 'su-again'))).ino).toBe(su.ino);
      expect(await readlink(join(root, 'to-su'))).toBe('su');
      const nul = await lstat(join(root, 'null'));
      expect([nul.isCharacterDevice(), nul.rdev, nul.mode & 0o777]).toEqual([true, 0x103, 0o666]);
      const sda = await lstat(join(root, 'sda'));
      expect([sda.isBlockDevice(), sda.rdev, sda.gid]).toEqual([true, 0x800, 6]);
      expect((await lstat(join(root, 'fifo'))).isFIFO()).toBe(true);
    },
  );

  it('keeps extended attributes: user.* always, trusted.* (and so security.*) when running as root', async () => {
    const path = join(dir, 'xattrs.tar');
    const pax = { 'SCHILY.xattr.user.execenv': 'kept', 'SCHILY.xattr.trusted.execenv': 'root only' };
    await writeFile(
      path,
      await tarOf([
        { header: { name: './', type: 'directory', mode: 0o755 } },
        { header: { name: './ping', mode: 0o755, pax }, body: 'x' },
      ]),
    );
    const root = await rootfsDirectory(path, { cache, runner: hostRunner() });
    const { stdout } = await run('getfattr', ['--absolute-names', '--dump', '--match=-', join(root, 'ping')]);
    const attrs = stdout.split('\n').filter((l) => l.includes('='));
    expect(attrs).toEqual(
      process.getuid?.() === 0 ? ['trusted.execenv="root only"', 'user.execenv="kept"'] : ['user.execenv="kept"'],
    );
  });

  it('returns a directory as it is', async () => {
    await mkdir(join(dir, 'tree'));
    expect(await rootfsDirectory(join(dir, 'tree'), { cache, runner: hostRunner() })).toBe(join(dir, 'tree'));
  });

  it.each<[string, Entry[]]>([
    ['a ../ name', [{ name: '../escaped' }]],
    ['an absolute name', [{ name: '/escaped' }]],
    ['a file through a symlinked parent', [{ name: 'l', type: 'symlink', linkname: '/' }, { name: 'l/escaped' }]],
    ['a symlink climbing out', [{ name: 'l', type: 'symlink', linkname: '../../../..' }]],
    ['a hardlink to outside', [{ name: 'h', type: 'link', linkname: '../../etc/passwd' }]],
  ])('refuses a rootfs with %s and writes nothing outside the cache', async (_what, hostile) => {
    const path = await tarball('evil.tar', [...rootfs, ...hostile]);
    const before = (await readdir(dir)).sort();
    await expect(rootfsDirectory(path, { cache, runner: hostRunner() })).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
    expect((await readdir(dir)).filter((n) => n !== 'cache').sort()).toEqual(before.filter((n) => n !== 'cache'));
    const converted = join(cache.dir, 'converted', `directory-v${DIRECTORY_CONVERTER_VERSION}`);
    expect(await readdir(converted).catch(() => [])).toEqual([]);
  });

  it('says IMAGE_NOT_FOUND for a missing path or a file that is no tarball', async () => {
    await expect(rootfsDirectory(join(dir, 'nope.tar'), { cache, runner: hostRunner() })).rejects.toMatchObject({
      code: 'IMAGE_NOT_FOUND',
    });
    await writeFile(join(dir, 'junk'), 'not a tarball');
    await expect(rootfsDirectory(join(dir, 'junk'), { cache, runner: hostRunner() })).rejects.toMatchObject({
      code: 'IMAGE_NOT_FOUND',
    });
  });
});
