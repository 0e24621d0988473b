import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecenvEvent } from '@execenv/core';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ImageCache } from '../src/image-cache.js';
import { resolveImage } from '../src/resolve-image.js';
import { generateSigningKey, ImageServer, type SigningKey } from '../src/testing/image-server.js';

let server: ImageServer;
let dir: string;
let signer: SigningKey;
const q = { distribution: 'busybox', release: '1.36', architecture: 'amd64' };
const files = { rootfs: Buffer.from('rootfs'), meta: Buffer.from('meta') };
const fast = { attempts: 2, backoffMs: 1 };

beforeAll(async () => {
  signer = await generateSigningKey();
});
beforeEach(async () => {
  server = await new ImageServer().start();
  dir = await mkdtemp(join(tmpdir(), 'execenv-offline-'));
});
afterEach(async () => {
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});

const totalHits = () => [...server.http.hits.values()].reduce((a, b) => a + b, 0);

describe.each(['lxc', 'simplestreams'] as const)('a warm start from a %s server', (layout) => {
  async function publish() {
    if (layout === 'lxc') await server.publishLxcDownload(q, files, signer.privateKey);
    else await server.publishSimplestreams(q, files, signer.privateKey);
  }
  const resolve = (extra: object = {}) =>
    resolveImage('index:busybox/1.36/amd64', {
      cache: new ImageCache({ dir }),
      servers: { [layout]: server.url },
      keys: [signer.publicKey],
      ...fast,
      ...extra,
    });

  it('touches no network while the verified index is fresh', async () => {
    await publish();
    const cold = await resolve();
    const hits = totalHits();
    expect(await resolve()).toEqual(cold);
    expect(totalHits()).toBe(hits);
  });

  it('falls back to the last verified index when the server is down, saying so', async () => {
    await publish();
    const cold = await resolve();
    await server.stop();
    const events: ExecenvEvent[] = [];
    // maxIndexAgeMs 0: the copy is stale, so the server is tried and found unreachable.
    const warm = await resolve({ maxIndexAgeMs: 0, onEvent: (e: ExecenvEvent) => events.push(e) });
    expect(warm).toEqual(cold);
    expect(events).toContainEqual(
      expect.objectContaining({ type: 'warning', message: expect.stringContaining('using the copy verified at') }),
    );
    await expect(resolve({ refresh: 'always' })).rejects.toMatchObject({ code: 'TRANSPORT' });
  });

  it('refetches a stale index, and never an index with refresh: never', async () => {
    await publish();
    await resolve();
    const hits = totalHits();
    await resolve({ refresh: 'never', maxIndexAgeMs: 0 });
    expect(totalHits()).toBe(hits);
    await resolve({ maxIndexAgeMs: 0 });
    expect(totalHits()).toBeGreaterThan(hits);
  });

  it('never takes an index kept unverified for a verified one', async () => {
    await publish();
    await resolve({ verify: false });
    await server.stop();
    await expect(resolve()).rejects.toMatchObject({ code: 'TRANSPORT' });
  });
});
