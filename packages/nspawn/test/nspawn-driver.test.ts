import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeRunner } from '@execenv/core/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkMachineName } from '../src/machines.js';
import { NspawnDriver } from '../src/nspawn-driver.js';
import { nspawnUndo } from '../src/nspawn-undo.js';
import { resourceProperties } from '../src/resources.js';

let stateDir: string;
beforeEach(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'nspawn-unit-'));
});
afterEach(async () => {
  await rm(stateDir, { recursive: true, force: true });
});

describe('NspawnDriver.open refuses bad specs before creating anything', () => {
  const cases: [string, object, string, string][] = [
    ['a network name that is not one', { network: 'Br 0' }, 'INVALID_SPEC', 'network'],
    ['a network name of one character too many', { network: `n${'x'.repeat(63)}` }, 'INVALID_SPEC', 'network'],
    ['another architecture', { arch: 's390x' }, 'INVALID_SPEC', 'arch'],
    ['a boot option that is not a boolean', { driverOptions: { boot: 'yes' } }, 'INVALID_SPEC', 'driverOptions.boot'],
    ['a bad start timeout', { driverOptions: { startTimeoutMs: -1 } }, 'INVALID_SPEC', 'driverOptions.startTimeoutMs'],
    ['ephemeral: false without a machine', { ephemeral: false }, 'INVALID_SPEC', 'driverOptions.machine'],
    [
      'a machine without ephemeral: false',
      { driverOptions: { machine: 'm1' } },
      'INVALID_SPEC',
      'driverOptions.machine',
    ],
    [
      'a bad machine name',
      { ephemeral: false, driverOptions: { machine: '../x' } },
      'INVALID_SPEC',
      'driverOptions.machine',
    ],
    ['a disk size', { resources: { disk: '10G' } }, 'UNSUPPORTED', 'resources.disk'],
    ['no image', { image: undefined }, 'INVALID_SPEC', 'image'],
  ];
  for (const [what, patch, code, field] of cases)
    it(`refuses ${what}`, async () => {
      const runner = new FakeRunner();
      const driver = new NspawnDriver({ runner, cacheDir: join(stateDir, 'cache') });
      const err = await driver.open({ image: '/nonexistent.tar', ...patch }, { stateDir }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code, driver: 'nspawn' });
      expect(
        (err as { field?: string; capability?: string }).field ?? (err as { capability?: string }).capability,
      ).toBe(field);
      expect(runner.ran).toEqual([]);
      expect(runner.spawned).toEqual([]);
      expect(await readdir(stateDir)).toEqual([]);
    });
});

describe('resourceProperties', () => {
  it('maps cpu and memory to the scope’s CPUQuota and MemoryMax', () => {
    expect(resourceProperties({ cpu: 2, memory: '512M' })).toEqual(['CPUQuota=200%', 'MemoryMax=536870912']);
    expect(resourceProperties(undefined)).toEqual([]);
  });
});

describe('machine names', () => {
  it('accepts hostname labels and refuses anything else', () => {
    expect(checkMachineName('builder-1')).toBe('builder-1');
    for (const bad of ['', '-x', 'A', 'a/b', '..', 'a'.repeat(64), 7])
      expect(() => checkMachineName(bad)).toThrow(expect.objectContaining({ code: 'INVALID_SPEC' }));
  });
});

describe('nspawnUndo', () => {
  it('keeps a machine directory and removes core’s kinds through the runner', async () => {
    const runner = new FakeRunner();
    const undo = nspawnUndo(runner);
    await undo({ kind: 'machine', name: 'builder', path: '/state/nspawn/machines/builder' });
    expect(runner.ran).toEqual([]);
    await undo({ kind: 'dir', path: join(stateDir, 'gone') });
    expect(runner.ran.map((r) => r.argv)).toEqual([['rm', '-rf', '--one-file-system', '--', join(stateDir, 'gone')]]);
  });
});
