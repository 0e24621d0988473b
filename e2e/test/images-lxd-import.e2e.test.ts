import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostRunner } from '@execenv/core';
import { convertToLxdUnified, ImageCache, lxdImageFiles, resolveImage } from '@execenv/images';
import { generateSigningKey, ImageServer, splitImageFiles } from '@execenv/images/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxTarball } from './fixtures.js';

// What @execenv/images makes for LXD, imported by the real daemon: the
// zstd-compressed unified tarball, and an lxc-download image (whose own
// metadata LXD refuses) converted to a split LXD image whose templates apply.
const runner = hostRunner();
const lxc = (argv: string[], check = true) => runner.run(['lxc', ...argv], { check });
const lxdReady = await lxc(['info'], false).then(
  (r) => r.exitCode === 0,
  () => false,
);
if (!lxdReady) console.warn('images-lxd-import: skipped, no LXD daemon answers `lxc info` on this host');

const info = { architecture: 'amd64', os: 'busybox', release: '1.36' };
const suffix = randomBytes(4).toString('hex');
const aliases: string[] = [];
const instances: string[] = [];
let work: string;
let cache: ImageCache;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'execenv-e2e-lxd-import-'));
  cache = new ImageCache({ dir: join(work, 'cache') });
});
afterAll(async () => {
  for (const name of instances) await lxc(['delete', '--force', name], false);
  for (const alias of aliases) await lxc(['image', 'delete', alias], false);
  await rm(work, { recursive: true, force: true });
});

describe.skipIf(!lxdReady)('LXD imports what @execenv/images makes', () => {
  it('imports the zstd-compressed unified tarball', async () => {
    const unified = await convertToLxdUnified(busyboxTarball(), info, { cache, runner });
    expect((await readFile(unified.path)).subarray(0, 4)).toEqual(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]));
    const alias = `execenv-images-unified-${suffix}`;
    aliases.push(alias);
    await lxc(['image', 'import', unified.path, '--alias', alias]);
    expect((await lxc(['image', 'info', alias])).stdout).toMatch(/Architecture: x86_64/);
  });

  it('refuses lxc-download metadata as such, and imports and launches it converted, its templates applied', async () => {
    const key = await generateSigningKey();
    const server = await new ImageServer().start();
    try {
      const files = await splitImageFiles(await readFile(busyboxTarball('.xz')), info);
      await server.publishLxcDownload(
        { distribution: 'busybox', release: '1.36', architecture: 'amd64' },
        files,
        key.privateKey,
      );
      const resolved = await resolveImage('index:busybox/1.36/amd64', {
        cache,
        servers: { lxc: server.url },
        keys: [key.publicKey],
      });
      expect(resolved.kind).toBe('lxc-download');
      if (resolved.kind !== 'lxc-download') return;
      const raw = await lxc(
        ['image', 'import', resolved.meta, resolved.rootfs, '--alias', `execenv-images-raw-${suffix}`],
        false,
      );
      expect(raw.exitCode).not.toBe(0);
      const converted = await lxdImageFiles(resolved, { cache, runner });
      if (converted.kind !== 'split') throw new Error('expected a split image');
      const alias = `execenv-images-lxc-${suffix}`;
      aliases.push(alias);
      await lxc(['image', 'import', converted.meta, converted.rootfs, '--alias', alias]);
      expect((await lxc(['image', 'info', alias])).stdout).toMatch(/os: busybox/);
      const name = `execenv-images-${suffix}`;
      instances.push(name);
      await lxc([
        'launch',
        alias,
        name,
        '-c',
        'raw.lxc=lxc.init.cmd = /bin/sleep infinity',
        '-c',
        'raw.lxc=lxc.signal.halt = SIGKILL',
      ]);
      expect((await lxc(['exec', name, '--', 'cat', '/etc/hostname'])).stdout.trim()).toBe(name);
    } finally {
      await server.stop();
    }
  }, 120_000);
});

