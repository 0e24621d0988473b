import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  checkImageSettings,
  DEFAULT_IMAGE_SERVERS,
  driverImages,
  imageCacheOf,
  imageSettings,
  LINUXCONTAINERS_KEY_FINGERPRINT,
  mergeImageSettings,
} from '../src/image-settings.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'execenv-settings-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('imageSettings', () => {
  it('defaults to the public lxc image server, whose key fingerprint is the one lxc-download pins', async () => {
    expect(await imageSettings({ env: { XDG_CONFIG_HOME: dir } })).toEqual({ servers: DEFAULT_IMAGE_SERVERS });
    expect(DEFAULT_IMAGE_SERVERS.lxc).toBe('https://images.linuxcontainers.org');
    expect(LINUXCONTAINERS_KEY_FINGERPRINT).toMatch(/^[0-9A-F]{40}$/);
  });

  it('reads $XDG_CONFIG_HOME/execenv/config.json and the key files in its keys/ directory', async () => {
    await mkdir(join(dir, 'execenv', 'keys'), { recursive: true });
    await writeFile(join(dir, 'execenv', 'keys', 'b.gpg'), '');
    await writeFile(join(dir, 'execenv', 'keys', 'a.asc'), '');
    await writeFile(join(dir, 'execenv', 'keys', 'README'), '');
    await writeFile(
      join(dir, 'execenv', 'config.json'),
      JSON.stringify({
        images: { servers: { simplestreams: 'http://127.0.0.1:1' }, budgetBytes: 1024, refresh: 'never' },
      }),
    );
    expect(await imageSettings({ env: { XDG_CONFIG_HOME: dir } })).toEqual({
      servers: { simplestreams: 'http://127.0.0.1:1' },
      keys: [join(dir, 'execenv', 'keys', 'a.asc'), join(dir, 'execenv', 'keys', 'b.gpg')],
      budgetBytes: 1024,
      refresh: 'never',
    });
  });

  it('lets EXECENV_* variables override the file', async () => {
    await mkdir(join(dir, 'execenv'), { recursive: true });
    await writeFile(join(dir, 'execenv', 'config.json'), JSON.stringify({ images: { verify: true, keys: ['/a'] } }));
    const env = {
      XDG_CONFIG_HOME: dir,
      EXECENV_IMAGE_SERVER: 'http://127.0.0.1:2',
      EXECENV_IMAGE_KEYS: '/k1.gpg:/k2.asc',
      EXECENV_IMAGE_VERIFY: '0',
      EXECENV_IMAGE_CACHE_DIR: '/cache',
      EXECENV_IMAGE_BUDGET: '20G',
      EXECENV_IMAGE_REFRESH: 'always',
      EXECENV_INDEX_MAX_AGE: '60',
      EXECENV_IMAGE_TIMEOUT: '5',
    };
    expect(await imageSettings({ env })).toEqual({
      servers: { lxc: 'http://127.0.0.1:2' },
      keys: ['/k1.gpg', '/k2.asc'],
      verify: false,
      cacheDir: '/cache',
      budgetBytes: 20 * 2 ** 30,
      refresh: 'always',
      maxIndexAgeMs: 60_000,
      timeoutMs: 5000,
    });
    expect(imageCacheOf(await imageSettings({ env }))).toMatchObject({ dir: '/cache', budgetBytes: 20 * 2 ** 30 });
  });

  it("gives a driver its settings over the user's, and its own cache root where it has one", async () => {
    const saved = { ...process.env };
    Object.assign(process.env, {
      EXECENV_CONFIG: join(dir, 'absent.json'),
      EXECENV_IMAGE_CACHE_DIR: '/settings-cache',
      EXECENV_IMAGE_BUDGET: '1G',
    });
    try {
      const plain = await driverImages(undefined, { verify: true }, { verify: false });
      expect(plain.images).toMatchObject({ verify: false, cacheDir: '/settings-cache' });
      expect(plain.cache).toMatchObject({ dir: '/settings-cache', budgetBytes: 2 ** 30 });
      const own = await driverImages('/driver-root');
      expect(own.cache).toMatchObject({ dir: '/driver-root/images', budgetBytes: 2 ** 30 });
    } finally {
      for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
      Object.assign(process.env, saved);
    }
  });

  it('EXECENV_CONFIG names another file; a malformed file or variable is INVALID_SPEC naming it', async () => {
    const file = join(dir, 'other.json');
    await writeFile(file, '{ not json');
    await expect(imageSettings({ env: { EXECENV_CONFIG: file } })).rejects.toMatchObject({
      code: 'INVALID_SPEC',
      field: 'images',
      message: expect.stringContaining(file),
    });
    await writeFile(file, JSON.stringify({ images: { keys: 'one' } }));
    await expect(imageSettings({ env: { EXECENV_CONFIG: file } })).rejects.toMatchObject({ code: 'INVALID_SPEC' });
    await expect(
      imageSettings({ env: { XDG_CONFIG_HOME: dir, EXECENV_IMAGE_REFRESH: 'sometimes' } }),
    ).rejects.toMatchObject({ code: 'INVALID_SPEC', message: expect.stringContaining('EXECENV_IMAGE_REFRESH') });
  });

  it('mergeImageSettings: later layers win field by field, servers and keys as a whole', () => {
    expect(
      mergeImageSettings({ servers: { lxc: 'a' }, keys: ['k'], verify: true }, undefined, {
        servers: { simplestreams: 'b' },
        verify: undefined,
      }),
    ).toEqual({ servers: { simplestreams: 'b' }, keys: ['k'], verify: true });
  });

  it('checkImageSettings takes well-formed option settings and refuses anything else naming the field', () => {
    expect(checkImageSettings(undefined, 'driverOptions.images')).toBeUndefined();
    const good = { servers: { lxc: 'http://127.0.0.1:1' }, keys: ['/k.gpg'], verify: false, timeoutMs: 100 };
    expect(checkImageSettings(good, 'driverOptions.images')).toEqual(good);
    for (const bad of [
      'https://images.example.org',
      { verify: 'no' },
      { keys: '/k.gpg' },
      { servers: { oci: 'x' } },
      { server: 'typo' },
      { timeoutMs: -1 },
      { refresh: 'sometimes' },
    ])
      expect(() => checkImageSettings(bad, 'driverOptions.images')).toThrow(
        expect.objectContaining({ code: 'INVALID_SPEC', field: 'driverOptions.images' }),
      );
  });
});
