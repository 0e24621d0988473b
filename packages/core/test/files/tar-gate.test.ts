import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmod,
  link,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ExecenvError, UnsafePathError } from '../../src/errors.js';
import { extractWithGnuTar } from '../../src/files/gnu-tar-extract.js';
import { TarGate } from '../../src/files/tar-gate.js';
import { createRunner } from '../../src/runner.js';

const run = promisify(execFile);
const runner = createRunner();
const isRoot = process.getuid?.() === 0;

let tmp: string;
beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'execenv-tar-gate-'));
});
afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

// ---- archives written by hand ----

interface HeaderFields {
  name: string;
  type?: string;
  size?: number;
  linkname?: string;
  mode?: number;
  prefix?: string;
  magic?: string;
  version?: string;
  devmajor?: number;
  checksumDelta?: number;
}

function put(block: Buffer, at: number, width: number, text: string): void {
  block.write(text.slice(0, width), at, 'latin1');
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

/** One ustar header block with a correct checksum (unless checksumDelta says otherwise). */
function header(f: HeaderFields): Buffer {
  const b = Buffer.alloc(512);
  put(b, 0, 100, f.name);
  put(b, 100, 8, octal(f.mode ?? (f.type === '5' ? 0o755 : 0o644), 8));
  put(b, 108, 8, octal(0, 8));
  put(b, 116, 8, octal(0, 8));
  put(b, 124, 12, octal(f.size ?? 0, 12));
  put(b, 136, 12, octal(1_700_000_000, 12));
  b[156] = (f.type ?? '0').charCodeAt(0);
  put(b, 157, 100, f.linkname ?? '');
  put(b, 257, 6, f.magic ?? 'ustar\0');
  put(b, 263, 2, f.version ?? '00');
  if (f.devmajor !== undefined) {
    put(b, 329, 8, octal(f.devmajor, 8));
    put(b, 337, 8, octal(3, 8));
  }
  put(b, 345, 155, f.prefix ?? '');
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of b) sum += byte;
  put(b, 148, 8, `${(sum + (f.checksumDelta ?? 0)).toString(8).padStart(6, '0')}\0 `);
  return b;
}

function pad(data: Buffer): Buffer {
  return Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}

function file(name: string, content = '', more: Partial<HeaderFields> = {}): Buffer {
  const data = Buffer.from(content);
  return Buffer.concat([header({ name, size: data.length, ...more }), pad(data)]);
}

function dir(name: string): Buffer {
  return header({ name, type: '5' });
}

function paxRecord(key: string, value: string): string {
  const base = `${key}=${value}\n`;
  let len = base.length + 2;
  while (`${len} ${base}`.length !== len) len = `${len} ${base}`.length;
  return `${len} ${base}`;
}

function pax(records: [string, string][], type = 'x'): Buffer {
  const data = Buffer.from(records.map(([k, v]) => paxRecord(k, v)).join(''));
  return Buffer.concat([header({ name: 'PaxHeaders/x', type, size: data.length }), pad(data)]);
}

function archive(...parts: Buffer[]): Buffer {
  return Buffer.concat([...parts, Buffer.alloc(1024)]);
}

// ---- trees ----

interface Node {
  type: string;
  mode: number;
  content?: string;
  target?: string;
  inode?: string;
  mtime?: number;
}

/** Every entry below root: type, mode, content or link target, which names share an inode, mtime of non-links. */
async function snapshot(root: string): Promise<Record<string, Node>> {
  const out: Record<string, Node> = {};
  const inodes = new Map<number, string>();
  async function walk(rel: string): Promise<void> {
    for (const name of (await readdir(join(root, rel))).sort()) {
      const path = rel ? `${rel}/${name}` : name;
      const st = await lstat(join(root, path));
      const node: Node = { type: st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'file', mode: 0 };
      if (!st.isSymbolicLink()) node.mode = st.mode & 0o7777;
      if (st.isFile()) {
        node.content = await readFile(join(root, path), 'utf8');
        node.mtime = Math.floor(st.mtimeMs / 1000);
        if (st.nlink > 1) {
          node.inode = inodes.get(st.ino) ?? path;
          inodes.set(st.ino, node.inode);
        }
      }
      if (st.isSymbolicLink()) node.target = await readlink(join(root, path));
      out[path] = node;
      if (st.isDirectory()) await walk(path);
    }
  }
  await walk('');
  return out;
}

