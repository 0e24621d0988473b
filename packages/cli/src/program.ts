import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import type { CommandContext } from './command-context.js';
import { configCommand } from './commands/config.js';
import { driversCommand } from './commands/drivers.js';
import { gcCommand } from './commands/gc.js';
import { imageCommand } from './commands/image.js';
import { psCommand } from './commands/ps.js';
import { runCommand } from './commands/run.js';
import { shellCommand } from './commands/shell.js';
import { EXIT_CODES_HELP } from './exit-codes.js';

const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string })
  .version;

const ENVIRONMENT_HELP = `Environment:
  EXECENV_CONFIG        configuration file (default: $XDG_CONFIG_HOME/execenv/config.json)
  EXECENV_DRIVER        default driver (default: chroot)
  EXECENV_IMAGE         default image (default: the driver's own)
  EXECENV_PLUGINS       modules that register drivers, separated by ":"
  EXECENV_STATE_DIR     leases and environment state (default: $XDG_STATE_HOME/execenv)
  EXECENV_CACHE_DIR     caches (default: $XDG_CACHE_HOME/execenv)
  EXECENV_IMAGE_*       image servers, keys, verification, cache and budget (see execenv config)`;

/** Makes every command in the tree report errors through `ctx`'s streams and throw instead of exiting. */
function wire(command: Command, ctx: CommandContext, path: string): void {
  command
    .exitOverride()
    .showSuggestionAfterError()
    .configureOutput({
      writeOut: (s) => ctx.io.stdout.write(s),
      writeErr: (s) => ctx.io.stderr.write(s),
      outputError: (s, write) => write(`execenv: ${s.trim().replace(/^error: /, '')} (see '${path} --help')\n`),
    });
  for (const sub of command.commands) wire(sub, ctx, `${path} ${sub.name()}`);
}

/**
 * Builds the `execenv` command tree, wired to `ctx`.
 *
 * @example
 * ```ts
 * import { CommandContext, createProgram, processIO } from '@execenv/cli';
 *
 * const program = createProgram(new CommandContext(processIO()));
 * program.commands.map((c) => c.name()); // ['run', 'shell', 'drivers', 'image', 'ps', 'gc', 'config']
 * const help = program.helpInformation(); // e.g. for a man page
 * ```
 */
export function createProgram(ctx: CommandContext): Command {
  const program = new Command('execenv')
    .description(
      'Throwaway containers, VMs and chroots from system images: run a command in one, manage images, list and clean up environments, and check which drivers this host can run.',
    )
    .version(VERSION, '-V, --version')
    .enablePositionalOptions()
    .addCommand(runCommand(ctx))
    .addCommand(shellCommand(ctx))
    .addCommand(driversCommand(ctx))
    .addCommand(imageCommand(ctx))
    .addCommand(psCommand(ctx))
    .addCommand(gcCommand(ctx))
    .addCommand(configCommand(ctx))
    .addHelpText(
      'after',
      `
Examples:
  execenv run -- sh -c 'cat /etc/debian_version'
  execenv run --image ./bookworm.tar.zst --push ./src:/src --cwd /src --pull /src/out:./out -- make
  execenv drivers
  execenv ps && execenv gc --dry-run

${ENVIRONMENT_HELP}

${EXIT_CODES_HELP}
`,
    );
  wire(program, ctx, 'execenv');
  return program;
}
