import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cliSettings, configFilePath } from '../src/config.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'execenv-cli-config-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('cliSettings', () => {
  it('finds the file under XDG_CONFIG_HOME unless EXECENV_CONFIG names one', () => {
    expect(configFilePath({ XDG_CONFIG_HOME: '/x' })).toBe('/x/execenv/config.json');
    expect(configFilePath({ XDG_CONFIG_HOME: '/x', EXECENV_CONFIG: '/y.json' })).toBe('/y.json');
  });

  it('says chroot and the driver image by default, with no file', async () => {
    const s = await cliSettings({ XDG_CONFIG_HOME: dir, XDG_STATE_HOME: '/st', XDG_CACHE_HOME: '/ca' });
    expect(s.driver).toMatchObject({ value: 'chroot', source: 'default' });
    expect(s.image).toMatchObject({ value: undefined, source: 'default' });
    expect(s.plugins).toMatchObject({ value: [], source: 'default' });
    expect(s.stateDir).toMatchObject({ value: '/st/execenv', source: 'default' });
    expect(s.cacheDir).toMatchObject({ value: '/ca/execenv', source: 'default' });
  });

  it('layers the file over the defaults and variables over the file, naming where each came from', async () => {
    const file = join(dir, 'config.json');
    await writeFile(
      file,
      JSON.stringify({ driver: 'nspawn', image: '/srv/a.tar', plugins: ['./p.js'], images: { verify: false } }),
    );
    const s = await cliSettings({ EXECENV_CONFIG: file, EXECENV_IMAGE: '/srv/b.tar', EXECENV_STATE_DIR: '/state' });
    expect(s.driver).toEqual({ value: 'nspawn', source: 'file', origin: file });
    expect(s.image).toEqual({ value: '/srv/b.tar', source: 'env', origin: '$EXECENV_IMAGE' });
    expect(s.plugins).toEqual({ value: ['./p.js'], source: 'file', origin: file });
    expect(s.stateDir).toEqual({ value: '/state', source: 'env', origin: '$EXECENV_STATE_DIR' });
    const p = await cliSettings({ EXECENV_CONFIG: file, EXECENV_PLUGINS: 'a:/b/c.js' });
    expect(p.plugins).toEqual({ value: ['a', '/b/c.js'], source: 'env', origin: '$EXECENV_PLUGINS' });
  });

  it('refuses a malformed file with INVALID_SPEC naming it', async () => {
    const file = join(dir, 'config.json');
    await writeFile(file, '{ nope');
    await expect(cliSettings({ EXECENV_CONFIG: file })).rejects.toMatchObject({
      code: 'INVALID_SPEC',
      message: expect.stringContaining(`${file}: is not JSON`),
    });
    await writeFile(file, JSON.stringify({ driver: 3 }));
    await expect(cliSettings({ EXECENV_CONFIG: file })).rejects.toThrow(/"driver" must be a non-empty string/);
    await writeFile(file, JSON.stringify({ plugins: 'x' }));
    await expect(cliSettings({ EXECENV_CONFIG: file })).rejects.toThrow(/"plugins" must be an array/);
  });
});
