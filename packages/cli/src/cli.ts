import { CommanderError } from 'commander';
import { type CliIO, processIO } from './cli-io.js';
import { CommandContext } from './command-context.js';
import { EXIT } from './exit-codes.js';
import { createProgram } from './program.js';

/**
 * Runs the `execenv` command line with `args` (without node and the script)
 * and returns its exit code. Nothing calls process.exit: embedders and tests
 * get the code back.
 *
 * @example
 * ```ts
 * import { runCli } from '@execenv/cli';
 * const code = await runCli(['run', '--', 'true']);
 * ```
 */
export async function runCli(args: readonly string[], io: CliIO = processIO()): Promise<number> {
  const ctx = new CommandContext(io);
  try {
    await createProgram(ctx).parseAsync([...args], { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    ctx.fail(err);
  }
  return ctx.exitCode;
}
