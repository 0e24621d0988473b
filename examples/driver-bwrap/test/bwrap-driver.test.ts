import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeRunner } from '@execenv/core/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BwrapDriver } from '../src/index.js';

let stateDir: string;
beforeEach(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'bwrap-driver-test-'));
});
afterEach(async () => {
  await rm(stateDir, { recursive: true, force: true });
});

describe('BwrapDriver.open with a bad spec', () => {
  const cases: [string, object, string][] = [
    ['an unknown network', { image: '/x.tar', network: 'bridge0' }, 'network'],
    ['another architecture', { image: '/x.tar', arch: 's390x' }, 'arch'],
    ['a persistent environment', { image: '/x.tar', ephemeral: false }, 'ephemeral'],
    ['no image', {}, 'image'],
  ];
  for (const [what, spec, field] of cases)
    it(`refuses ${what} before running anything or writing state`, async () => {
      const runner = new FakeRunner();
      const driver = new BwrapDriver({ runner });
      await expect(driver.open(spec, { stateDir })).rejects.toMatchObject({ code: 'INVALID_SPEC', field });
      expect(runner.ran).toEqual([]);
      expect(runner.spawned).toEqual([]);
      expect(await readdir(stateDir)).toEqual([]);
    });

  it('says resource limits are unsupported, with the UNSUPPORTED code', async () => {
    const driver = new BwrapDriver({ runner: new FakeRunner() });
    await expect(driver.open({ image: '/x.tar', resources: { cpu: 1 } }, { stateDir })).rejects.toMatchObject({
      code: 'UNSUPPORTED',
      capability: 'resource-limits',
    });
  });
});

describe('BwrapDriver.list', () => {
  it('lists nothing in an empty state directory', async () => {
    expect(await new BwrapDriver().list({ stateDir })).toEqual([]);
  });
});
