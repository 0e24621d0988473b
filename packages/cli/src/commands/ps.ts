import { type Driver, type EnvironmentInfo, type LeaseRecord, readLeases } from '@execenv/core';
import { Command } from 'commander';
import type { CommandContext } from '../command-context.js';
import { knownDriverNames, loadDriver } from '../driver-catalog.js';
import { formatAge, Output } from '../output.js';
import { examples, withJson, withVerbosity } from './common-options.js';

/** Flags of `execenv ps` and `execenv gc`. */
export interface ListFlags {
  driver?: string[];
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
  dryRun?: boolean;
}

/** One environment as `execenv ps` shows it. */
export interface EnvironmentRow extends EnvironmentInfo {
  /** The process that opened it, from its lease, when the driver keeps one. */
  owner?: { pid: number; alive: boolean };
  /** When it was opened (ISO), from its lease. */
  createdAt?: string;
}

/**
 * The installed drivers to look at: those named, else every known one that
 * imports. Unloadable ones are skipped, with a note under `--verbose`.
 */
export async function installedDrivers(ctx: CommandContext, names: readonly string[] | undefined, out: Output) {
  await ctx.loadPlugins();
  const loaded = [];
  for (const name of names?.length ? names : await knownDriverNames()) {
    const { driver, error } = await loadDriver(name);
    if (driver) loaded.push(driver);
    else if (names?.length) throw error;
    else out.debug(`${name}: skipped (${error?.message})`);
  }
  return loaded;
}

/** Whether a driver whose list or gc failed is simply not usable on this host (its backend is missing). */
export async function unavailable(driver: Driver): Promise<boolean> {
  return !(await driver.probe().catch(() => ({ available: false }))).available;
}

/** Every environment the drivers still hold on this host, with owner and age where a lease records them. */
export async function listEnvironments(ctx: CommandContext, flags: ListFlags, out: Output): Promise<EnvironmentRow[]> {
  const stateDir = (await ctx.settings()).stateDir.value!;
  const leases = new Map<string, LeaseRecord>((await readLeases(stateDir)).map((l) => [l.id, l]));
  const rows: EnvironmentRow[] = [];
  for (const driver of await installedDrivers(ctx, flags.driver, out)) {
    if (!driver.list) {
      out.debug(`${driver.name}: cannot list its environments`);
      continue;
    }
    let infos: EnvironmentInfo[];
    try {
      infos = await driver.list({ stateDir });
    } catch (err) {
      if (await unavailable(driver)) out.debug(`${driver.name}: unavailable here, nothing to list`);
      else out.warn(`${driver.name}: could not list environments: ${(err as Error).message}`);
      continue;
    }
    for (const info of infos) {
      const lease = leases.get(info.id);
      rows.push({
        ...info,
        ...(lease ? { owner: { pid: lease.owner.pid, alive: info.ownerAlive }, createdAt: lease.createdAt } : {}),
      });
    }
  }
  return rows.sort((a, b) => (a.createdAt ?? '').localeCompare(b.createdAt ?? '') || a.id.localeCompare(b.id));
}

/** `execenv ps`. */
export function psCommand(ctx: CommandContext): Command {
  const command = new Command('ps')
    .summary('list environments with their owner and age')
    .description(
      'List the environments that exist on this host, with their driver, owner process and age; those of dead owners are what gc removes.',
    )
    .option('-d, --driver <name>', 'only this driver (repeatable)', (v: string, p: string[] = []) => [...p, v]);
  withVerbosity(withJson(command)).addHelpText('after', examples('execenv ps', 'execenv ps --driver chroot --json'));
  return command.action(async (flags: ListFlags) => {
    try {
      const out = new Output(ctx.io, flags);
      const rows = await listEnvironments(ctx, flags, out);
      if (flags.json) return out.json(rows);
      const now = Date.now();
      out.table(
        ['ID', 'DRIVER', 'OWNER', 'AGE', 'RESOURCES'],
        rows.map((r) => [
          r.id,
          r.driver,
          r.owner ? `${r.owner.pid} (${r.owner.alive ? 'alive' : 'dead'})` : r.ownerAlive ? 'alive' : 'dead',
          r.createdAt ? formatAge(now - Date.parse(r.createdAt)) : '-',
          flags.verbose ? r.resources.join(', ') || '-' : String(r.resources.length),
        ]),
      );
    } catch (err) {
      ctx.fail(err);
    }
  });
}
