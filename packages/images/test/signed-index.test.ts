import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ImageCache } from '../src/image-cache.js';
import { fetchIndexImage } from '../src/index-image.js';
import { resolveIndex } from '../src/lxc-index.js';
import { resolveImage } from '../src/resolve-image.js';
import { generateSigningKey, ImageServer, type SigningKey, signDetached } from '../src/testing/image-server.js';

let server: ImageServer;
let dir: string;
let signer: SigningKey;
let stranger: SigningKey;
const q = { distribution: 'busybox', release: '1.36', architecture: 'amd64', variant: 'default' };
const newer = { rootfs: Buffer.from('rootfs of the newest build'), meta: Buffer.from('meta of the newest build') };
const older = { rootfs: Buffer.from('rootfs of an older build'), meta: Buffer.from('meta of an older build') };
const fast = { attempts: 3, backoffMs: 1 };

beforeAll(async () => {
  signer = await generateSigningKey('image signer');
  stranger = await generateSigningKey('someone else');
});
beforeEach(async () => {
  server = await new ImageServer().start();
  dir = await mkdtemp(join(tmpdir(), 'execenv-signed-index-'));
});
afterEach(async () => {
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});

/** Serves an older and a newer build, both validly signed; returns their directories. */
async function publishBoth() {
  const old = await server.publishLxcDownload({ ...q, build: '20261101_00:00' }, older, signer.privateKey);
  const base = await server.publishLxcDownload({ ...q, build: '20261122_00:00' }, newer, signer.privateKey);
  return { old, base };
}

describe('the lxc-download index is verified', () => {
  it('refuses a rewritten index that points at an older, validly signed build (a downgrade)', async () => {
    const { old } = await publishBoth();
    // The attacker keeps the genuine signature but rewrites the index to name only the old build.
    server.http.routes.set('/meta/1.0/index-system', { body: `busybox;1.36;amd64;default;20261101_00:00;${old}\n` });
    const cache = new ImageCache({ dir });
    await expect(fetchIndexImage(q, { server: server.url, cache, keys: [signer.publicKey] })).rejects.toMatchObject({
      code: 'IMAGE_VERIFY_FAILED',
      message: expect.stringContaining('index-system'),
    });
    expect(await cache.list()).toEqual([]);
  });

  it('refuses an unsigned index, or one signed by an untrusted key, unless verify: false', async () => {
    await publishBoth();
    const index = server.http.routes.get('/meta/1.0/index-system')!.body as string;
    server.http.routes.delete('/meta/1.0/index-system.asc');
    await expect(resolveIndex(server.url, q, { keys: [signer.publicKey], ...fast })).rejects.toMatchObject({
      code: 'IMAGE_VERIFY_FAILED',
      message: expect.stringContaining('not signed'),
    });
    server.http.routes.set('/meta/1.0/index-system.asc', {
      body: await signDetached(Buffer.from(index), stranger.privateKey),
    });
    await expect(resolveIndex(server.url, q, { keys: [signer.publicKey], ...fast })).rejects.toMatchObject({
      code: 'IMAGE_VERIFY_FAILED',
    });
    const { entry } = await resolveIndex(server.url, q, { verify: false });
    expect(entry.build).toBe('20261122_00:00');
  });

  it('checks index-user and compatibility-level indexes against the same keys', async () => {
    const { base } = await publishBoth();
    const index = `busybox;1.36;amd64;default;20261122_00:00;${base}\n`;
    server.http.routes.set('/meta/1.0/index-user', { body: index });
    server.http.routes.set('/meta/1.0/index-user.asc', {
      body: await signDetached(Buffer.from(index), stranger.privateKey),
    });
    await expect(resolveIndex(server.url, q, { mode: 'user', keys: [signer.publicKey] })).rejects.toMatchObject({
      code: 'IMAGE_VERIFY_FAILED',
    });
    server.http.routes.set('/meta/1.0/index-user.asc', {
      body: await signDetached(Buffer.from(index), signer.privateKey),
    });
    expect((await resolveIndex(server.url, q, { mode: 'user', keys: [signer.publicKey] })).base).toBe(
      `${server.url}${base}`,
    );
    server.http.routes.set('/meta/1.0/index-system.7', { body: index });
    await expect(resolveIndex(server.url, q, { compatLevel: 7, keys: [signer.publicKey] })).rejects.toMatchObject({
      code: 'IMAGE_VERIFY_FAILED',
      message: expect.stringContaining('index-system.7'),
    });
  });

  it('says IMAGE_NOT_FOUND naming the URL when the index names a build the server does not have', async () => {
    const { base } = await publishBoth();
    for (const name of ['rootfs.tar.xz', 'rootfs.tar.xz.asc', 'meta.tar.xz', 'meta.tar.xz.asc'])
      server.http.routes.delete(`${base}/${name}`);
    const err = await fetchIndexImage(q, {
      server: server.url,
      cache: new ImageCache({ dir }),
      keys: [signer.publicKey],
    })
      .then(() => undefined)
      .catch((e: Error) => e);
    expect(err).toMatchObject({ code: 'IMAGE_NOT_FOUND', message: expect.stringContaining(`${base}/rootfs.tar.xz`) });
    expect(err?.message).not.toContain('verify: false');
  });
});

