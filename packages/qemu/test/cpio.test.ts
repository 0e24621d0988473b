import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, readlink, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { packCpio } from '../src/cpio.js';

const scratch = await mkdtemp(join(tmpdir(), 'execenv-cpio-test-'));
afterAll(() => rm(scratch, { recursive: true, force: true }));

describe('packCpio', () => {
  it('writes a newc archive that cpio unpacks with modes, content and links', async () => {
    const archive = packCpio([
      { type: 'directory', path: 'bin' },
      { type: 'file', path: 'bin/tool', content: Buffer.from('#!/bin/sh\necho hi\n'), mode: 0o755 },
      { type: 'file', path: 'odd', content: Buffer.from('abc') },
      { type: 'symlink', path: 'link', target: 'bin/tool' },
      { type: 'directory', path: 'private', mode: 0o700 },
    ]);
    expect(archive.length % 4).toBe(0);
    execFileSync('cpio', ['-i', '-d', '--quiet', '--no-absolute-filenames'], { cwd: scratch, input: archive });
    expect(await readFile(join(scratch, 'bin/tool'), 'utf8')).toBe('#!/bin/sh\necho hi\n');
    expect((await stat(join(scratch, 'bin/tool'))).mode & 0o7777).toBe(0o755);
    expect(await readFile(join(scratch, 'odd'), 'utf8')).toBe('abc');
    expect((await stat(join(scratch, 'odd'))).mode & 0o7777).toBe(0o644);
    expect(await readlink(join(scratch, 'link'))).toBe('bin/tool');
    expect((await stat(join(scratch, 'private'))).mode & 0o7777).toBe(0o700);
    const listing = execFileSync('cpio', ['-t', '--quiet'], { input: archive, encoding: 'utf8' });
    expect(listing.trim().split('\n')).toEqual(['bin', 'bin/tool', 'odd', 'link', 'private']);
  });

  it('refuses paths that would land elsewhere', () => {
    for (const path of ['/etc/passwd', '../x', 'a/../b', 'a//b', '', './a'])
      expect(() => packCpio([{ type: 'file', path, content: Buffer.alloc(0) }])).toThrow(RangeError);
  });
});
