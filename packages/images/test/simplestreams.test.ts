import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ImageCache } from '../src/image-cache.js';
import { fetchStreamItems, resolveSimplestreams } from '../src/simplestreams.js';
import { generateSigningKey, ImageServer, type SigningKey, signCleartext } from '../src/testing/image-server.js';

let server: ImageServer;
let dir: string;
let signer: SigningKey;
let stranger: SigningKey;
const files = { meta: Buffer.from('lxd metadata tarball'), rootfs: Buffer.from('root tarball') };
const q = { distribution: 'debian', release: 'bookworm', architecture: 'amd64', variant: 'default' };

beforeAll(async () => {
  signer = await generateSigningKey('image signer');
  stranger = await generateSigningKey('someone else');
});
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'execenv-ss-'));
  server = await new ImageServer().start();
  await server.publishSimplestreams({ ...q, build: '20261120_05:24' }, files, signer.privateKey);
  await server.publishSimplestreams({ ...q, build: '20261122_05:24' }, files, signer.privateKey);
  await server.publishSimplestreams(
    { ...q, distribution: 'alpine', release: '3.20', architecture: 'arm64' },
    files,
    signer.privateKey,
  );
});
afterEach(async () => {
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('simplestreams', () => {
  it('resolves the newest version through the signed index and downloads its items, checked by sha256', async () => {
    const events: string[] = [];
    const image = await resolveSimplestreams(server.url, q, {
      keys: [signer.publicKey],
      onEvent: (e) => events.push(e.type === 'image-verify' ? `verify ${e.reference}` : e.type),
    });
    expect(image).toMatchObject({ product: 'debian:bookworm:amd64:default', version: '20261122_05:24' });
    expect(events).toEqual([
      'image-resolve',
      `verify ${server.url}/streams/v1/index.sjson`,
      `verify ${server.url}/streams/v1/images.sjson`,
    ]);
    expect(server.http.hits.get('/streams/v1/index.json')).toBeUndefined();
    const fetched = await fetchStreamItems(server.url, image, { cache: new ImageCache({ dir }) });
    expect(await readFile(fetched['root.tar.xz']!.path, 'utf8')).toBe('root tarball');
    expect(await readFile(fetched['lxd.tar.xz']!.path, 'utf8')).toBe('lxd metadata tarball');
  });

  it('refuses an index signed by an unknown key, one whose text was altered, and an unsigned one', async () => {
    const signedIndex = server.http.routes.get('/streams/v1/index.sjson')!;
    await expect(resolveSimplestreams(server.url, q, { keys: [stranger.publicKey] })).rejects.toMatchObject({
      code: 'IMAGE_VERIFY_FAILED',
      message: expect.stringContaining('index.sjson'),
    });
    server.http.routes.set('/streams/v1/images.sjson', {
      body: String(server.http.routes.get('/streams/v1/images.sjson')!.body).replace(
        '20261122_05:24',
        '20261123_05:24',
      ),
    });
    await expect(resolveSimplestreams(server.url, q, { keys: [signer.publicKey] })).rejects.toMatchObject({
      code: 'IMAGE_VERIFY_FAILED',
      message: expect.stringContaining('images.sjson'),
    });
    server.http.routes.delete('/streams/v1/index.sjson');
    await expect(resolveSimplestreams(server.url, q, { keys: [signer.publicKey] })).rejects.toMatchObject({
      code: 'IMAGE_VERIFY_FAILED',
      message: expect.stringMatching(/not signed.*verify: false/),
    });
    server.http.routes.set('/streams/v1/index.sjson', signedIndex);
    await expect(resolveSimplestreams(server.url, q)).rejects.toMatchObject({
      code: 'IMAGE_VERIFY_FAILED',
      message: expect.stringContaining('no trusted keys'),
    });
  });

  it('a server with no stream documents (a wrong URL) is IMAGE_NOT_FOUND naming the URL, not a signature problem', async () => {
    const wrong = `${server.url}/not-a-stream-server`;
    const err = await resolveSimplestreams(wrong, q, {
      keys: [signer.publicKey],
      cache: new ImageCache({ dir }),
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: 'IMAGE_NOT_FOUND',
      message: expect.stringContaining(`${wrong}/streams/v1/index.sjson`),
    });
    expect((err as Error).message).not.toContain('verify: false');
    expect(server.http.hits.get('/not-a-stream-server/streams/v1/index.sjson')).toBe(1);
    // Nothing is kept for it: once the server has the documents, the next resolve finds them.
    server.http.routes.set(
      '/not-a-stream-server/streams/v1/index.sjson',
      server.http.routes.get('/streams/v1/index.sjson')!,
    );
    server.http.routes.set(
      '/not-a-stream-server/streams/v1/images.sjson',
      server.http.routes.get('/streams/v1/images.sjson')!,
    );
    const image = await resolveSimplestreams(wrong, q, { keys: [signer.publicKey], cache: new ImageCache({ dir }) });
    expect(image.version).toBe('20261122_05:24');
  });

  it('reads the unsigned index.json only when verify is false', async () => {
    server.http.routes.delete('/streams/v1/index.sjson');
    const image = await resolveSimplestreams(server.url, q, { verify: false });
    expect(image.version).toBe('20261122_05:24');
    expect(server.http.hits.get('/streams/v1/index.json')).toBe(1);
  });

  it('strips the signature of .sjson documents an index names when verify is false', async () => {
    const index = JSON.stringify({
      index: { images: { datatype: 'image-downloads', path: 'streams/v1/images.sjson' } },
    });
    server.http.routes.set('/streams/v1/index.json', { body: index });
    const image = await resolveSimplestreams(server.url, q, { verify: false });
    expect(image.version).toBe('20261122_05:24');
    expect(server.http.hits.get('/streams/v1/images.sjson')).toBe(1);
    // Verifying, the same index is read through its own signed twin.
    server.http.routes.set('/streams/v1/index.sjson', { body: await signCleartext(index, signer.privateKey) });
    expect((await resolveSimplestreams(server.url, q, { keys: [signer.publicKey] })).version).toBe('20261122_05:24');
  });

  it('refuses an item whose sha256 differs from the index, keeping nothing', async () => {
    const cache = new ImageCache({ dir });
    const image = await resolveSimplestreams(server.url, q, { keys: [signer.publicKey] });
    server.http.routes.set(`/${image.items['root.tar.xz']!.path}`, { body: 'tampered' });
    await expect(fetchStreamItems(server.url, image, { cache, items: ['root.tar.xz'] })).rejects.toMatchObject({
      code: 'IMAGE_VERIFY_FAILED',
    });
    expect(await cache.list()).toEqual([]);
  });

  it('lists what the server has when nothing matches', async () => {
    await expect(
      resolveSimplestreams(server.url, { ...q, release: 'trixie' }, { keys: [signer.publicKey] }),
    ).rejects.toMatchObject({
      code: 'IMAGE_NOT_FOUND',
      message: expect.stringContaining('alpine/3.20/arm64/default'),
    });
  });
});
