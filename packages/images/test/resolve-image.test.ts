import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { hostRunner } from '@execenv/core';
import { pack } from 'tar-stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ImageCache } from '../src/image-cache.js';
import { convertToLxdUnified } from '../src/lxd-unified.js';
import { classifyLocal, resolveImage } from '../src/resolve-image.js';
import { HttpFixture } from './http-fixture.js';

const run = promisify(execFile);
let dir: string;
let cache: ImageCache;
let server: HttpFixture;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'execenv-resolve-'));
  cache = new ImageCache({ dir: join(dir, 'cache') });
  server = await new HttpFixture().start();
});
afterEach(async () => {
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});

async function rootfsTar(): Promise<Buffer> {
  const p = pack();
  p.entry({ name: './', type: 'directory', mode: 0o755 });
  p.entry({ name: './etc/os-release', mode: 0o644 }, 'ID=x\n');
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('classifyLocal', () => {
  it('tells directories, rootfs tarballs, LXD unified tarballs and disks apart', async () => {
    await mkdir(join(dir, 'tree'));
    await writeFile(join(dir, 'rootfs.tar'), await rootfsTar());
    await run('gzip', ['-k', join(dir, 'rootfs.tar')]);
    const unified = await convertToLxdUnified(
      join(dir, 'rootfs.tar'),
      { architecture: 'amd64', os: 'x', release: '1' },
      { cache, runner: hostRunner() },
    );
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, 'disk.qcow2'), '1M']);
    await writeFile(join(dir, 'disk.raw'), Buffer.alloc(4096));
    expect(await classifyLocal(join(dir, 'tree'))).toEqual({ kind: 'directory', path: join(dir, 'tree') });
    expect(await classifyLocal(join(dir, 'rootfs.tar.gz'))).toMatchObject({ kind: 'rootfs-tarball', format: 'gzip' });
    expect(await classifyLocal(unified.path)).toMatchObject({ kind: 'lxd-unified', format: 'tar' });
    expect(await classifyLocal(join(dir, 'disk.qcow2'))).toMatchObject({ kind: 'disk', format: 'qcow2' });
    expect(await classifyLocal(join(dir, 'disk.raw'))).toMatchObject({ kind: 'disk', format: 'raw' });
    await expect(classifyLocal(join(dir, 'missing'))).rejects.toMatchObject({ code: 'IMAGE_NOT_FOUND' });
  });
});

describe('resolveImage', () => {
  it('downloads a URL into the cache and classifies it', async () => {
    server.routes.set('/rootfs.tar', { body: await rootfsTar() });
    const r = await resolveImage(`${server.url}/rootfs.tar`, { cache });
    expect(r).toMatchObject({ kind: 'rootfs-tarball', format: 'tar' });
    expect(r.kind === 'rootfs-tarball' && r.path.startsWith(cache.dir)).toBe(true);
  });

  it('fetches index references from the configured lxc-download server', async () => {
    server.routes.set('/meta/1.0/index-system', { body: 'alpine;3.20;amd64;default;1;/i\n' });
    server.routes.set('/i/rootfs.tar.xz', { body: 'root' });
    server.routes.set('/i/meta.tar.xz', { body: 'meta' });
    const r = await resolveImage('index:alpine/3.20/x86_64', { cache, servers: { lxc: server.url }, verify: false });
    expect(r.kind).toBe('lxd-split');
    if (r.kind === 'lxd-split') expect(await readFile(r.rootfs, 'utf8')).toBe('root');
  });

  it('needs a server for index references, and passes lxd: and oci: through', async () => {
    await expect(resolveImage('index:alpine/3.20/amd64', { cache })).rejects.toMatchObject({
      code: 'IMAGE_NOT_FOUND',
      message: expect.stringContaining('no image server configured'),
    });
    expect(await resolveImage('lxd:base', { cache })).toEqual({ kind: 'lxd-alias', alias: 'base' });
    expect(await resolveImage('oci:docker.io/library/debian:bookworm', { cache })).toEqual({
      kind: 'oci',
      name: 'docker.io/library/debian:bookworm',
    });
  });
});
