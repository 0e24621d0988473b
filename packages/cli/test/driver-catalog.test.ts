import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { describeDriver, installedThirdPartyDrivers, installHint } from '../src/driver-catalog.js';

describe('driver catalog', () => {
  it('finds execenv-driver-* packages in the node_modules on the resolution path', async () => {
    const root = await mkdtemp(join(tmpdir(), 'execenv-cli-catalog-'));
    try {
      await mkdir(join(root, 'node_modules', 'execenv-driver-firecracker'), { recursive: true });
      await mkdir(join(root, 'node_modules', 'execenv-driver-'), { recursive: true });
      await mkdir(join(root, 'node_modules', 'left-pad'), { recursive: true });
      await mkdir(join(root, 'app', 'node_modules', 'execenv-driver-wsl'), { recursive: true });
      await writeFile(join(root, 'app', 'main.js'), '');
      const found = await installedThirdPartyDrivers(pathToFileURL(join(root, 'app', 'main.js')).href);
      expect(found.sort()).toEqual(['firecracker', 'wsl']);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('reports a driver nobody provides as not installed, with what to install', async () => {
    const r = await describeDriver('nobody-provides-this');
    expect(r).toMatchObject({
      name: 'nobody-provides-this',
      installed: false,
      available: false,
      reason: 'not installed',
    });
    expect(r.install).toBe(installHint('nobody-provides-this'));
    expect(installHint('podman')).toBe('npm install @execenv/podman');
    expect(installHint('x')).toMatch(/^npm install execenv-driver-x/);
  });
});
