import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecenvEvent } from '@execenv/core';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { download } from '../src/download.js';
import { getDocument } from '../src/http-get.js';
import { ImageCache } from '../src/image-cache.js';
import { resolveImage } from '../src/resolve-image.js';
import { HttpFixture } from '../src/testing/http-fixture.js';
import { generateSigningKey, ImageServer, type SigningKey } from '../src/testing/image-server.js';

// Short timeouts: a server that never answers must fail the attempt, be retried, then give TRANSPORT.
const quick = { attempts: 2, backoffMs: 1, timeoutMs: 300 };

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'execenv-timeouts-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('requests to a server that goes quiet', () => {
  let server: HttpFixture;
  beforeEach(async () => {
    server = await new HttpFixture().start();
  });
  afterEach(async () => {
    await server.stop();
  });

  it('a document the server never answers is a retried TRANSPORT error naming the URL', async () => {
    server.routes.set('/index', { silent: true });
    const events: ExecenvEvent[] = [];
    const err = await getDocument(`${server.url}/index`, { ...quick, onEvent: (e) => events.push(e) }).catch(
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: 'TRANSPORT', message: expect.stringContaining(`${server.url}/index`) });
    expect((err as Error).message).toContain('no data from the server for 300 ms');
    expect(server.hits.get('/index')).toBe(2);
    expect(events).toContainEqual(expect.objectContaining({ type: 'warning' }));
  });

  it('a download whose headers never come is a retried TRANSPORT error, and leaves no temporary', async () => {
    server.routes.set('/r.tar', { silent: true });
    const cache = new ImageCache({ dir });
    await expect(download(`${server.url}/r.tar`, { cache, ...quick })).rejects.toMatchObject({ code: 'TRANSPORT' });
    expect(server.hits.get('/r.tar')).toBe(2);
    expect(await readdir(join(dir, 'tmp')).catch(() => [])).toEqual([]);
    expect(await cache.list()).toEqual([]);
  });

  it('a download whose body stops mid-way is a retried TRANSPORT error, and leaves no temporary', async () => {
    server.routes.set('/r.tar', { body: Buffer.alloc(100_000, 1), stallAt: 10_000 });
    const cache = new ImageCache({ dir });
    const err = await download(`${server.url}/r.tar`, { cache, ...quick }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'TRANSPORT', message: expect.stringContaining('no data from the server') });
    expect(server.hits.get('/r.tar')).toBe(2);
    expect(await readdir(join(dir, 'tmp')).catch(() => [])).toEqual([]);
    expect(await cache.list()).toEqual([]);
  });

  it('a connection kept alive and idle past the timeout does not break the next requests', async () => {
    server.routes.set('/index', { body: 'index' });
    expect(await getDocument(`${server.url}/index`, quick)).toBe('index');
    await new Promise((r) => setTimeout(r, 2 * quick.timeoutMs));
    expect(await getDocument(`${server.url}/index`, quick)).toBe('index');
    expect(await getDocument(`${server.url}/index`, quick)).toBe('index');
    expect(server.hits.get('/index')).toBe(3);
  });

  it('a server that answers in time is not cut off by the timeout', async () => {
    const body = Buffer.alloc(200_000, 2);
    server.routes.set('/r.tar', { body });
    const entry = await download(`${server.url}/r.tar`, { cache: new ImageCache({ dir }), ...quick });
    expect(entry.size).toBe(body.length);
    expect(server.hits.get('/r.tar')).toBe(1);
  });
});

describe('a stale index on a server that accepts and answers nothing', () => {
  let server: ImageServer;
  let signer: SigningKey;
  beforeAll(async () => {
    signer = await generateSigningKey();
  });
  beforeEach(async () => {
    server = await new ImageServer().start();
  });
  afterEach(async () => {
    await server.stop();
  });

  it.each(['lxc', 'simplestreams'] as const)('falls back to the verified copy from a %s server', async (layout) => {
    const q = { distribution: 'busybox', release: '1.36', architecture: 'amd64' };
    const files = { rootfs: Buffer.from('rootfs'), meta: Buffer.from('meta') };
    if (layout === 'lxc') await server.publishLxcDownload(q, files, signer.privateKey);
    else await server.publishSimplestreams(q, files, signer.privateKey);
    const resolve = (extra: object = {}) =>
      resolveImage('index:busybox/1.36/amd64', {
        cache: new ImageCache({ dir }),
        servers: { [layout]: server.url },
        keys: [signer.publicKey],
        ...quick,
        ...extra,
      });
    const cold = await resolve();
    for (const route of server.http.routes.values()) route.silent = true;
    const events: ExecenvEvent[] = [];
    const warm = await resolve({ maxIndexAgeMs: 0, onEvent: (e: ExecenvEvent) => events.push(e) });
    expect(warm).toEqual(cold);
    expect(events).toContainEqual(
      expect.objectContaining({ type: 'warning', message: expect.stringContaining('using the copy verified at') }),
    );
  });
});
