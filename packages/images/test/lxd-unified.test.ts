import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { hostRunner } from '@execenv/core';
import { pack } from 'tar-stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ImageCache } from '../src/image-cache.js';
import { convertToLxdUnified, lxdMetadataYaml } from '../src/lxd-unified.js';

const run = promisify(execFile);
let dir: string;
let cache: ImageCache;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'execenv-lxd-'));
  cache = new ImageCache({ dir: join(dir, 'cache') });
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function tarball(
  entries: { name: string; type?: 'file' | 'directory' | 'symlink' | 'link'; linkname?: string; content?: string }[],
) {
  const p = pack();
  for (const e of entries)
    p.entry({ name: e.name, type: e.type ?? 'file', linkname: e.linkname, mode: 0o755 }, e.content ?? '');
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p) chunks.push(c as Buffer);
  const path = join(dir, 'rootfs.tar');
  await writeFile(path, Buffer.concat(chunks));
  await run('xz', ['-kf', path]);
  return `${path}.xz`;
}

const info = {
  architecture: 'amd64',
  os: 'debian',
  release: 'bookworm',
  creationDate: new Date('2026-01-02T00:00:00Z'),
};

describe('convertToLxdUnified', () => {
  it('puts metadata and templates first and the rootfs under rootfs/, hardlinks rewritten', async () => {
    const image = await tarball([
      { name: './', type: 'directory' },
      { name: './bin/', type: 'directory' },
      { name: './bin/sh', content: 'shell' },
      { name: './bin/ash', type: 'link', linkname: './bin/sh' },
      { name: './lib64', type: 'symlink', linkname: 'usr/lib64' },
    ]);
    const entry = await convertToLxdUnified(image, info, { cache, runner: hostRunner() });
    const listing = (await run('tar', ['-tvf', entry.path])).stdout.trim().split('\n');
    expect(listing.map((l) => l.split(/\s+/).slice(5).join(' '))).toEqual([
      'metadata.yaml',
      'templates/',
      'templates/hostname.tpl',
      'templates/hosts.tpl',
      'rootfs/',
      'rootfs/bin/',
      'rootfs/bin/sh',
      'rootfs/bin/ash link to rootfs/bin/sh',
      'rootfs/lib64 -> usr/lib64',
    ]);
    const yaml = (await run('tar', ['-xOf', entry.path, 'metadata.yaml'])).stdout;
    expect(yaml).toBe(lxdMetadataYaml(info));
    expect(yaml).toContain('architecture: "x86_64"\ncreation_date: 1767312000\n');
    expect(yaml).toContain('  /etc/hostname:\n    when:\n      - create\n      - copy\n');
    const again = await convertToLxdUnified(image, info, { cache, runner: hostRunner() });
    expect(again.digest).toBe(entry.digest);
  });

  it('keeps long names under rootfs/: the pax path of the input does not survive the move', async () => {
    const long = `./usr/share/${'deep/'.repeat(30)}file`;
    const image = await tarball([
      { name: './', type: 'directory' },
      { name: long, content: 'x' },
      { name: './hard', type: 'link', linkname: long },
    ]);
    const entry = await convertToLxdUnified(image, info, { cache, runner: hostRunner() });
    const names = (await run('tar', ['-tf', entry.path])).stdout.trim().split('\n');
    expect(names.slice(-3)).toEqual(['rootfs/', `rootfs/${long.slice(2)}`, 'rootfs/hard']);
    const listing = (await run('tar', ['-tvf', entry.path])).stdout;
    expect(listing).toContain(`rootfs/hard link to rootfs/${long.slice(2)}`);
  });

  it('passes extended attributes through byte for byte, binary values too', async () => {
    const src = join(dir, 'src');
    await mkdir(src);
    await writeFile(join(src, 'ping'), 'x');
    // 0x80 and up are no UTF-8 text: a file capability mask can hold such bytes.
    await run('setfattr', ['-n', 'user.bin', '-v', '0x0001ff80c0fe', join(src, 'ping')]);
    await run('setfattr', ['-n', 'user.text', '-v', 'héllo', join(src, 'ping')]);
    const tarPath = join(dir, 'xattrs.tar');
    await run('tar', ['--xattrs', '--xattrs-include=user.*', '-C', src, '-cf', tarPath, '.']);
    const entry = await convertToLxdUnified(tarPath, info, { cache, runner: hostRunner() });
    const out = join(dir, 'out');
    await mkdir(out);
    await run('tar', ['--xattrs', '--xattrs-include=user.*', '-C', out, '-xf', entry.path]);
    const { stdout } = await run('getfattr', ['--absolute-names', '-e', 'hex', '-d', join(out, 'rootfs/ping')]);
    expect(stdout).toContain('user.bin=0x0001ff80c0fe');
    expect(stdout).toContain(`user.text=0x${Buffer.from('héllo').toString('hex')}`);
  });

  it('stores the unified tarball zstd-compressed, named for its format, far smaller than the rootfs', async () => {
    const image = await tarball([
      { name: './', type: 'directory' },
      { name: './big', content: 'execenv '.repeat(500_000) },
    ]);
    const entry = await convertToLxdUnified(image, info, { cache, runner: hostRunner() });
    expect(entry.format).toBe('zstd');
    expect(entry.name.endsWith('.tar.zst)')).toBe(true);
    expect((await readFile(entry.path)).subarray(0, 4)).toEqual(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]));
    expect(entry.size).toBeLessThan(4_000_000 / 20);
    const names = (await run('tar', ['--zstd', '-tf', entry.path])).stdout.trim().split('\n');
    expect(names).toContain('rootfs/big');
  });

  it('refuses a rootfs with an unsafe entry and caches nothing', async () => {
    const image = await tarball([{ name: './ok' }, { name: '../escape' }]);
    await expect(convertToLxdUnified(image, info, { cache, runner: hostRunner() })).rejects.toMatchObject({
      code: 'UNSAFE_PATH',
    });
    expect(await cache.list()).toEqual([]);
  });
});
