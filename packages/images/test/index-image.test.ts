import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ImageCache } from '../src/image-cache.js';
import { fetchIndexImage } from '../src/index-image.js';
import { parseIndex } from '../src/lxc-index.js';
import { HttpFixture } from './http-fixture.js';

let server: HttpFixture;
let dir: string;
let signer: { publicKey: string; privateKey: string };
let stranger: { publicKey: string; privateKey: string };
const rootfs = Buffer.from('pretend this is rootfs.tar.xz');
const meta = Buffer.from('pretend this is meta.tar.xz');
const q = { distribution: 'busybox', release: '1.36', architecture: 'amd64', variant: 'default' };

async function sign(data: Buffer, key: string): Promise<string> {
  const message = await openpgp.createMessage({ binary: data });
  const signingKeys = await openpgp.readPrivateKey({ armoredKey: key });
  return (await openpgp.sign({ message, signingKeys, detached: true })) as string;
}

async function publish(key: string) {
  const base = '/images/busybox/1.36/amd64/default/20261122_00:00';
  server.routes.set('/meta/1.0/index-system', {
    body: `busybox;1.36;amd64;default;20261121_00:00;/images/old\nbusybox;1.36;amd64;default;20261122_00:00;${base}\ndebian;bookworm;amd64;default;20261122_00:00;/images/debian\n`,
  });
  server.routes.set(`${base}/rootfs.tar.xz`, { body: rootfs });
  server.routes.set(`${base}/meta.tar.xz`, { body: meta });
  server.routes.set(`${base}/rootfs.tar.xz.asc`, { body: await sign(rootfs, key) });
  server.routes.set(`${base}/meta.tar.xz.asc`, { body: await sign(meta, key) });
  return base;
}

beforeAll(async () => {
  const make = (name: string) =>
    openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name }], format: 'armored' });
  signer = await make('image signer');
  stranger = await make('someone else');
});
beforeEach(async () => {
  server?.stop();
  server = await new HttpFixture().start();
  dir = await mkdtemp(join(tmpdir(), 'execenv-index-'));
});
afterAll(async () => {
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
    server.routes.set(`${base}/rootfs.tar.xz`, { body: Buffer.from('tampered') });
    const cache = new ImageCache({ dir });
    await expect(fetchIndexImage(q, { server: server.url, cache, keys: [signer.publicKey] })).rejects.toMatchObject({
      code: 'IMAGE_VERIFY_FAILED',
    });
    expect(await cache.list()).toEqual([]);
  });

  it('refuses unsigned images unless verify: false is explicit', async () => {
    const base = await publish(signer.privateKey);
    server.routes.delete(`${base}/rootfs.tar.xz.asc`);
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
    server.routes.set('/meta/1.0/index-system.7', { body: 'busybox;1.36;amd64;default;x;/images/compat7\n' });
    server.routes.set('/images/compat7/rootfs.tar.xz', { body: rootfs });
    server.routes.set('/images/compat7/meta.tar.xz', { body: meta });
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