async function gate(buf: Buffer, dest: string) {
  await mkdir(dest, { recursive: true });
  return extractWithGnuTar(Readable.from([buf]), dest, runner);
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

describe('extractWithGnuTar', () => {
  it('extracts what GNU tar itself extracts: long names, links, modes, empty files', async () => {
    const src = join(tmp, 'src');
    const long100 = 'n'.repeat(120);
    const long255 = `${'d'.repeat(90)}/${'e'.repeat(90)}/${'f'.repeat(90)}`;
    await mkdir(join(src, long255), { recursive: true });
    await mkdir(join(src, 'sub', 'deep'), { recursive: true });
    await writeFile(join(src, long100), 'long name');
    await writeFile(join(src, long255, 'g'.repeat(150)), 'longer name');
    await writeFile(join(src, 'empty'), '');
    await writeFile(join(src, 'sub', 'deep', 'tool'), '#!/bin/sh\n');
    await chmod(join(src, 'sub', 'deep', 'tool'), 0o4755);
    await writeFile(join(src, 'private'), 'secret');
    await chmod(join(src, 'private'), 0o600);
    await link(join(src, 'private'), join(src, 'sub', 'hard'));
    await link(join(src, long100), join(src, 'hard-to-long'));
    await symlink('../private', join(src, 'sub', 'rel'));
    await symlink('/etc/hostname', join(src, 'abs'));
    await symlink(`${'t'.repeat(200)}/x`, join(src, 'long-target'));
    await chmod(join(src, 'sub'), 0o711);
    const { stdout } = await run('tar', ['--format=pax', '-C', src, '-cf', '-', '.'], {
      encoding: 'buffer',
      maxBuffer: 1 << 26,
    });

    const ref = join(tmp, 'ref');
    await mkdir(ref);
    await writeFile(join(tmp, 'tree.tar'), stdout);
    await run('tar', ['-xpf', join(tmp, 'tree.tar'), '-C', ref]);

    const dest = join(tmp, 'dest');
    const stats = await gate(stdout, dest);
    expect(await snapshot(dest)).toEqual(await snapshot(ref));
    expect(await snapshot(dest)).toEqual(await snapshot(src));
    expect(stats.droppedSpecial).toBe(0);
    expect(stats.bytes).toBe('long name'.length + 'longer name'.length + '#!/bin/sh\n'.length + 'secret'.length);
  });

  it('extracts a hand-written archive with prefix names and base-256 sizes', async () => {
    const size256 = header({ name: 'big', size: 0 });
    // The same header with a base-256 size of 5.
    size256.fill(0, 124, 136);
    size256[124] = 0x80;
    size256[135] = 5;
    size256.fill(0x20, 148, 156);
    let sum = 0;
    for (const byte of size256) sum += byte;
    put(size256, 148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
    const buf = archive(
      dir('./'),
      dir('p'),
      file('name', 'prefixed', { prefix: 'p' }),
      size256,
      pad(Buffer.from('12345')),
    );
    const dest = join(tmp, 'dest');
    const stats = await gate(buf, dest);
    expect(await readFile(join(dest, 'p', 'name'), 'utf8')).toBe('prefixed');
    expect(await readFile(join(dest, 'big'), 'utf8')).toBe('12345');
    expect(stats).toEqual({ entries: 4, bytes: 13, droppedSpecial: 0 });
  });

  it('drops device nodes and fifos, and counts them', async () => {
    const buf = archive(
      dir('./'),
      header({ name: 'null', type: '3', devmajor: 1, mode: 0o666 }),
      pax([['path', 'disk']]),
      header({ name: 'ignored', type: '4', devmajor: 8 }),
      header({ name: 'pipe', type: '6' }),
      file('after', 'ok'),
    );
    const dest = join(tmp, 'dest');
    const stats = await gate(buf, dest);
    expect(await readdir(dest)).toEqual(['after']);
    expect(stats).toEqual({ entries: 2, bytes: 2, droppedSpecial: 3 });
  });

  it('forwards nothing after the end of the archive', async () => {
    const buf = Buffer.concat([archive(file('a', 'x')), file('b', 'garbage')]);
    const dest = join(tmp, 'dest');
    await gate(buf, dest);
    expect(await readdir(dest)).toEqual(['a']);
  });

  it('rejects an archive cut before its end', async () => {
    const buf = file('a', 'x'.repeat(2000)).subarray(0, 1024);
    await expect(gate(buf, join(tmp, 'dest'))).rejects.toMatchObject({ code: 'EXEC_FAILED' });
  });

  it('reports a failing tar with its stderr', async () => {
    const dest = join(tmp, 'dest');
    await mkdir(dest);
    await writeFile(join(dest, 'file'), 'x');
    const err = await extractWithGnuTar(Readable.from([archive(file('file/under', 'x'))]), dest, runner, {
      context: { envId: 'e1', op: 'pull' },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ExecenvError);
    expect(err).toMatchObject({ code: 'EXEC_FAILED', envId: 'e1', op: 'pull' });
    expect((err as Error).message).toMatch(/Not a directory|Cannot open/);
  });

  describe('refuses hostile archives and lands nothing outside dest or after the bad entry', () => {
    const victimName = `execenv-gate-victim-${randomBytes(4).toString('hex')}`;
    const cases: [string, (victim: string) => Buffer[]][] = [
      ['../x', () => [file('../x', 'escaped')]],
      ['/abs', () => [file(`/tmp/${victimName}`, 'escaped')]],
      ['a/../../x', () => [dir('a'), file('a/../../x', 'escaped')]],
      ['symlink a -> .. then a/x', () => [header({ name: 'a', type: '2', linkname: '..' }), file('a/x', 'escaped')]],
      [
        'symlink l -> victim then l/passwd',
        (victim) => [header({ name: 'l', type: '2', linkname: victim }), file('l/passwd', 'escaped')],
      ],
      [
        'a directory over a symlink',
        (victim) => [header({ name: 'l', type: '2', linkname: victim }), dir('l'), file('l/passwd', 'escaped')],
      ],
      [
        'a path through a hardlink to a symlink',
        (victim) => [
          header({ name: 'l', type: '2', linkname: victim }),
          header({ name: 'h', type: '1', linkname: 'l' }),
          file('h/passwd', 'escaped'),
        ],
      ],
      ['hardlink to a later entry', () => [header({ name: 'h', type: '1', linkname: 'later' }), file('later', 'x')]],
      ['hardlink out', () => [header({ name: 'h', type: '1', linkname: '../outside' })]],
      ['GNU L long name', () => [file('././@LongLink', '../x\0', { type: 'L' }), file('short', 'escaped')]],
      ['g global header', () => [pax([['path', 'x']], 'g')]],
      ['pax unknown key', () => [pax([['GNU.sparse.size', '10']]), file('sparse', 'x')]],
      ['pax path=../x', () => [pax([['path', '../x']]), file('innocent', 'escaped')]],
      ['pax linkpath out', () => [pax([['linkpath', '../outside']]), header({ name: 'h', type: '1' })]],
      ['GNU magic', () => [file('gnu', 'x', { magic: 'ustar ', version: ' \0' })]],
      ['bad checksum', () => [file('bad', 'x', { checksumDelta: 1 })]],
      ['an unknown type', () => [file('contig', 'x', { type: '7' })]],
      ['a file named like a directory', () => [file('d/', 'x')]],
    ];
    for (const [what, entries] of cases) {
      it(what, async () => {
        const outside = join(tmp, 'outside');
        const victim = join(tmp, 'victim');
        await mkdir(victim);
        const dest = join(outside, 'dest');
        const buf = archive(dir('./'), file('before', 'ok'), ...entries(victim), file('after', 'late'));
        const err = await gate(buf, dest).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ExecenvError);
        expect((err as Error).message).not.toMatch(/^execenv: extracting into/);
        expect(await readdir(outside)).toEqual(['dest']);
        expect(await readdir(victim)).toEqual([]);
        expect(await readdir(tmp)).toEqual(['outside', 'victim']);
        expect(await exists(`/tmp/${victimName}`)).toBe(false);
        expect(await exists(join(dest, 'after'))).toBe(false);
        expect(await exists(join(dest, 'x'))).toBe(false);
      });
    }

    it('refuses unsafe names with UnsafePathError', async () => {
      await expect(gate(archive(file('../x', 'escaped')), join(tmp, 'dest'))).rejects.toBeInstanceOf(UnsafePathError);
      await expect(gate(archive(pax([['comment', 'x']]), file('a')), join(tmp, 'd2'))).rejects.toBeInstanceOf(
        UnsafePathError,
      );
      await expect(
        gate(archive(dir('d'), header({ name: 'n', type: '3', devmajor: 1 })), join(tmp, 'd3')),
      ).resolves.toMatchObject({ droppedSpecial: 1 });
    });
  });
});

describe('TarGate', () => {
  it('keeps memory bounded under a slow consumer', async () => {
    const chunk = randomBytes(1 << 20);
    const total = 64;
    async function* source() {
      yield header({ name: 'big', size: total * chunk.length });
      for (let i = 0; i < total; i++) yield chunk;
      yield Buffer.alloc(1024);
    }
    const g = new TarGate();
    let peak = 0;
    let seen = 0;
    const slow = new Writable({
      highWaterMark: 1 << 16,
      write(c: Buffer, _enc, done) {
        seen += c.length;
        peak = Math.max(peak, g.readableLength + g.writableLength);
        setTimeout(done, 1);
      },
    });
    await pipeline(Readable.from(source(), { objectMode: false, highWaterMark: 1 << 16 }), g, slow);
    expect(seen).toBe(512 + total * chunk.length + 1024);
    expect(g.stats.bytes).toBe(total * chunk.length);
    // At most the gate's two buffers plus one input chunk in flight, never the whole entry.
    expect(peak).toBeLessThanOrEqual(4 << 20);
  });

  it('reads headers split across chunks at any byte', async () => {
    const buf = archive(
      dir('./'),
      pax([['path', 'p'.repeat(300)]]),
      file('short', 'hello'),
      file('b', 'x'.repeat(700)),
    );
    const g = new TarGate();
    const out: Buffer[] = [];
    const sink = new PassThrough();
    sink.on('data', (c: Buffer) => out.push(c));
    const parts: Buffer[] = [];
    for (let i = 0; i < buf.length; i += 7) parts.push(buf.subarray(i, i + 7));
    await pipeline(Readable.from(parts), g, sink);
    expect(Buffer.concat(out).equals(buf)).toBe(true);
    expect(g.stats).toEqual({ entries: 3, bytes: 705, droppedSpecial: 0 });
  });

  it('refuses a pax header over 1 MiB before reading it', async () => {
    const g = new TarGate();
    const buf = Buffer.concat([header({ name: 'PaxHeaders/x', type: 'x', size: (1 << 20) + 1 })]);
    await expect(pipeline(Readable.from([buf]), g, new PassThrough().resume())).rejects.toBeInstanceOf(UnsafePathError);
  });
});

// GNU tar must agree: these run only where it is installed, which the suite assumes.
it.runIf(isRoot)('keeps setuid and owners as root', async () => {
  const buf = archive(file('suid', 'x', { mode: 0o4755 }));
  const dest = join(tmp, 'dest');
  await gate(buf, dest);
  expect((await lstat(join(dest, 'suid'))).mode & 0o7777).toBe(0o4755);
});
