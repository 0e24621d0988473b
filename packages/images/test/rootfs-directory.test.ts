import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type ExecenvEvent, hostRunner } from '@execenv/core';
import { pack } from 'tar-stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ImageCache } from '../src/image-cache.js';
import { rootfsDirectory } from '../src/rootfs-directory.js';

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
  const p = pack();
  for (const e of entries)
    p.entry(
      { name: e.name, type: e.type ?? 'file', linkname: e.linkname, mode: e.type === 'directory' ? 0o755 : 0o644 },
      e.content ?? '',
    );
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p) chunks.push(c as Buffer);
  const path = join(dir, name);
  await writeFile(path, Buffer.concat(chunks));
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
    const converted = join(cache.dir, 'converted', 'directory-v1');
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
