import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ImageCache } from '../src/image-cache.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'execenv-cache-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

describe('ImageCache', () => {
  it('stores by content sha256, atomically, and finds it again', async () => {
    const cache = new ImageCache({ dir });
    const e = await cache.put(Readable.from(['hello ', 'world']), { name: 'greeting' });
    expect(e).toMatchObject({ digest: sha('hello world'), size: 11, name: 'greeting' });
    expect(await readFile(e.path, 'utf8')).toBe('hello world');
    expect((await cache.get(e.digest))?.path).toBe(e.path);
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
  });

  it('refuses and deletes content with the wrong sha256', async () => {
    const cache = new ImageCache({ dir });
    await expect(cache.put(Readable.from(['x']), { name: 'x', expectedSha256: sha('y') })).rejects.toMatchObject({
      code: 'IMAGE_VERIFY_FAILED',
    });
    expect(await cache.list()).toEqual([]);
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
  });

  it('keeps content its verify step rejects out of the cache', async () => {
    const cache = new ImageCache({ dir });
    await expect(
      cache.put(Readable.from(['x']), { name: 'x', verify: async () => Promise.reject(new Error('bad')) }),
    ).rejects.toThrow('bad');
    expect(await cache.list()).toEqual([]);
  });

  it('evicts the least recently used blobs past its budget', async () => {
    const cache = new ImageCache({ dir, budgetBytes: 25 });
    const a = await cache.put(Readable.from(['a'.repeat(10)]), { name: 'a' });
    await new Promise((r) => setTimeout(r, 5));
    const b = await cache.put(Readable.from(['b'.repeat(10)]), { name: 'b' });
    await new Promise((r) => setTimeout(r, 5));
    await cache.get(a.digest);
    await new Promise((r) => setTimeout(r, 5));
    await cache.put(Readable.from(['c'.repeat(10)]), { name: 'c' });
    expect((await cache.list()).map((e) => e.name)).toEqual(['a', 'c']);
    expect(await cache.get(b.digest)).toBeUndefined();
  });

  it('lists, removes and prunes on demand', async () => {
    const cache = new ImageCache({ dir });
    const a = await cache.put(Readable.from(['a']), { name: 'a' });
    const b = await cache.put(Readable.from(['bb']), { name: 'b' });
    expect((await cache.list()).map((e) => e.name)).toEqual(['a', 'b']);
    expect(await cache.remove(a.digest)).toBe(true);
    expect(await cache.remove(a.digest)).toBe(false);
    expect((await cache.prune(0)).map((e) => e.digest)).toEqual([b.digest]);
    expect(await cache.list()).toEqual([]);
  });

  it('links keys to digests', async () => {
    const cache = new ImageCache({ dir });
    const e = await cache.put(Readable.from(['v']), { name: 'v' });
    await cache.link('https://x/v', e.digest);
    expect((await cache.lookup('https://x/v'))?.digest).toBe(e.digest);
    expect(await cache.lookup('https://x/other')).toBeUndefined();
  });
});
