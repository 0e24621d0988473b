import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EnvSpec } from '@execenv/core';
import { FakeRunner } from '@execenv/core/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ChrootDriver } from '../src/chroot-driver.js';

let stateDir: string;
beforeEach(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'chroot-spec-unit-'));
});
afterEach(async () => {
  await rm(stateDir, { recursive: true, force: true });
});

describe('ChrootDriver.open refuses what a chroot cannot do, before anything is made', () => {
  it.each([
    ['resource limits', { resources: { memory: '1G' } }, { code: 'UNSUPPORTED', field: 'resources' }],
    [
      'malformed image settings',
      { driverOptions: { images: { servers: 'not-a-list' } } },
      { code: 'INVALID_SPEC', field: 'driverOptions.images' },
    ],
  ])('%s', async (_, extra, want) => {
    const fake = new FakeRunner();
    const driver = new ChrootDriver({ mode: 'root', runner: fake, cacheDir: join(stateDir, 'cache') });
    // As an untyped caller would give it: the checks must not rely on the compiler.
    const spec = { image: '/nonexistent.tar', ...extra } as EnvSpec;
    const err = await driver.open(spec, { stateDir }).catch((e: unknown) => e);
    expect(err).toMatchObject(want);
    expect(fake.ran).toEqual([]);
    expect(fake.spawned).toEqual([]);
    expect(await readdir(stateDir)).toEqual([]);
  });
});
