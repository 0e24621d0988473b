import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pack as tarPack } from 'tar-stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { extractArchive, packTree, RootedFiles, resolveInRoot } from '../../src/files/index.js';

let dir: string;
let root: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'execenv-files-'));
  root = join(dir, 'root');
  await mkdir(join(root, 'tmp'), { recursive: true });
  await mkdir(join(root, 'etc'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

type Entry = { name: string; type?: 'file' | 'directory' | 'symlink' | 'link'; linkname?: string; content?: string };
function archive(entries: Entry[]): Readable {
  const p = tarPack();
  for (const e of entries)
    p.entry({ name: e.name, type: e.type ?? 'file', linkname: e.linkname, mode: 0o644 }, e.content ?? '');
  p.finalize();
  return p as unknown as Readable;
}

async function everything(path: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (p: string, rel: string) => {
    for (const n of (await readdir(p)).sort()) {
      out.push(`${rel}${n}`);
      if ((await lstat(join(p, n))).isDirectory()) await walk(join(p, n), `${rel}${n}/`);
    }
  };
  await walk(path, '');
  return out;
}

describe('resolveInRoot', () => {
  it('keeps .. and absolute symlinks inside the root', async () => {
    await symlink('/', join(root, 'tmp/up'));
    await symlink('../../../../etc', join(root, 'tmp/rel'));
    expect(await resolveInRoot(root, '/../../etc/passwd')).toBe(`${root}/etc/passwd`);
    expect(await resolveInRoot(root, '/tmp/up/etc/x')).toBe(`${root}/etc/x`);
    expect(await resolveInRoot(root, '/tmp/rel/x')).toBe(`${root}/etc/x`);
    expect(await resolveInRoot(root, '/tmp/up')).toBe(`${root}/tmp/up`);
    expect(await resolveInRoot(root, '/tmp/up', { followFinal: true })).toBe(root);
  });

  it('refuses relative paths, NUL and symlink loops', async () => {
    await symlink('/tmp/b', join(root, 'tmp/a'));
    await symlink('/tmp/a', join(root, 'tmp/b'));
    await expect(resolveInRoot(root, 'etc')).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
    await expect(resolveInRoot(root, '/etc\0')).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
    await expect(resolveInRoot(root, '/tmp/a/x')).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
  });
});

describe('extractArchive refuses hostile archives and rolls back', () => {
  const marker = `execenv-escape-${process.pid}`;
  it.each<[string, Entry[]]>([
    ['a ../ name', [{ name: `../${marker}` }]],
    ['an absolute name', [{ name: `/tmp/${marker}` }]],
    ['a .. in the middle', [{ name: `a/../../${marker}` }]],
    ['a hardlink to ../', [{ name: 'h', type: 'link', linkname: '../../etc/passwd' }]],
    ['a hardlink to an absolute path', [{ name: 'h', type: 'link', linkname: '/etc/passwd' }]],
    ['a symlink that climbs out, then a file through it', [{ name: 'l', type: 'symlink', linkname: '../../..' }]],
    [
      'a file through a symlink to / from the same archive',
      [{ name: 'l', type: 'symlink', linkname: '/' }, { name: `l/${marker}` }],
    ],
  ])('%s', async (_what, entries) => {
    const before = await everything(dir);
    const withEarlier: Entry[] = [
      { name: 'earlier', type: 'directory' },
      { name: 'earlier/file', content: 'x' },
      ...entries,
    ];
    await expect(extractArchive(archive(withEarlier), { root, destDir: '/tmp/dest' })).rejects.toMatchObject({
      code: 'UNSAFE_PATH',
    });
    expect(await everything(dir)).toEqual(before);
    await expect(stat(join(dir, '..', marker))).rejects.toThrow();
  });

  it('never writes through a symlink already in the root', async () => {
    await symlink('/', join(root, 'tmp/rootlink'));
    await extractArchive(archive([{ name: marker, content: 'inside' }]), { root, destDir: '/tmp/rootlink' });
    expect(await readFile(join(root, marker), 'utf8')).toBe('inside');
    await expect(stat(`/${marker}`)).rejects.toThrow();
  });

  it('replaces a symlink at the final component instead of writing through it', async () => {
    await writeFile(join(dir, 'host-file'), 'host');
    await symlink(join(dir, 'host-file'), join(root, 'tmp/f'));
    await extractArchive(archive([{ name: 'f', content: 'env' }]), { root, destDir: '/tmp' });
    expect(await readFile(join(dir, 'host-file'), 'utf8')).toBe('host');
    expect(await readFile(join(root, 'tmp/f'), 'utf8')).toBe('env');
  });
});

describe('packTree and extractArchive round trip', () => {
  it('keeps types, modes, owners, links, hardlinks and mtimes', async () => {
    const src = join(root, 'src');
    await mkdir(join(src, 'sub/deep'), { recursive: true });
    await writeFile(join(src, 'empty'), '');
    await writeFile(join(src, 'sub/suid'), 'x', { mode: 0o4755 });
    await writeFile(join(src, 'sub/deep/none'), 'y', { mode: 0o000 });
    await symlink('../empty', join(src, 'sub/rel'));
    await symlink('/etc/abs', join(src, 'abs'));
    const { chown, chmod, link, utimes } = await import('node:fs/promises');
    await chmod(join(src, 'sub/suid'), 0o4755);
    await chmod(join(src, 'sub/deep/none'), 0o000);
    await chown(join(src, 'empty'), 1234, 2345);
    await link(join(src, 'empty'), join(src, 'hard'));
    await utimes(join(src, 'sub'), new Date('2020-01-02T03:04:05Z'), new Date('2020-01-02T03:04:05Z'));
    const out = join(dir, 'out');
    await extractArchive(packTree(root, '/src'), { root: out, destDir: '/' });
    expect(await everything(out)).toEqual(await everything(src));
    expect((await stat(join(out, 'sub/suid'))).mode & 0o7777).toBe(0o4755);
    expect((await stat(join(out, 'sub/deep/none'))).mode & 0o7777).toBe(0o000);
    expect(await stat(join(out, 'empty'))).toMatchObject({ uid: 1234, gid: 2345, size: 0 });
    expect((await stat(join(out, 'hard'))).ino).toBe((await stat(join(out, 'empty'))).ino);
    expect(await readlink(join(out, 'sub/rel'))).toBe('../empty');
    expect(await readlink(join(out, 'abs'))).toBe('/etc/abs');
    expect((await stat(join(out, 'sub'))).mtime.toISOString()).toBe('2020-01-02T03:04:05.000Z');
  });

  it("packs the root's file behind a symlink to /etc/shadow, never the host's", async () => {
    await writeFile(join(root, 'etc/shadow'), 'env secret');
    await symlink('/etc/shadow', join(root, 'tmp/shadowlink'));
    const files = new RootedFiles(root);
    await files.pull('/tmp/shadowlink', join(dir, 'pulled'));
    expect(await readFile(join(dir, 'pulled'), 'utf8')).toBe('env secret');
  });

  it('streams a missing path as NOT_FOUND', async () => {
    const s = packTree(root, '/missing');
    await expect(new Promise((_, reject) => s.on('error', reject).resume())).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
  });
});

describe('RootedFiles', () => {
  it('pushes bytes with mode and owner, through an in-root symlink to /', async () => {
    const files = new RootedFiles(root);
    await symlink('/', join(root, 'tmp/rootlink'));
    await files.push(new TextEncoder().encode('data'), '/tmp/rootlink/pushed', { mode: 0o640, uid: 1234, gid: 2345 });
    expect(await files.stat('/pushed')).toMatchObject({ type: 'file', mode: 0o640, uid: 1234, gid: 2345, size: 4 });
    expect(await files.stat('/tmp/rootlink')).toMatchObject({ type: 'symlink', linkTarget: '/' });
    await expect(stat('/pushed')).rejects.toThrow();
  });

  it('pushes and pulls a 100 MB file with flat memory', async () => {
    const files = new RootedFiles(root);
    const big = join(dir, 'big');
    const block = Buffer.alloc(1 << 20);
    for (let i = 0; i < block.length; i++) block[i] = (i * 31) & 0xff;
    await writeFile(big, '');
    const { appendFile } = await import('node:fs/promises');
    for (let i = 0; i < 100; i++) await appendFile(big, block);
    const before = process.memoryUsage();
    await files.push(big, '/tmp/big');
    await files.pull('/tmp/big', join(dir, 'back'));
    const after = process.memoryUsage();
    const sha = async (p: string) =>
      createHash('sha256')
        .update(await readFile(p))
        .digest('hex');
    expect(await sha(join(dir, 'back'))).toBe(await sha(big));
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(50 * 2 ** 20);
  });

  it('pulls a directory tree and reports missing paths as NOT_FOUND', async () => {
    const files = new RootedFiles(root);
    await mkdir(join(root, 'tmp/t/a'), { recursive: true });
    await writeFile(join(root, 'tmp/t/a/f'), 'f');
    await files.pull('/tmp/t', join(dir, 'pulled'));
    expect(await everything(join(dir, 'pulled'))).toEqual(['a', 'a/f']);
    await expect(files.pull('/nope', join(dir, 'x'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(files.readDir('/nope')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(await files.stat('/nope')).toBeNull();
  });
});
