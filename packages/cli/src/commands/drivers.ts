import { Command } from 'commander';
import type { CommandContext } from '../command-context.js';
import { type DriverReport, describeDriver, knownDriverNames } from '../driver-catalog.js';
import { Output } from '../output.js';
import { examples, withJson, withVerbosity } from './common-options.js';

/** Flags of `execenv drivers`. */
export interface DriversFlags {
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
}

/** The text after a driver's status: why it is unavailable and what to install, or how it runs. */
function note(r: DriverReport): string {
  if (r.available) return r.reason ?? '';
  return r.install ? `${r.reason}; install: ${r.install}` : (r.reason ?? '');
}

/** Reports every known driver: the project's, installed `execenv-driver-*` packages and plugins' registrations. */
export async function listDrivers(
  ctx: CommandContext,
): Promise<{ reports: DriverReport[]; plugins: { specifier: string; registered: string[]; error?: string }[] }> {
  const plugins = await ctx.plugins();
  const reports = await Promise.all((await knownDriverNames()).map((name) => describeDriver(name)));
  return {
    reports,
    plugins: plugins.map((p) => ({
      specifier: p.specifier,
      registered: p.registered,
      ...(p.error ? { error: p.error.message } : {}),
    })),
  };
}

/** `execenv drivers`. */
export function driversCommand(ctx: CommandContext): Command {
  const command = new Command('drivers')
    .summary('list drivers and check which this host can run')
    .description(
      "List every known driver (the project's, installed execenv-driver-* packages, and those plugins register) and check this host:\n" +
        'available or not, version, capabilities, and for unavailable ones why and what to install.',
    );
  withVerbosity(withJson(command)).addHelpText(
    'after',
    examples('execenv drivers', "execenv drivers --json | jq -r '.drivers[] | select(.available) | .name'"),
  );
  return command.action(async (flags: DriversFlags) => {
    try {
      const out = new Output(ctx.io, flags);
      const { reports, plugins } = await listDrivers(ctx);
      if (flags.json) {
        out.json({ drivers: reports, plugins });
        return;
      }
      out.table(
        ['DRIVER', 'STATUS', 'VERSION', 'CAPABILITIES', 'NOTES'],
        reports.map((r) => [
          r.name,
          r.available ? 'available' : r.installed ? 'unavailable' : 'not installed',
          r.version ?? '-',
          r.capabilities.join(',') || '-',
          note(r),
        ]),
      );
      for (const p of plugins)
        if (p.error) out.warn(`plugin ${p.specifier} could not be imported: ${p.error}`);
        else out.debug(`plugin ${p.specifier} registered ${p.registered.join(', ') || 'nothing'}`);
      if (flags.verbose)
        for (const r of reports)
          for (const [k, v] of Object.entries(r.details ?? {})) out.debug(`${r.name}: ${k} = ${v}`);
    } catch (err) {
      ctx.fail(err);
    }
  });
}
