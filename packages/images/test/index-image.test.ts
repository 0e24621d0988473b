import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ImageCache } from '../src/image-cache.js';
import { fetchIndexImage } from '../src/index-image.js';
import { parseIndex } from '../src/lxc-index.js';
import { generateSigningKey, ImageServer, type SigningKey } from '../src/testing/image-server.js';

let server: ImageServer;
let dir: string;
let signer: SigningKey;
let stranger: SigningKey;
const rootfs = Buffer.from('pretend this is rootfs.tar.xz');
const meta = Buffer.from('pretend this is meta.tar.xz');
const q = { distribution: 'busybox', release: '1.36', architecture: 'amd64', variant: 'default' };

/** Serves an older build, the newest one (signed by `key`) and another image; returns the newest's path. */
async function publish(key: string) {
  await server.publishLxcDownload({ ...q, build: '20261121_00:00' }, { rootfs: meta, meta }, key);
  const base = await server.publishLxcDownload({ ...q, build: '20261122_00:00' }, { rootfs, meta }, key);
  await server.publishLxcDownload({ ...q, distribution: 'debian', release: 'bookworm' }, { rootfs, meta }, key);
  return base;
}

beforeAll(async () => {
  signer = await generateSigningKey('image signer');
  stranger = await generateSigningKey('someone else');
});
beforeEach(async () => {
  server = await new ImageServer().start();
  dir = await mkdtemp(join(tmpdir(), 'execenv-index-'));
});
afterEach(async () => {
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('parseIndex', () => {
  it('reads the CSV and skips malformed or escaping lines', () => {
    expect(parseIndex('a;b;c;d;e;/p\nbroken\na;b;c;d;e;/../x\n;;;;;\n')).toEqual([
      { distribution: 'a', release: 'b', architecture: 'c', variant: 'd', build: 'e', path: '/p' },
    ]);
  });
});

describe('fetchIndexImage', () => {
  it('resolves the newest build and caches signed rootfs and meta', async () => {
    const base = await publish(signer.privateKey);
    const cache = new ImageCache({ dir });
    const img = await fetchIndexImage(q, { server: server.url, cache, keys: [signer.publicKey] });
    expect(img.entry.path).toBe(base);
    expect(img.rootfs.size).toBe(rootfs.length);
    expect(img.meta.size).toBe(meta.length);
    expect((await cache.list()).length).toBe(2);
  });

  it('refuses a signature by an untrusted key, keeping nothing', async () => {
    await publish(stranger.privateKey);
    const cache = new ImageCache({ dir });
    await expect(fetchIndexImage(q, { server: server.url, cache, keys: [signer.publicKey] })).rejects.toMatchObject({
      code: 'IMAGE_VERIFY_FAILED',
    });
    expect(await cache.list()).toEqual([]);
  });

  it('refuses a tampered rootfs', async () => {
    const base = await publish(signer.privateKey);
    server.http.routes.set(`${base}/rootfs.tar.xz`, { body: Buffer.from('tampered') });
    const cache = new ImageCache({ dir });
    await expect(fetchIndexImage(q, { server: server.url, cache, keys: [signer.publicKey] })).rejects.toMatchObject({
      code: 'IMAGE_VERIFY_FAILED',
    });
    expect(await cache.list()).toEqual([]);
  });

  it('refuses unsigned images unless verify: false is explicit', async () => {
    const base = await publish(signer.privateKey);
    server.http.routes.delete(`${base}/rootfs.tar.xz.asc`);
    const cache = new ImageCache({ dir });
    await expect(fetchIndexImage(q, { server: server.url, cache, keys: [signer.publicKey] })).rejects.toMatchObject({
      code: 'IMAGE_VERIFY_FAILED',
      message: expect.stringContaining('not signed'),
    });
    const img = await fetchIndexImage(q, { server: server.url, cache, verify: false });
    expect(img.rootfs.size).toBe(rootfs.length);
  });

  it('refuses to verify without keys', async () => {
    await publish(signer.privateKey);
    await expect(fetchIndexImage(q, { server: server.url, cache: new ImageCache({ dir }) })).rejects.toMatchObject({
      code: 'IMAGE_VERIFY_FAILED',
      message: expect.stringContaining('no trusted keys'),
    });
  });

  it('prefers the index of its compatibility level', async () => {
    await publish(signer.privateKey);
    server.http.routes.set('/meta/1.0/index-system.7', { body: 'busybox;1.36;amd64;default;x;/images/compat7\n' });
    server.http.routes.set('/images/compat7/rootfs.tar.xz', { body: rootfs });
    server.http.routes.set('/images/compat7/meta.tar.xz', { body: meta });
    const img = await fetchIndexImage(q, {
      server: server.url,
      cache: new ImageCache({ dir }),
      verify: false,
      compatLevel: 7,
    });
    expect(img.entry.path).toBe('/images/compat7');
  });

  it('says what the server has when the entry is missing', async () => {
    await publish(signer.privateKey);
    await expect(
      fetchIndexImage({ ...q, release: '9.9' }, { server: server.url, cache: new ImageCache({ dir }), verify: false }),
    ).rejects.toMatchObject({
      code: 'IMAGE_NOT_FOUND',
      message: expect.stringContaining('busybox/1.36/amd64/default'),
    });
  });
});
