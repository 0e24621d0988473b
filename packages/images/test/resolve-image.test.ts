import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { hostRunner } from '@execenv/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ImageCache } from '../src/image-cache.js';
import { convertToLxdUnified } from '../src/lxd-unified.js';
import { classifyLocal, resolveImage } from '../src/resolve-image.js';
import { imageRootDirectory } from '../src/root-directory.js';
import { HttpFixture } from '../src/testing/http-fixture.js';
import { splitImageFiles, tarOf, xzCompress } from '../src/testing/image-files.js';
import { generateSigningKey, ImageServer } from '../src/testing/image-server.js';

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

function rootfsTar(): Promise<Buffer> {
  return tarOf([
    { header: { name: './', type: 'directory', mode: 0o755 } },
    { header: { name: './etc/os-release', mode: 0o644 }, body: 'ID=x\n' },
  ]);
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
    expect(await classifyLocal(unified.path)).toMatchObject({ kind: 'lxd-unified', format: 'zstd' });
    expect(await classifyLocal(join(dir, 'disk.qcow2'))).toMatchObject({ kind: 'disk', format: 'qcow2' });
    expect(await classifyLocal(join(dir, 'disk.raw'))).toMatchObject({ kind: 'disk', format: 'raw' });
    await expect(classifyLocal(join(dir, 'missing'))).rejects.toMatchObject({ code: 'IMAGE_NOT_FOUND' });
  });

  it('classifies a compressed tarball larger than the pipes after reading only its first entries', async () => {
    const entries = Array.from({ length: 20 }, (_, i) => ({
      header: { name: `f${i}`, mode: 0o644 },
      body: randomBytes(256 * 1024),
    }));
    await writeFile(join(dir, 'big.tar'), await tarOf(entries));
    await run('gzip', ['-1', join(dir, 'big.tar')]);
    // The decompressor is stopped early; its unread output must not keep it from being reported done.
    expect(await classifyLocal(join(dir, 'big.tar.gz'))).toMatchObject({ kind: 'rootfs-tarball', format: 'gzip' });
  });
});

const info = { architecture: 'amd64', os: 'alpine', release: '3.20' };

describe('split LXD images given as two local files', () => {
  it('resolves lxd-split:META,ROOTFS and extracts its root filesystem', async () => {
    const files = await splitImageFiles(await xzCompress(await rootfsTar()), info);
    await writeFile(join(dir, 'meta.tar.xz'), files.meta);
    await writeFile(join(dir, 'rootfs.tar.xz'), files.rootfs);
    const reference = `lxd-split:${join(dir, 'meta.tar.xz')},${join(dir, 'rootfs.tar.xz')}`;
    const r = await resolveImage(reference, { cache });
    expect(r).toEqual({ kind: 'lxd-split', meta: join(dir, 'meta.tar.xz'), rootfs: join(dir, 'rootfs.tar.xz') });
    const root = await imageRootDirectory(r, { cache, runner: hostRunner() });
    expect(await readFile(join(root, 'etc/os-release'), 'utf8')).toBe('ID=x\n');
  });

  it('accepts a squashfs root filesystem, and refuses a meta without metadata.yaml or a missing file', async () => {
    const files = await splitImageFiles(await rootfsTar(), info);
    await writeFile(join(dir, 'meta.tar.xz'), files.meta);
    await writeFile(join(dir, 'rootfs.squashfs'), Buffer.concat([Buffer.from('hsqs'), Buffer.alloc(92)]));
    await writeFile(join(dir, 'rootfs.tar'), await rootfsTar());
    await writeFile(join(dir, 'junk'), 'not an image');
    const split = (meta: string, rootfs: string) => `lxd-split:${join(dir, meta)},${join(dir, rootfs)}`;
    expect(await resolveImage(split('meta.tar.xz', 'rootfs.squashfs'), { cache })).toMatchObject({ kind: 'lxd-split' });
    await expect(resolveImage(split('rootfs.tar', 'rootfs.tar'), { cache })).rejects.toMatchObject({
      code: 'INVALID_SPEC',
      message: expect.stringContaining('no metadata.yaml'),
    });
    await expect(resolveImage(split('meta.tar.xz', 'junk'), { cache })).rejects.toMatchObject({
      code: 'INVALID_SPEC',
      message: expect.stringContaining('neither a tarball nor a squashfs'),
    });
    await expect(resolveImage(split('meta.tar.xz', 'missing'), { cache })).rejects.toMatchObject({
      code: 'IMAGE_NOT_FOUND',
    });
  });
});

