import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ExecenvEvent } from '@execenv/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { download } from '../src/download.js';
import { ImageCache } from '../src/image-cache.js';
import { HttpFixture } from '../src/testing/http-fixture.js';

const run = promisify(execFile);
let dir: string;
let server: HttpFixture;
let cache: ImageCache;
const body = Buffer.alloc(300_000, 7);
const digest = createHash('sha256').update(body).digest('hex');

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'execenv-dl-'));
  cache = new ImageCache({ dir });
  server = await new HttpFixture().start();
});
afterEach(async () => {
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('download', () => {
  it('downloads into the cache with progress events, then answers from the cache', async () => {
    server.routes.set('/r.tar', { body });
    const events: ExecenvEvent[] = [];
    const e = await download(`${server.url}/r.tar`, {
      cache,
      expectedSha256: digest,
      onEvent: (ev) => events.push(ev),
    });
    expect(e.digest).toBe(digest);
    const last = events.filter((x) => x.type === 'image-download').at(-1);
    expect(last).toMatchObject({ bytes: body.length, total: body.length });
    await download(`${server.url}/r.tar`, { cache, expectedSha256: digest });
    expect(server.hits.get('/r.tar')).toBe(1);
  });

  it('retries transient failures with backoff', async () => {
    server.routes.set('/r.tar', { body, failTimes: 2 });
    const e = await download(`${server.url}/r.tar`, { cache, backoffMs: 10 });
    expect(e.size).toBe(body.length);
    expect(server.hits.get('/r.tar')).toBe(3);
  });

  it('names the URL of a permanent failure, without retrying', async () => {
    const err = await download(`${server.url}/missing.tar`, { cache, backoffMs: 10 }).catch((x: unknown) => x);
    expect(err).toMatchObject({
      code: 'IMAGE_NOT_FOUND',
      message: expect.stringContaining(`${server.url}/missing.tar`),
    });
    expect(server.hits.get('/missing.tar')).toBe(1);
  });

  it('gives up on a server that keeps failing, saying how often it tried', async () => {
    server.routes.set('/r.tar', { body, failTimes: 99 });
    await expect(download(`${server.url}/r.tar`, { cache, attempts: 3, backoffMs: 5 })).rejects.toMatchObject({
      code: 'TRANSPORT',
      message: expect.stringContaining('failed 3 times'),
    });
  });

  it('retries a truncated download and keeps no partial file', async () => {
    server.routes.set('/r.tar', { body, truncateAt: 1000 });
    await expect(download(`${server.url}/r.tar`, { cache, attempts: 2, backoffMs: 5 })).rejects.toMatchObject({
      code: 'TRANSPORT',
    });
    expect(await cache.list()).toEqual([]);
  });

  it('refuses content whose sha256 does not match the index, keeping nothing', async () => {
    server.routes.set('/r.tar', { body: 'tampered' });
    await expect(download(`${server.url}/r.tar`, { cache, expectedSha256: digest })).rejects.toMatchObject({
      code: 'IMAGE_VERIFY_FAILED',
    });
    expect(await cache.list()).toEqual([]);
  });

  it('downloads once when two processes ask for the same image at the same time', async () => {
    server.routes.set('/big.tar', { body: Buffer.alloc(5_000_000, 1) });
    const script = `
      import { ImageCache, download } from '@execenv/images';
      const e = await download(process.argv[1], { cache: new ImageCache({ dir: process.argv[2] }) });
      console.log(e.digest);
    `;
    const child = () =>
      run(process.execPath, ['--input-type=module', '-e', script, `${server.url}/big.tar`, dir], {
        cwd: new URL('..', import.meta.url).pathname,
      });
    const [a, b] = await Promise.all([child(), child()]);
    expect(a.stdout.trim()).toMatch(/^[a-f0-9]{64}$/);
    expect(b.stdout).toBe(a.stdout);
    expect(server.hits.get('/big.tar')).toBe(1);
    expect((await readFile(join(dir, 'blobs', 'sha256', a.stdout.trim()))).length).toBe(5_000_000);
  });

  it('a process killed mid-download leaves a partial file the next cache operation sweeps', async () => {
    server.routes.set('/stalls.tar', { body: Buffer.alloc(4_000_000, 1), stallAt: 1_000_000 });
    const script = `
      import { ImageCache, download } from '@execenv/images';
      await download(process.argv[1], { cache: new ImageCache({ dir: process.argv[2] }) });
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, `${server.url}/stalls.tar`, dir], {
      cwd: new URL('..', import.meta.url).pathname,
      stdio: 'ignore',
    });
    const partial = async () => {
      const names = await readdir(join(dir, 'tmp')).catch(() => [] as string[]);
      for (const n of names) if ((await stat(join(dir, 'tmp', n))).size >= 1_000_000) return n;
      return undefined;
    };
    let name: string | undefined;
    for (let i = 0; i < 300 && !name; i++) {
      name = await partial();
      if (!name) await new Promise((r) => setTimeout(r, 50));
    }
    expect(name).toMatch(new RegExp(`^${child.pid}-\\d+-[a-f0-9]{12}$`));
    child.kill('SIGKILL');
    await new Promise((r) => child.on('exit', r));
    expect(await readdir(join(dir, 'tmp'))).toEqual([name]);
    expect(await new ImageCache({ dir }).list()).toEqual([]);
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
  });
});
