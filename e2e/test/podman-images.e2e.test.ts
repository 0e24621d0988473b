import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostRunner, open, readLeases } from '@execenv/core';
import { ImageCache } from '@execenv/images';
import { generateSigningKey, ImageServer, type SigningKey, splitImageFiles } from '@execenv/images/testing';
import { PodmanDriver, ROOTFS_LABEL } from '@execenv/podman';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxTarball } from './fixtures.js';

// An index: image reaching a real podman through the shared configuration: a
// signed lxc-download server on loopback, named only in a config file.
const probe = await new PodmanDriver().probe();
if (!probe.available) console.warn(`podman images: skipped, podman is not available here: ${probe.reason}`);

let work: string;
let server: ImageServer;
let key: SigningKey;
let importsBefore: Set<string>;
const saved = { XDG_CONFIG_HOME: process.env.XDG_CONFIG_HOME, EXECENV_CONFIG: process.env.EXECENV_CONFIG };

/** The ids of the images the driver imported from root filesystem tarballs. */
async function rootfsImports(): Promise<Set<string>> {
  const r = await hostRunner().run(['podman', 'images', '--filter', `label=${ROOTFS_LABEL}`, '--format', '{{.Id}}']);
  return new Set(r.stdout.split('\n').filter((l) => l !== ''));
}

beforeAll(async () => {
  if (!probe.available) return;
  work = await mkdtemp(join(tmpdir(), 'execenv-e2e-podman-images-'));
  key = await generateSigningKey();
  const files = await splitImageFiles(await readFile(busyboxTarball('.xz')), {
    architecture: 'amd64',
    os: 'busybox',
    release: '1.36',
  });
  server = await new ImageServer().start();
  await server.publishLxcDownload(
    { distribution: 'busybox', release: '1.36', architecture: 'amd64' },
    files,
    key.privateKey,
  );
  importsBefore = await rootfsImports();
});

afterAll(async () => {
  if (!probe.available) return;
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  // Only the imports this file made, and only when no container uses them (rmi without --force refuses).
  for (const id of await rootfsImports())
    if (!importsBefore.has(id)) await hostRunner().run(['podman', 'rmi', id], { check: false });
  await server.stop();
  await rm(work, { recursive: true, force: true });
}, 60_000);

describe.skipIf(!probe.available)('podman images through the shared configuration', () => {
  it("open('podman', { image: 'index:…' }) takes its server, key and cache from the config file", async () => {
    const keyFile = join(work, 'signer.asc');
    await writeFile(keyFile, key.publicKey);
    const cacheDir = join(work, 'cache');
    const config = join(work, 'config.json');
    await writeFile(config, JSON.stringify({ images: { servers: { lxc: server.url }, keys: [keyFile], cacheDir } }));
    Object.assign(process.env, { XDG_CONFIG_HOME: join(work, 'config-home'), EXECENV_CONFIG: config });
    const stateDir = join(work, 'state');
    {
      await using env = await open('podman', { image: 'index:busybox/1.36/amd64' }, { stateDir });
      expect((await env.exec(['cat', '/etc/os-release'], { check: true })).stdout).toContain('busybox fixture');
    }
    // rootfs.tar.xz and meta.tar.xz downloaded and verified, and the converted tarball, all in the configured cache.
    expect((await new ImageCache({ dir: cacheDir }).list()).length).toBeGreaterThanOrEqual(3);
    expect(await readLeases(stateDir)).toEqual([]);
    // The spec's settings win over the file's: a stranger's key is refused before anything is made.
    const stranger = await generateSigningKey('stranger');
    await expect(
      open(
        'podman',
        { image: 'index:busybox/1.36/amd64', driverOptions: { images: { keys: [stranger.publicKey] } } },
        { stateDir },
      ),
    ).rejects.toMatchObject({ code: 'IMAGE_VERIFY_FAILED' });
    expect(await readLeases(stateDir)).toEqual([]);
  }, 180_000);
});