describe('imageRootDirectory', () => {
  it("extracts a unified tarball's rootfs/ tree and tells which driver takes disks, aliases and OCI names", async () => {
    await writeFile(join(dir, 'rootfs.tar'), await rootfsTar());
    const unified = await convertToLxdUnified(join(dir, 'rootfs.tar'), info, { cache, runner: hostRunner() });
    const ctx = { cache, runner: hostRunner() };
    const root = await imageRootDirectory(await classifyLocal(unified.path), ctx);
    expect(root.endsWith('/rootfs')).toBe(true);
    expect(await readFile(join(root, 'etc/os-release'), 'utf8')).toBe('ID=x\n');
    await expect(imageRootDirectory({ kind: 'disk', path: '/d.qcow2', format: 'qcow2' }, ctx)).rejects.toThrow(/qemu/);
    await expect(imageRootDirectory({ kind: 'lxd-alias', alias: 'a' }, ctx)).rejects.toThrow(/lxd driver/);
    await expect(imageRootDirectory({ kind: 'oci', name: 'debian' }, ctx)).rejects.toThrow(/podman driver/);
  });

  it('refuses a tarball without the named tree, or with a symlink in its place', async () => {
    await writeFile(
      join(dir, 'linked.tar'),
      await tarOf([
        { header: { name: 'metadata.yaml' }, body: 'architecture: x86_64\n' },
        { header: { name: 'rootfs', type: 'symlink', linkname: '/' } },
      ]),
    );
    await expect(
      imageRootDirectory(
        { kind: 'lxd-unified', path: join(dir, 'linked.tar'), format: 'tar' },
        { cache, runner: hostRunner() },
      ),
    ).rejects.toMatchObject({ code: 'IMAGE_NOT_FOUND', message: expect.stringContaining('no rootfs/ tree') });
  });
});

describe('resolveImage', () => {
  it('downloads a URL into the cache and classifies it', async () => {
    server.routes.set('/rootfs.tar', { body: await rootfsTar() });
    const r = await resolveImage(`${server.url}/rootfs.tar`, { cache });
    expect(r).toMatchObject({ kind: 'rootfs-tarball', format: 'tar' });
    expect(r.kind === 'rootfs-tarball' && r.path.startsWith(cache.dir)).toBe(true);
  });

  it.each(['lxc', 'simplestreams'] as const)(
    'fetches index references from a signed %s server, and extracts the root filesystem',
    async (layout) => {
      const images = await new ImageServer().start();
      try {
        const key = await generateSigningKey();
        const files = await splitImageFiles(await xzCompress(await rootfsTar()), info);
        const served = { distribution: 'alpine', release: '3.20', architecture: 'amd64' };
        if (layout === 'lxc') await images.publishLxcDownload(served, files, key.privateKey);
        else await images.publishSimplestreams(served, files, key.privateKey);
        const r = await resolveImage('index:alpine/3.20/x86_64', {
          cache,
          servers: { [layout]: images.url },
          keys: [key.publicKey],
        });
        // lxc-download metadata is LXC's (config, templates); simplestreams serves LXD's.
        expect(r.kind).toBe(layout === 'lxc' ? 'lxc-download' : 'lxd-split');
        if (r.kind !== 'lxd-split' && r.kind !== 'lxc-download') return;
        expect(await readFile(r.rootfs)).toEqual(files.rootfs);
        const root = await imageRootDirectory(r, { cache, runner: hostRunner() });
        expect(await readFile(join(root, 'etc/os-release'), 'utf8')).toBe('ID=x\n');
      } finally {
        await images.stop();
      }
    },
  );

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
