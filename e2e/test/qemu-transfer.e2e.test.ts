import { createHash, randomBytes } from 'node:crypto';
import {
  chmod,
  chown,
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
import { QemuDriver } from '@execenv/qemu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxTarball } from './fixtures.js';
import { qemuKernel } from './qemu-fixtures.js';

let stateDir: string;
let scratch: string;
beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'execenv-qemu-transfer-state-'));
  scratch = await mkdtemp(join(tmpdir(), 'execenv-qemu-transfer-'));
});
afterAll(async () => {
  await rm(stateDir, { recursive: true, force: true });
  await rm(scratch, { recursive: true, force: true });
});

/** Everything a tree's entries are, by relative path: type, mode, owner, content digest or link target, link group. */
async function describeTree(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const inodes = new Map<number, string>();
  async function walk(rel: string): Promise<void> {
    for (const name of (await readdir(join(root, rel))).sort()) {
      const path = join(root, rel, name);
      const key = rel ? `${rel}/${name}` : name;
      const st = await lstat(path);
      const mode = (st.mode & 0o7777).toString(8);
      const owner = `${st.uid}:${st.gid}`;
      if (st.isSymbolicLink()) out[key] = `symlink -> ${await readlink(path)} ${owner}`;
      else if (st.isDirectory()) {
        out[key] = `dir ${mode} ${owner}`;
        await walk(key);
      } else {
        const digest = createHash('sha256')
          .update(await readFile(path))
          .digest('hex')
          .slice(0, 16);
        const first = st.nlink > 1 ? inodes.get(st.ino) : undefined;
        if (st.nlink > 1 && !first) inodes.set(st.ino, key);
        out[key] = `file ${mode} ${owner} ${st.size} ${digest}${first ? ` same as ${first}` : ''}`;
      }
    }
  }
  await walk('');
  return out;
}

describe('qemu pushes and pulls through the staging shares', () => {
  const driver = new QemuDriver({ kernel: qemuKernel() });

  it('round-trips a tree with modes, owners, symlinks and a hardlink, leaving nothing staged', {
    timeout: 600_000,
  }, async () => {
    const src = join(scratch, 'src');
    await mkdir(join(src, 'sub/empty'), { recursive: true });
    await writeFile(join(src, 'small.txt'), 'small\n');
    await writeFile(join(src, 'medium.bin'), randomBytes(100_000));
    // Larger than the agent's direct I/O chunk, and not a whole number of blocks.
    await writeFile(join(src, 'sub/big.bin'), randomBytes(5 * 1024 * 1024 + 123));
    await writeFile(join(src, 'run.sh'), '#!/bin/sh\necho hi\n');
    await chmod(join(src, 'run.sh'), 0o755);
    await writeFile(join(src, 'setuid'), 'x');
    await chmod(join(src, 'setuid'), 0o4755);
    await writeFile(join(src, 'private'), 'secret');
    await chmod(join(src, 'private'), 0o600);
    await chown(join(src, 'private'), 1234, 5678);
    await chmod(join(src, 'sub'), 0o750);
    await mkdir(join(src, 'tmp'));
    await chmod(join(src, 'tmp'), 0o1777);
    await symlink('sub/big.bin', join(src, 'rel-link'));
    await symlink('/etc/hostname', join(src, 'abs-link'));
    await link(join(src, 'medium.bin'), join(src, 'sub/hard'));
    const expected = await describeTree(src);

    const env = await driver.open({ image: busyboxTarball() }, { stateDir });
    try {
      await env.push(src, '/root/tree');
      const inGuest = await env.exec(
        [
          'sh',
          '-c',
          'cd /root/tree && stat -c "%n %a %u:%g %s %i" private sub tmp medium.bin sub/hard && readlink rel-link && readlink abs-link',
        ],
        { check: true },
      );
      const lines = inGuest.stdout.trim().split('\n');
      expect(lines.slice(0, 3).map((l) => l.split(' ').slice(0, 4).join(' '))).toEqual([
        'private 600 1234:5678 6',
        'sub 750 0:0 4096',
        'tmp 1777 0:0 4096',
      ]);
      const [medium, hard] = [lines[3]!.split(' '), lines[4]!.split(' ')];
      expect(hard[4]).toBe(medium[4]); // one inode
      expect(lines.slice(5)).toEqual(['sub/big.bin', '/etc/hostname']);

      const pulled = join(scratch, 'pulled');
      await env.pull('/root/tree', pulled);
      expect(await describeTree(pulled)).toEqual(expected);

      // Nothing stays in either staging directory (QEMU's mapped-file metadata aside).
      const envDir = join(stateDir, 'envs', env.id);
      expect(await readdir(join(envDir, 'stage'))).toEqual([]);
      expect((await readdir(join(envDir, 'pull'))).filter((n) => n !== '.virtfs_metadata')).toEqual([]);

      // Commands see the push share read-only and the pull share nowhere.
      const mounts = await env.exec(['cat', '/proc/mounts'], { check: true });
      expect(mounts.stdout).toMatch(/^execenvstage \/dev\/\.execenv-stage 9p ro,/m);
      expect(mounts.stdout).not.toContain('execenvpull');
      const write = await env.exec(['sh', '-c', 'echo x > /dev/.execenv-stage/x']);
      expect(write.exitCode).not.toBe(0);
    } finally {
      await env.close();
    }
  });
});
