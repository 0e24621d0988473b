import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findBinary } from '@execenv/core/driver';
import { FakeRunner } from '@execenv/core/testing';
import { ImageCache } from '@execenv/images';
import { generateSigningKey, ImageServer, type SigningKey } from '@execenv/images/testing';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { hostRunsSystemd } from '../src/host-quirks.js';
import { NspawnDriver } from '../src/nspawn-driver.js';

const served = { distribution: 'busybox', release: '1.36', architecture: 'amd64' };
// Not a tarball: open() stops at extraction, before the runner or the state directory are touched.
const files = { rootfs: Buffer.from('not a root filesystem'), meta: Buffer.from('meta') };
const canOpen = process.getuid?.() === 0 && (await findBinary('systemd-nspawn')) !== undefined;
const systemdHost = await hostRunsSystemd();
if (!canOpen) console.warn('nspawn image settings: open() is not reached without root and systemd-nspawn; skipped');

let work: string;
let stateDir: string;
let server: ImageServer;
let signer: SigningKey;

beforeAll(async () => {
  signer = await generateSigningKey();
  server = await new ImageServer().start();
  await server.publishLxcDownload(served, files, signer.privateKey);
});
afterAll(async () => {
  await server.stop();
});
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'nspawn-images-'));
  stateDir = join(work, 'state');
  await mkdir(stateDir);
});
afterEach(async () => {
  vi.unstubAllEnvs();
  await rm(work, { recursive: true, force: true });
});

/** Points the user's configuration at a file of `images` settings, in a config home of its own. */
async function configure(images: object): Promise<void> {
  const file = join(work, 'config.json');
  await writeFile(file, JSON.stringify({ images }));
  vi.stubEnv('XDG_CONFIG_HOME', join(work, 'config-home'));
  vi.stubEnv('EXECENV_CONFIG', file);
}

async function signerKeyFile(): Promise<string> {
  const path = join(work, 'signer.asc');
  await writeFile(path, signer.publicKey);
  return path;
}

describe.skipIf(!canOpen)('image settings reach open()', () => {
  it('takes servers, keys and the cache directory from the configuration file', async () => {
    const cacheDir = join(work, 'configured-cache');
    await configure({ servers: { lxc: server.url }, keys: [await signerKeyFile()], cacheDir });
    const runner = new FakeRunner();
    const err = await new NspawnDriver({ runner })
      .open({ image: 'index:busybox/1.36/amd64' }, { stateDir })
      .catch((e: unknown) => e);
    // Fetched from the configured server, verified with the configured key, kept in the configured cache.
    expect(err).toMatchObject({ code: 'IMAGE_NOT_FOUND', message: expect.stringContaining(cacheDir) });
    expect(await new ImageCache({ dir: cacheDir }).list()).toHaveLength(2);
    expect(runner.ran).toEqual([]);
    expect(await readdir(stateDir)).toEqual([]);
  });

  it('takes them from EXECENV_* variables', async () => {
    vi.stubEnv('XDG_CONFIG_HOME', join(work, 'config-home'));
    vi.stubEnv('EXECENV_CONFIG', join(work, 'absent.json'));
    vi.stubEnv('EXECENV_IMAGE_SERVER', server.url);
    vi.stubEnv('EXECENV_IMAGE_KEYS', await signerKeyFile());
    vi.stubEnv('EXECENV_IMAGE_CACHE_DIR', join(work, 'variable-cache'));
    const err = await new NspawnDriver({ runner: new FakeRunner() })
      .open({ image: 'index:busybox/1.36/amd64' }, { stateDir })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: 'IMAGE_NOT_FOUND',
      message: expect.stringContaining(join(work, 'variable-cache')),
    });
  });

  it("lets the spec's driverOptions.images override the configuration, and the driver's cacheDir the cache", async () => {
    await configure({ servers: { lxc: server.url }, keys: [await signerKeyFile()], cacheDir: join(work, 'unused') });
    const stranger = await generateSigningKey('stranger');
    const driver = new NspawnDriver({ runner: new FakeRunner(), cacheDir: join(work, 'driver-root') });
    await expect(
      driver.open(
        { image: 'index:busybox/1.36/amd64', driverOptions: { images: { keys: [stranger.publicKey] } } },
        { stateDir },
      ),
    ).rejects.toMatchObject({ code: 'IMAGE_VERIFY_FAILED' });
    const err = await driver.open({ image: 'index:busybox/1.36/amd64' }, { stateDir }).catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: 'IMAGE_NOT_FOUND',
      message: expect.stringContaining(join(work, 'driver-root', 'images')),
    });
    expect(await stat(join(work, 'unused')).catch(() => undefined)).toBeUndefined();
    expect(await readdir(stateDir)).toEqual([]);
  });
});

describe('NspawnDriver options and gc', () => {
  it('refuses malformed image settings in the spec, naming driverOptions.images, before creating anything', async () => {
    const runner = new FakeRunner();
    const driver = new NspawnDriver({ runner, cacheDir: join(work, 'cache') });
    for (const images of [{ verify: 'no' }, { sever: 'typo' }, 'https://images.example.org'])
      await expect(
        driver.open({ image: 'index:busybox/1.36/amd64', driverOptions: { images } as never }, { stateDir }),
      ).rejects.toMatchObject({ code: 'INVALID_SPEC', field: 'driverOptions.images', driver: 'nspawn' });
    expect(runner.ran).toEqual([]);
    expect(await readdir(stateDir)).toEqual([]);
  });

  it.skipIf(systemdHost)(
    'refuses cpu and memory limits without systemd as PID 1 as UNSUPPORTED naming spec.resources',
    async () => {
      const runner = new FakeRunner();
      const err = await new NspawnDriver({ runner, cacheDir: join(work, 'cache') })
        .open({ image: '/nonexistent.tar', resources: { memory: '256M' } }, { stateDir })
        .catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'UNSUPPORTED', field: 'resources', driver: 'nspawn' });
      expect((err as Error).message).toContain('spec.resources');
      expect(runner.ran).toEqual([]);
    },
  );

  it("sweeps dead owners' temporaries out of the image cache", async () => {
    const cacheDir = join(work, 'cache');
    // pid 999999999 is above any pid_max: its owner is dead.
    const partial = join(cacheDir, 'images', 'tmp', '999999999-1-0123456789ab');
    await mkdir(join(partial, '..'), { recursive: true });
    await writeFile(partial, 'half a download');
    const report = await new NspawnDriver({ runner: new FakeRunner(), cacheDir }).gc({ stateDir });
    expect(report.errors).toEqual([]);
    expect(await stat(partial).catch(() => undefined)).toBeUndefined();
  });
});
