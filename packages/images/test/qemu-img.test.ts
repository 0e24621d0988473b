import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { hostRunner } from '@execenv/core';
import { pack } from 'tar-stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ImageCache } from '../src/image-cache.js';
import { convertToQcow2 } from '../src/qcow2.js';
import { QemuImg } from '../src/qemu-img.js';

const run = promisify(execFile);
// tools/setup-host.sh installs qemu-utils; without it these tests say so instead of passing.
const missing = !existsSync('/usr/bin/qemu-img') ? 'qemu-img is not installed (apt-get install qemu-utils)' : '';
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'execenv-qemu-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe.skipIf(missing)(`QemuImg${missing ? ` (skipped: ${missing})` : ''}`, () => {
  const q = new QemuImg();

  it('creates, describes, resizes and overlays images', async () => {
    const base = join(dir, 'base.qcow2');
    await q.create(base, { size: '10M' });
    expect(await q.info(base)).toMatchObject({ format: 'qcow2', virtualSize: 10 * 2 ** 20, snapshots: [] });
    await q.resize(base, '20M');
    expect((await q.info(base)).virtualSize).toBe(20 * 2 ** 20);
    const overlay = join(dir, 'overlay.qcow2');
    await q.create(overlay, { backingFile: base });
    expect(await q.info(overlay)).toMatchObject({
      backingFile: base,
      backingFormat: 'qcow2',
      virtualSize: 20 * 2 ** 20,
    });
    await q.convert(overlay, join(dir, 'flat.raw'), 'raw');
    expect((await q.info(join(dir, 'flat.raw'))).format).toBe('raw');
  });

  it('creates, lists, applies and deletes snapshots', async () => {
    const img = join(dir, 'snap.qcow2');
    await q.create(img, { size: '10M' });
    await q.snapshotCreate(img, 'clean');
    await q.snapshotCreate(img, 'later');
    expect((await q.snapshots(img)).map((s) => s.name)).toEqual(['clean', 'later']);
    await q.snapshotApply(img, 'clean');
    await q.snapshotDelete(img, 'later');
    expect((await q.snapshots(img)).map((s) => s.name)).toEqual(['clean']);
  });

  it('says IMAGE_NOT_FOUND for a missing image and DRIVER_UNAVAILABLE without the binary', async () => {
    await expect(q.info(join(dir, 'nope.qcow2'))).rejects.toMatchObject({ code: 'IMAGE_NOT_FOUND' });
    await expect(new QemuImg(hostRunner(), '/nonexistent/qemu-img').info(join(dir, 'x'))).rejects.toMatchObject({
      code: 'DRIVER_UNAVAILABLE',
      message: expect.stringContaining('apt-get install qemu-utils'),
    });
  });

  it('turns a rootfs tarball into a qcow2 disk with an ext4 filesystem holding it', async () => {
    const p = pack();
    p.entry({ name: './', type: 'directory', mode: 0o755 });
    p.entry({ name: './etc/', type: 'directory', mode: 0o755 });
    p.entry({ name: './etc/os-release', mode: 0o644, uid: 0, gid: 0 }, 'ID=disk\n');
    p.finalize();
    const chunks: Buffer[] = [];
    for await (const c of p) chunks.push(c as Buffer);
    await writeFile(join(dir, 'rootfs.tar'), Buffer.concat(chunks));
    const cache = new ImageCache({ dir: join(dir, 'cache') });
    const disk = await convertToQcow2(join(dir, 'rootfs.tar'), { size: '16M' }, { cache, runner: hostRunner() });
    expect(await q.info(disk.path)).toMatchObject({ format: 'qcow2', virtualSize: 16 * 2 ** 20 });
    await q.convert(disk.path, join(dir, 'check.raw'), 'raw');
    const { stdout } = await run('debugfs', ['-R', 'cat /etc/os-release', join(dir, 'check.raw')]);
    expect(stdout).toBe('ID=disk\n');
    const again = await convertToQcow2(join(dir, 'rootfs.tar'), { size: '16M' }, { cache, runner: hostRunner() });
    expect(again.digest).toBe(disk.digest);
  });
});
