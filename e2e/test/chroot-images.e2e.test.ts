import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChrootDriver, type ChrootImageSources } from '@execenv/chroot';
import { type ExecenvEvent, hostRunner, mountPoints, open, readLeases } from '@execenv/core';
import { convertToLxdUnified, convertToQcow2, ImageCache } from '@execenv/images';
import {
  generateSigningKey,
  type ImageFiles,
  ImageServer,
  type SigningKey,
  splitImageFiles,
} from '@execenv/images/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxTarball } from './fixtures.js';

// Every image source @execenv/images knows, reaching a real chroot: signed
// index servers on loopback, split and unified LXD images, a URL, a disk.
const served = { distribution: 'busybox', release: '1.36', architecture: 'amd64' };
const info = { architecture: 'amd64', os: 'busybox', release: '1.36' };
let work: string;
let stateDir: string;
let server: ImageServer;
let key: SigningKey;
let files: ImageFiles;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'execenv-e2e-images-'));
  stateDir = join(work, 'state');
  key = await generateSigningKey();
  files = await splitImageFiles(await readFile(busyboxTarball('.xz')), info);
  server = await new ImageServer().start();
  await server.publishLxcDownload(served, files, key.privateKey);
  await server.publishSimplestreams(served, files, key.privateKey);
  server.http.routes.set('/busybox.tar.zst', { body: await readFile(busyboxTarball('.zst')) });
});
afterAll(async () => {
  await server.stop();
  await rm(work, { recursive: true, force: true });
});

/** A driver with a cache of its own, so every case downloads and extracts for itself. */
function driverFor(name: string, images?: ChrootImageSources) {
  return new ChrootDriver({ mode: 'root', cacheDir: join(work, `cache-${name}`), images });
}

async function osRelease(d: ChrootDriver, image: string): Promise<string> {
  await using env = await d.open({ image }, { stateDir });
  return (await env.exec(['cat', '/etc/os-release'], { check: true })).stdout;
}

describe('chroot images through @execenv/images', () => {
  it.each(['lxc', 'simplestreams'] as const)(
    'runs index:busybox/1.36/amd64 from a signed %s server',
    async (layout) => {
      const d = driverFor(layout, { servers: { [layout]: server.url }, keys: [key.publicKey] });
      expect(await osRelease(d, 'index:busybox/1.36/x86_64')).toContain('busybox fixture');
    },
  );

  it('refuses an index image signed by a key it was not given, creating nothing', async () => {
    const stranger = await generateSigningKey('stranger');
    const d = driverFor('stranger', { servers: { lxc: server.url }, keys: [stranger.publicKey] });
    const before = await readLeases(stateDir);
    await expect(d.open({ image: 'index:busybox/1.36/amd64' }, { stateDir })).rejects.toMatchObject({
      code: 'IMAGE_VERIFY_FAILED',
    });
    expect(await readLeases(stateDir)).toEqual(before);
    expect((await mountPoints()).filter((m) => m.startsWith(work))).toEqual([]);
    expect(await new ImageCache({ dir: join(work, 'cache-stranger', 'images') }).list()).toEqual([]);
  });

  it('runs a split LXD image given as two local files', async () => {
    await writeFile(join(work, 'meta.tar.xz'), files.meta);
    await writeFile(join(work, 'rootfs.tar.xz'), files.rootfs);
    const image = `lxd-split:${join(work, 'meta.tar.xz')},${join(work, 'rootfs.tar.xz')}`;
    expect(await osRelease(driverFor('split'), image)).toContain('busybox fixture');
  });

  it('runs an LXD unified tarball', async () => {
    const cache = new ImageCache({ dir: join(work, 'unified') });
    const unified = await convertToLxdUnified(busyboxTarball(), info, { cache, runner: hostRunner() });
    expect(await osRelease(driverFor('unified'), unified.path)).toContain('busybox fixture');
  });

  it('runs a rootfs tarball downloaded from a URL', async () => {
    expect(await osRelease(driverFor('url'), `${server.url}/busybox.tar.zst`)).toContain('busybox fixture');
  });

  it('refuses a disk image, saying which driver boots it, creating nothing', async () => {
    const cache = new ImageCache({ dir: join(work, 'disk') });
    const disk = await convertToQcow2(busyboxTarball(), { size: '64M' }, { cache, runner: hostRunner() });
    const before = await readLeases(stateDir);
    await expect(driverFor('disk').open({ image: disk.path }, { stateDir })).rejects.toMatchObject({
      code: 'INVALID_SPEC',
      field: 'image',
      message: expect.stringContaining('qemu'),
    });
    expect(await readLeases(stateDir)).toEqual(before);
  });
});