describe('every document fetch is retried', () => {
  it('survives a 500 on index-system and a 502 on each signature', async () => {
    const { base } = await publishBoth();
    const routes = server.http.routes;
    routes.get('/meta/1.0/index-system')!.failTimes = 1;
    for (const path of ['/meta/1.0/index-system.asc', `${base}/rootfs.tar.xz.asc`, `${base}/meta.tar.xz.asc`])
      routes.set(path, { ...routes.get(path)!, failTimes: 1, status: undefined });
    const warnings: string[] = [];
    const img = await fetchIndexImage(q, {
      server: server.url,
      cache: new ImageCache({ dir }),
      keys: [signer.publicKey],
      ...fast,
      onEvent: (e) => e.type === 'warning' && warnings.push(e.message),
    });
    expect(img.rootfs.size).toBe(newer.rootfs.length);
    expect(warnings.length).toBe(4);
    expect(server.http.hits.get('/meta/1.0/index-system')).toBe(2);
    expect(server.http.hits.get(`${base}/rootfs.tar.xz.asc`)).toBe(2);
  });

  it('gives up with TRANSPORT naming the URL once every attempt failed', async () => {
    await publishBoth();
    server.http.routes.get('/meta/1.0/index-system')!.failTimes = 10;
    await expect(resolveIndex(server.url, q, { keys: [signer.publicKey], ...fast })).rejects.toMatchObject({
      code: 'TRANSPORT',
      message: expect.stringContaining('/meta/1.0/index-system'),
    });
    expect(server.http.hits.get('/meta/1.0/index-system')).toBe(3);
  });

  it('retries the simplestreams documents too', async () => {
    await server.publishSimplestreams(q, newer, signer.privateKey);
    server.http.routes.get('/streams/v1/index.sjson')!.failTimes = 1;
    server.http.routes.get('/streams/v1/images.sjson')!.failTimes = 1;
    const r = await resolveImage('index:busybox/1.36/amd64', {
      cache: new ImageCache({ dir }),
      servers: { simplestreams: server.url },
      keys: [signer.publicKey],
      ...fast,
    });
    expect(r.kind).toBe('lxd-split');
    expect(server.http.hits.get('/streams/v1/index.sjson')).toBe(2);
  });
});

describe('key files', () => {
  it('a missing or unreadable key file is INVALID_SPEC naming the keys option and the path', async () => {
    await publishBoth();
    const missing = join(dir, 'no-such-key.gpg');
    await expect(
      fetchIndexImage(q, { server: server.url, cache: new ImageCache({ dir }), keys: [missing] }),
    ).rejects.toMatchObject({ code: 'INVALID_SPEC', field: 'keys', message: expect.stringContaining(missing) });
    const garbage = join(dir, 'garbage.gpg');
    await writeFile(garbage, 'not a key');
    await expect(
      fetchIndexImage(q, { server: server.url, cache: new ImageCache({ dir }), keys: [garbage] }),
    ).rejects.toMatchObject({ code: 'INVALID_SPEC', field: 'keys', message: expect.stringContaining(garbage) });
  });

  it('reads an armored key file', async () => {
    await publishBoth();
    const file = join(dir, 'signer.asc');
    await writeFile(file, signer.publicKey);
    const img = await fetchIndexImage(q, { server: server.url, cache: new ImageCache({ dir }), keys: [file] });
    expect(img.meta.size).toBe(newer.meta.length);
  });
});
