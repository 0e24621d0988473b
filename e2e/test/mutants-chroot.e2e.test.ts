import { mkdir, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ChrootDriver } from '@execenv/chroot';
import { defaultStateDir, type EnvSpec, hostRunner, type OpenOptions } from '@execenv/core';
import { CHECKS, type CheckName, runCheck } from '@execenv/core/conformance';

import { afterAll, describe, expect, it } from 'vitest';
import { busyboxTarball } from './fixtures.js';

// Mutants of the real chroot driver, for bugs only a real backend shows: a mount the
// driver made and forgot to lease, a network namespace never entered. The fake driver's
// corpus (packages/core/test/mutants) covers everything else.

const runner = hostRunner();
const leakedMounts: string[] = [];

/** Bind-mounts a directory named after the environment outside its lease: close never undoes it. */
class UnleasedMountChroot extends ChrootDriver {
  override async open(spec: EnvSpec, opts: OpenOptions = {}) {
    const env = await super.open(spec, opts);
    const dir = join(opts.stateDir ?? defaultStateDir(), `mutant-${env.id}`);
    await mkdir(dir, { recursive: true });
    await runner.run(['mount', '--bind', dir, dir]);
    leakedMounts.push(dir);
    return env;
  }
}

/** Opens network 'host' whatever the spec asks: commands see the host's interfaces. */
class HostNetworkChroot extends ChrootDriver {
  override open(spec: EnvSpec, opts?: OpenOptions) {
    return super.open({ ...spec, network: 'host' }, opts);
  }
}

const MUTANTS: { name: string; bug: string; caughtBy: CheckName; driver: ChrootDriver }[] = [
  {
    name: 'chroot-unleased-mount',
    bug: 'makes a bind mount named after the environment and never records it, so close leaves it',
    caughtBy: 'leaks',
    driver: new UnleasedMountChroot({ mode: 'root' }),
  },
  {
    name: 'chroot-network-none-ignored',
    bug: "opens network 'none' as the host's network",
    caughtBy: 'network-none',
    driver: new HostNetworkChroot({ mode: 'root' }),
  },
];

afterAll(async () => {
  for (const dir of leakedMounts.splice(0)) {
    await runner.run(['umount', dir], { check: false });
    await rmdir(dir).catch(() => rm(dir, { recursive: false, force: true }));
  }
});

describe('mutant corpus of the chroot driver', () => {
  for (const m of MUTANTS)
    it(`mutant ${m.name}: caught by ${m.caughtBy}`, async () => {
      const check = CHECKS.find((c) => c.name === m.caughtBy)!;
      const r = await runCheck(check, { name: m.name, driver: m.driver, spec: { image: busyboxTarball() } });
      expect(r.skipped, `${m.name} (${m.bug}) was skipped`).toBeUndefined();
      expect(r.deadlineMissed, `${m.name} (${m.bug}) was caught only by the check's deadline`).toBeUndefined();
      expect(r.problems.length, `${m.name} (${m.bug}) survived`).toBeGreaterThan(0);
      for (const p of r.problems) expect(p).toMatch(/: got .*, want /s);
    });
});