describe('image settings reach the registry', () => {
  /** Runs `fn` with `vars` in the environment, restoring it afterwards. */
  async function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
    const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
    Object.assign(process.env, vars);
    try {
      return await fn();
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  }

  async function registryOsRelease(image: string, driverOptions?: Record<string, unknown>): Promise<string> {
    await using env = await open('chroot', { image, driverOptions }, { stateDir });
    return (await env.exec(['cat', '/etc/os-release'], { check: true })).stdout;
  }

  it("open('chroot', { image: 'index:…' }) takes servers and keys from EXECENV_* variables", async () => {
    const keyFile = join(work, 'signer.asc');
    await writeFile(keyFile, key.publicKey);
    const vars = {
      XDG_CONFIG_HOME: join(work, 'no-config'),
      EXECENV_IMAGE_SERVER: server.url,
      EXECENV_IMAGE_KEYS: keyFile,
      EXECENV_IMAGE_CACHE_DIR: join(work, 'cache-registry-env'),
    };
    expect(await withEnv(vars, () => registryOsRelease('index:busybox/1.36/amd64'))).toContain('busybox fixture');
    expect(await new ImageCache({ dir: vars.EXECENV_IMAGE_CACHE_DIR }).list()).toHaveLength(2);
  });

  it('and from the XDG config file, with the spec overriding it per environment', async () => {
    const config = join(work, 'xdg');
    await mkdir(join(config, 'execenv', 'keys'), { recursive: true });
    await writeFile(join(config, 'execenv', 'keys', 'signer.asc'), key.publicKey);
    const cacheDir = join(work, 'cache-registry-file');
    await writeFile(
      join(config, 'execenv', 'config.json'),
      JSON.stringify({ images: { servers: { simplestreams: server.url }, cacheDir } }),
    );
    const vars = { XDG_CONFIG_HOME: config };
    expect(await withEnv(vars, () => registryOsRelease('index:busybox/1.36/amd64'))).toContain('busybox fixture');
    // A stranger's key given in the spec replaces the configured ones: refused, nothing created.
    const stranger = await generateSigningKey('stranger');
    const before = await readLeases(stateDir);
    await expect(
      withEnv(vars, () =>
        registryOsRelease('index:busybox/1.36/amd64', {
          images: { servers: { lxc: server.url }, keys: [stranger.publicKey], cacheDir: join(work, 'cache-spec') },
        }),
      ),
    ).rejects.toMatchObject({ code: 'IMAGE_VERIFY_FAILED' });
    expect(await readLeases(stateDir)).toEqual(before);
  });

  it('a warm start runs with the image server stopped, saying it used the last verified index', async () => {
    const own = await new ImageServer().start();
    await own.publishLxcDownload(served, files, key.privateKey);
    const d = driverFor('offline', { servers: { lxc: own.url }, keys: [key.publicKey], maxIndexAgeMs: 0 });
    expect(await osRelease(d, 'index:busybox/1.36/amd64')).toContain('busybox fixture');
    await own.stop();
    const events: ExecenvEvent[] = [];
    await using env = await d.open({ image: 'index:busybox/1.36/amd64' }, { stateDir, onEvent: (e) => events.push(e) });
    expect((await env.exec(['cat', '/etc/os-release'], { check: true })).stdout).toContain('busybox fixture');
    expect(events).toContainEqual(
      expect.objectContaining({ type: 'warning', message: expect.stringContaining('using the copy verified at') }),
    );
  });
});
