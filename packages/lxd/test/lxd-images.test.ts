import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LxdClient } from '../src/lxd-client.js';
import { IMAGE_PROPERTY, importOnce } from '../src/lxd-images.js';
import { FakeLxd } from './fake-lxd.js';

let fake: FakeLxd;
let client: LxdClient;
let dir: string;

beforeEach(async () => {
  fake = await FakeLxd.start();
  client = new LxdClient({ socketPath: fake.socketPath });
  dir = await mkdtemp(join(tmpdir(), 'execenv-lxd-images-test-'));
});
afterEach(async () => {
  client.close();
  await fake.stop();
  await rm(dir, { recursive: true, force: true });
});

const sha256 = (...parts: string[]) => {
  const hash = createHash('sha256');
  for (const p of parts) hash.update(p);
  return hash.digest('hex');
};

describe('importOnce', () => {
  it('uploads a unified tarball once, marks it as imported and names it by its digest', async () => {
    const file = join(dir, 'unified.tar');
    await writeFile(file, 'unified image bytes');
    const alias = await importOnce(client, 'a'.repeat(64), [file]);
    const fingerprint = sha256('unified image bytes');
    expect(fake.aliases.get(alias)).toBe(fingerprint);
    expect(fake.images.get(fingerprint)?.properties).toEqual({ [IMAGE_PROPERTY]: alias });
    expect(await importOnce(client, 'a'.repeat(64), [file])).toBe(alias);
    expect(fake.calls().filter((c) => c === 'POST /1.0/images')).toHaveLength(1);
  });

  it('names the image the daemon already holds when the same files were imported under another alias', async () => {
    const meta = join(dir, 'meta.tar.xz');
    const rootfs = join(dir, 'rootfs.tar.xz');
    await writeFile(meta, 'metadata bytes');
    await writeFile(rootfs, 'rootfs bytes');
    const fingerprint = sha256('metadata bytes', 'rootfs bytes');
    fake.images.set(fingerprint, { fingerprint, properties: {} });
    fake.aliases.set('imported-by-hand', fingerprint);
    const alias = await importOnce(client, 'b'.repeat(64), [meta, rootfs]);
    expect(fake.aliases.get(alias)).toBe(fingerprint);
    // Still the user's image: not marked as ours, so gc's image pruning leaves it alone.
    expect(fake.images.get(fingerprint)?.properties).toEqual({});
  });
});
