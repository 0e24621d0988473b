import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CheckName, ConformanceOptions } from '../../src/conformance/context.js';
import { CHECKS, runCheck } from '../../src/conformance/run.js';
import type { Driver } from '../../src/index.js';
import { baseDriver, MUTANTS, type Mutant, strayProcesses } from './fake-mutants.js';

const check = (name: CheckName) => CHECKS.find((c) => c.name === name)!;

let stateDir: string;
beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'execenv-mutants-'));
});
afterAll(async () => {
  // What mutants of gc() left behind, the real gc() removes: the owner processes are long dead.
  await baseDriver({ leases: true }).gc({ stateDir });
  for (const pid of strayProcesses.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await rm(stateDir, { recursive: true, force: true });
});

function options(driver: Driver, m: Pick<Mutant, 'leases' | 'conformance'>): ConformanceOptions {
  return {
    ...m.conformance,
    name: driver.name,
    driver,
    spec: {},
    openOptions: m.leases ? { stateDir } : undefined,
    ownerProcess: {
      module: '@execenv/core/testing',
      exportName: 'FakeDriver',
      args: [{ leases: true, utilities: true }],
    },
  };
}

// The corpus proves the suite: each mutant has one bug, and the check it names must report it
// with a problem of its own, not by missing its deadline. The unmutated fake passes the same checks.
/** How the unmutated fake runs the check a mutant names: the same leases, fake and conformance options. */
function unmutatedLabel(m: Mutant): string {
  const extras = [
    m.leases ? 'leases' : '',
    m.fake ? `fake ${JSON.stringify(m.fake)}` : '',
    m.conformance ? JSON.stringify(m.conformance) : '',
  ].filter(Boolean);
  return `${m.caughtBy}${extras.length > 0 ? ` with ${extras.join(', ')}` : ''}`;
}

describe('mutant corpus of the fake driver', () => {
  it('holds at least 25 mutants, each with a unique name and a check of the suite', () => {
    expect(MUTANTS.length).toBeGreaterThanOrEqual(25);
    expect(new Set(MUTANTS.map((m) => m.name)).size).toBe(MUTANTS.length);
    for (const m of MUTANTS) expect(CHECKS.map((c) => c.name)).toContain(m.caughtBy);
  });

  const unmutated = [...new Map(MUTANTS.map((m) => [unmutatedLabel(m), m])).entries()];
  it.each(unmutated)(
    'the unmutated fake passes %s',
    async (_label, m) => {
      const r = await runCheck(
        check(m.caughtBy),
        options(baseDriver({ ...(m.leases ? { leases: true } : {}), ...m.fake }), m),
      );
      expect(r).toEqual({ name: m.caughtBy, problems: [] });
    },
    120_000,
  );

  for (const m of MUTANTS)
    it(`mutant ${m.name}: caught by ${m.caughtBy}`, async () => {
      const r = await runCheck(check(m.caughtBy), options(m.driver(), m));
      expect(r.skipped, `${m.name} (${m.bug}) was skipped`).toBeUndefined();
      expect(r.deadlineMissed, `${m.name} (${m.bug}) was caught only by the check's deadline`).toBeUndefined();
      expect(r.problems.length, `${m.name} (${m.bug}) survived`).toBeGreaterThan(0);
      if (process.env.EXECENV_SHOW_MUTANTS) console.log(m.name, r.problems);
      for (const p of r.problems) expect(p).toMatch(/: got .*, want |the image lacks|^note: /s);
    }, 120_000);
});