describe.skipIf(!lxdReady)('the LXD driver and signed index images', () => {
  it('opens index: from a signed lxc-download server with the keys it was given, and refuses a stranger', async () => {
    const { LxdDriver } = await import('@execenv/lxd');
    const server = await new ImageServer().start();
    const fingerprints = async () =>
      new Set(
        JSON.parse((await lxc(['image', 'list', '--format', 'json'])).stdout).map(
          (i: { fingerprint: string }) => i.fingerprint,
        ),
      );
    const before = await fingerprints();
    try {
      const key = await generateSigningKey();
      const files = await splitImageFiles(await readFile(busyboxTarball('.xz')), info);
      await server.publishLxcDownload(
        { distribution: 'busybox', release: '1.36', architecture: 'amd64' },
        files,
        key.privateKey,
      );
      const stateDir = join(work, 'state');
      const trusted = new LxdDriver({
        cacheDir: join(work, 'driver-cache'),
        images: { servers: { lxc: server.url }, keys: [key.publicKey] },
      });
      const env = await trusted.open({ image: 'index:busybox/1.36/amd64' }, { stateDir });
      try {
        expect((await env.exec(['cat', '/etc/os-release'], { check: true })).stdout).toContain('busybox fixture');
      } finally {
        await env.close();
      }
      const stranger = await generateSigningKey('stranger');
      const refusing = new LxdDriver({
        cacheDir: join(work, 'driver-cache-stranger'),
        images: { servers: { lxc: server.url }, keys: [stranger.publicKey] },
      });
      await expect(refusing.open({ image: 'index:busybox/1.36/amd64' }, { stateDir })).rejects.toMatchObject({
        code: 'IMAGE_VERIFY_FAILED',
      });
      expect(await refusing.list({ stateDir })).toEqual([]);
      (await trusted.client()).close();
      (await refusing.client()).close();
    } finally {
      await server.stop();
      for (const fingerprint of await fingerprints())
        if (!before.has(fingerprint)) await lxc(['image', 'delete', String(fingerprint)], false);
    }
  }, 180_000);

  it("opens an image the daemon already holds under the user's own alias, and leaves it the user's", async () => {
    const { LxdDriver } = await import('@execenv/lxd');
    const server = await new ImageServer().start();
    const userAlias = `execenv-images-user-${suffix}`;
    try {
      const key = await generateSigningKey();
      // A fixed creation date: the user's import and the driver's are the same bytes, so the same fingerprint.
      const files = await splitImageFiles(await readFile(busyboxTarball('.xz')), {
        ...info,
        creationDate: new Date(1_700_000_000_000),
      });
      await server.publishLxcDownload(
        { distribution: 'busybox', release: '1.36', architecture: 'amd64' },
        files,
        key.privateKey,
      );
      const images = { servers: { lxc: server.url }, keys: [key.publicKey] };
      const userCache = new ImageCache({ dir: join(work, 'user-cache') });
      const converted = await lxdImageFiles(
        await resolveImage('index:busybox/1.36/amd64', { ...images, cache: userCache }),
        {
          cache: userCache,
          runner,
        },
      );
      if (converted.kind !== 'split') throw new Error('expected a split image');
      await lxc(['image', 'import', converted.meta, converted.rootfs, '--alias', userAlias]);
      const driver = new LxdDriver({ cacheDir: join(work, 'driver-cache-shared'), images });
      {
        await using env = await driver.open({ image: 'index:busybox/1.36/amd64' }, { stateDir: join(work, 'state') });
        expect((await env.exec(['cat', '/etc/os-release'], { check: true })).stdout).toContain('busybox fixture');
      }
      expect(await driver.pruneImages({ maxIdleMs: 0 })).toEqual([]);
      expect((await lxc(['image', 'info', userAlias])).stdout).toMatch(/os: busybox/);
      (await driver.client()).close();
    } finally {
      await server.stop();
      await lxc(['image', 'delete', userAlias], false);
    }
  }, 180_000);
});
