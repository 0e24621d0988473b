import { Command } from 'commander';
import type { CommandContext } from '../command-context.js';
import { EXIT } from '../exit-codes.js';
import { Output } from '../output.js';
import { examples, withJson, withVerbosity } from './common-options.js';
import { installedDrivers, type ListFlags, listEnvironments, unavailable } from './ps.js';

/** `execenv gc`. */
export function gcCommand(ctx: CommandContext): Command {
  const command = new Command('gc')
    .summary('remove what dead owners left behind')
    .description(
      'Remove what environments of dead owners left behind (processes, mounts, directories, containers), on every installed driver.\n' +
        'Environments whose owner still runs are never touched.',
    )
    .option('-n, --dry-run', 'only list what would be removed')
    .option('-d, --driver <name>', 'only this driver (repeatable)', (v: string, p: string[] = []) => [...p, v]);
  withVerbosity(withJson(command)).addHelpText(
    'after',
    examples('execenv gc --dry-run', 'execenv gc', 'execenv gc --driver chroot --json'),
  );
  return command.action(async (flags: ListFlags) => {
    try {
      const out = new Output(ctx.io, flags);
      if (flags.dryRun) {
        const dead = (await listEnvironments(ctx, flags, out)).filter((r) => !r.ownerAlive);
        if (flags.json) return out.json({ wouldRemove: dead });
        for (const r of dead) out.line(`would remove ${r.id} (${r.driver}): ${r.resources.join(', ') || 'its lease'}`);
        if (dead.length === 0) out.info('nothing to remove');
        return;
      }
      const stateDir = (await ctx.settings()).stateDir.value!;
      const removed: { id: string; driver: string }[] = [];
      const errors: string[] = [];
      for (const driver of await installedDrivers(ctx, flags.driver, out)) {
        if (!driver.gc) continue;
        try {
          const r = await driver.gc({ stateDir });
          removed.push(...r.removed.map((id) => ({ id, driver: driver.name })));
          errors.push(...r.errors.map((e) => `${driver.name}: ${e}`));
        } catch (err) {
          if (await unavailable(driver)) out.debug(`${driver.name}: unavailable here, nothing to collect`);
          else errors.push(`${driver.name}: ${(err as Error).message}`);
        }
      }
      if (flags.json) out.json({ removed, errors });
      else {
        for (const r of removed) out.line(`removed ${r.id} (${r.driver})`);
        for (const e of errors) ctx.io.stderr.write(`execenv: ${e}\n`);
        if (removed.length === 0 && errors.length === 0) out.info('nothing to remove');
      }
      if (errors.length > 0) ctx.exitCode = EXIT.FAILED;
    } catch (err) {
      ctx.fail(err);
    }
  });
}
