import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open, readLeases } from '@execenv/core';
import { ImageCache } from '@execenv/images';
import { generateSigningKey, ImageServer, splitImageFiles } from '@execenv/images/testing';
import { expect } from 'vitest';
import { busyboxTarball } from './fixtures.js';

/**
 * Opens `index:busybox/1.36/amd64` on `driver` through the registry with
 * nothing but a config file naming a signed lxc-download server on loopback,
 * its key and a cache, and checks that the image ran, that it landed in that
 * cache (at least `cacheEntries` entries), that nothing is left leased, and
 * that settings in the spec win over the file's (a stranger's key is refused).
 */
export async function expectIndexThroughConfig(driver: string, cacheEntries: number): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), `execenv-e2e-${driver}-images-`));
  const server = await new ImageServer().start();
  const saved = { XDG_CONFIG_HOME: process.env.XDG_CONFIG_HOME, EXECENV_CONFIG: process.env.EXECENV_CONFIG };
  try {
    const key = await generateSigningKey();
    const files = await splitImageFiles(await readFile(busyboxTarball('.xz')), {
      architecture: 'amd64',
      os: 'busybox',
      release: '1.36',
    });
    await server.publishLxcDownload(
      { distribution: 'busybox', release: '1.36', architecture: 'amd64' },
      files,
      key.privateKey,
    );
    const keyFile = join(work, 'signer.asc');
    await writeFile(keyFile, key.publicKey);
    const cacheDir = join(work, 'cache');
    const config = join(work, 'config.json');
    await writeFile(config, JSON.stringify({ images: { servers: { lxc: server.url }, keys: [keyFile], cacheDir } }));
    Object.assign(process.env, { XDG_CONFIG_HOME: join(work, 'config-home'), EXECENV_CONFIG: config });
    const stateDir = join(work, 'state');
    {
      await using env = await open(driver, { image: 'index:busybox/1.36/amd64' }, { stateDir });
      expect((await env.exec(['cat', '/etc/os-release'], { check: true })).stdout).toContain('busybox fixture');
    }
    expect((await new ImageCache({ dir: cacheDir }).list()).length).toBeGreaterThanOrEqual(cacheEntries);
    expect(await readLeases(stateDir)).toEqual([]);
    const stranger = await generateSigningKey('stranger');
    const spec = {
      image: 'index:busybox/1.36/amd64',
      driverOptions: { images: { keys: [stranger.publicKey], refresh: 'always' } },
    };
    await expect(open(driver, spec, { stateDir })).rejects.toMatchObject({ code: 'IMAGE_VERIFY_FAILED' });
    expect(await readLeases(stateDir)).toEqual([]);
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    await server.stop();
    await rm(work, { recursive: true, force: true });
  }
}
