import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ImageCache } from '../src/image-cache.js';
import { fetchStreamItems, resolveSimplestreams } from '../src/simplestreams.js';
import { HttpFixture } from './http-fixture.js';

let server: HttpFixture;
let dir: string;
const meta = Buffer.from('lxd metadata tarball');
const root = Buffer.from('root tarball');
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const q = { distribution: 'debian', release: 'bookworm', architecture: 'amd64', variant: 'default' };

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'execenv-ss-'));
  server = await new HttpFixture().start();
  server.routes.set('/streams/v1/index.json', {
    body: JSON.stringify({ index: { images: { datatype: 'image-downloads', path: 'streams/v1/images.json' } } }),
  });
  const version = (m: Buffer, r: Buffer, at: string) => ({
    items: {
      'lxd.tar.xz': { ftype: 'lxd.tar.xz', path: `images/${at}/lxd.tar.xz`, sha256: sha(m), size: m.length },
      'root.tar.xz': { ftype: 'root.tar.xz', path: `images/${at}/root.tar.xz`, sha256: sha(r), size: r.length },
    },
  });
  server.routes.set('/streams/v1/images.json', {
    body: JSON.stringify({
      products: {
        'debian:bookworm:amd64:default': {
          os: 'Debian',
          release: 'bookworm',
          arch: 'amd64',
          variant: 'default',
          versions: { '20261120_05:24': version(meta, root, 'old'), '20261122_05:24': version(meta, root, 'new') },
        },
        'alpine:3.20:arm64:default': { os: 'Alpine', release: '3.20', arch: 'arm64', versions: {} },
      },
    }),
  });
  server.routes.set('/images/new/lxd.tar.xz', { body: meta });
  server.routes.set('/images/new/root.tar.xz', { body: root });
});
afterEach(async () => {
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('simplestreams', () => {
  it('resolves the newest version and downloads its items, checked by sha256', async () => {
    const image = await resolveSimplestreams(server.url, q);
    expect(image).toMatchObject({ product: 'debian:bookworm:amd64:default', version: '20261122_05:24' });
    const files = await fetchStreamItems(server.url, image, { cache: new ImageCache({ dir }) });
    expect(await readFile(files['root.tar.xz']!.path, 'utf8')).toBe('root tarball');
    expect(files['lxd.tar.xz']?.digest).toBe(sha(meta));
  });

  it('refuses an item whose sha256 differs from the index, keeping nothing', async () => {
    server.routes.set('/images/new/root.tar.xz', { body: 'tampered' });
    const cache = new ImageCache({ dir });
    const image = await resolveSimplestreams(server.url, q);
    await expect(fetchStreamItems(server.url, image, { cache, items: ['root.tar.xz'] })).rejects.toMatchObject({
      code: 'IMAGE_VERIFY_FAILED',
    });
    expect(await cache.list()).toEqual([]);
  });

  it('lists what the server has when nothing matches', async () => {
    await expect(resolveSimplestreams(server.url, { ...q, release: 'trixie' })).rejects.toMatchObject({
      code: 'IMAGE_NOT_FOUND',
      message: expect.stringContaining('Alpine/3.20/arm64/default'),
    });
  });
});
