import type { GcReport } from '../contract.js';
import { CleanupError } from '../errors.js';
import { drivers, getDriver } from '../registry.js';
import { Lease, readLeases, type Undo } from './lease.js';
import { isAlive } from './owner.js';

/**
 * Releases the leases of `driver` whose owner process is dead, undoing their
 * resources with `undo`. Leases of live owners are never touched.
 *
 * @example
 * ```ts
 * import { collectDeadLeases, defaultStateDir, hostRunner, hostUndo } from '@execenv/core';
 * // FooDriver.gc: leases of live owners are left alone
 * async gc(opts: { stateDir?: string } = {}) {
 *   return collectDeadLeases(opts.stateDir ?? defaultStateDir(), 'foo', hostUndo(hostRunner()));
 * }
 * ```
 */
export async function collectDeadLeases(stateDir: string, driver: string, undo: Undo): Promise<GcReport> {
  const report: GcReport = { removed: [], errors: [] };
  for (const record of await readLeases(stateDir, driver)) {
    if (await isAlive(record.owner)) continue;
    try {
      await Lease.from(stateDir, record).release(undo);
      report.removed.push(record.id);
    } catch (err) {
      const causes = err instanceof CleanupError ? err.errors : [err];
      for (const c of causes) report.errors.push(`${record.id}: ${(c as Error).message}`);
    }
  }
  return report;
}

/**
 * Removes what environments of dead owners left behind, on every registered
 * driver (or the named ones, importing them when needed) that implements gc.
 *
 * @example
 * ```ts
 * import { gc } from '@execenv/core';
 * import '@execenv/chroot';
 * const { removed, errors } = await gc(); // every registered driver that implements gc
 * console.log(`removed ${removed.join(', ') || 'nothing'}`);
 * for (const e of errors) console.error(e);
 * ```
 */
export async function gc(opts: { drivers?: string[]; stateDir?: string } = {}): Promise<GcReport> {
  const total: GcReport = { removed: [], errors: [] };
  for (const name of opts.drivers ?? drivers()) {
    const driver = await getDriver(name);
    if (!driver.gc) continue;
    const r = await driver.gc({ stateDir: opts.stateDir });
    total.removed.push(...r.removed);
    total.errors.push(...r.errors);
  }
  return total;
}
