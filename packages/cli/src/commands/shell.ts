import type { Environment, ExecProcess } from '@execenv/core';
import { Command, InvalidArgumentError } from 'commander';
import type { InputStream } from '../cli-io.js';
import type { CommandContext } from '../command-context.js';
import { commandExitCode, EXIT } from '../exit-codes.js';
import { type EnvironmentFlags, openEnvironment, withEnvironmentOptions } from '../opened-environment.js';
import { Output } from '../output.js';
import { collect, parseEnvPair } from '../run-flags.js';
import { examples, withVerbosity } from './common-options.js';

/** Flags of `execenv shell`. */
export interface ShellFlags extends EnvironmentFlags {
  shell?: string;
  env?: [string, string][];
  cwd?: string;
  user?: string;
}

/** Where util-linux's `script` may be inside an environment: it gives the shell a terminal of its own there. */
const SCRIPT_PATHS = ['/usr/bin/script', '/bin/script'];
const SHELLS = ['/bin/bash', '/bin/sh'];
const SHELL_PATH = /^\/[A-Za-z0-9_./+-]+$/;

function parseShellPath(value: string): string {
  if (!SHELL_PATH.test(value)) throw new InvalidArgumentError('expected an absolute path such as /bin/bash');
  return value;
}

async function firstExisting(env: Environment, paths: readonly string[]): Promise<string | undefined> {
  for (const p of paths) {
    const st = await env.stat(p).catch(() => null);
    if (st && (st.type === 'file' || st.type === 'symlink')) return p;
  }
  return undefined;
}

/**
 * How the shell runs. The contract has no terminal of its own, so where the
 * environment has util-linux's `script`, the shell runs under it: `script`
 * opens a pseudo-terminal inside the environment (its own devpts) and
 * relays it over the command's pipes, while the host terminal is put in raw
 * mode. Without `script`, or without a host terminal, the shell runs
 * interactive over plain pipes.
 *
 * @example
 * ```ts
 * import { shellArgv } from '@execenv/cli';
 *
 * const { argv, tty } = shellArgv('/bin/bash', '/usr/bin/script', process.stdout); // tty: true
 * // argv: script -q -e -c 'stty rows R cols C 2>/dev/null; exec /bin/bash -l' /dev/null
 * const proc = env.spawn(argv, { env: { TERM: process.env.TERM ?? 'xterm' } });
 * shellArgv('/bin/sh', undefined, undefined); // { argv: ['/bin/sh', '-i'], tty: false }: over pipes
 * ```
 */
export function shellArgv(
  shell: string,
  script: string | undefined,
  size: { rows?: number; columns?: number } | undefined,
): { argv: string[]; tty: boolean } {
  if (!script || !size) return { argv: [shell, '-i'], tty: false };
  // Numbers and a checked path only: nothing here comes from the environment.
  const stty = size.rows && size.columns ? `stty rows ${size.rows} cols ${size.columns} 2>/dev/null; ` : '';
  return { argv: [script, '-q', '-e', '-c', `${stty}exec ${shell} -l`, '/dev/null'], tty: true };
}

/** Relays the host's stdin to the shell, in raw mode on a terminal; returns how to undo that. */
function relayStdin(stdin: InputStream, proc: ExecProcess, raw: boolean): () => void {
  if (raw) stdin.setRawMode?.(true);
  const onData = (chunk: Buffer) => proc.stdin?.write(chunk);
  // A terminal that goes away ends the input (EIO): the shell sees end of file and exits.
  const onEnd = () => proc.stdin?.end();
  stdin.on('data', onData);
  stdin.on('end', onEnd);
  stdin.on('error', onEnd);
  proc.stdin?.on('error', () => {});
  stdin.resume();
  return () => {
    stdin.off('data', onData);
    stdin.off('end', onEnd);
    stdin.pause();
    try {
      if (raw) stdin.setRawMode?.(false);
    } catch {
      // the terminal is gone: there is no mode left to restore
    }
  };
}

/** Opens an environment and runs an interactive shell in it until the shell exits; returns its exit code. */
export async function shellInEnvironment(ctx: CommandContext, flags: ShellFlags): Promise<number> {
  const out = new Output(ctx.io, flags);
  const { env, done, close } = await openEnvironment(ctx, flags);
  let failure: unknown;
  let code: number = EXIT.RUN_FAILED;
  try {
    done();
    const shell = flags.shell ?? (await firstExisting(env, SHELLS)) ?? '/bin/sh';
    const terminal = ctx.io.stdin.isTTY && ctx.io.stdout.isTTY;
    const script = terminal ? await firstExisting(env, SCRIPT_PATHS) : undefined;
    const { argv, tty } = shellArgv(shell, script, terminal ? ctx.io.stdout : undefined);
    if (!tty)
      out.info(
        terminal
          ? `${env.id} has no util-linux script: ${shell} runs without a terminal (no job control, no line editing inside)`
          : `stdin is not a terminal: ${shell} runs over pipes`,
      );
    else
      out.debug(`${env.id}: ${shell} on a terminal of its own (util-linux script); window resizes are not passed on`);
    const proc = env.spawn(argv, {
      env: { TERM: ctx.io.env.TERM || 'xterm', ...Object.fromEntries(flags.env ?? []) },
      ...(flags.cwd ? { cwd: flags.cwd } : {}),
      ...(flags.user ? { user: flags.user } : {}),
    });
    proc.stdout.on('data', (c: Buffer) => ctx.io.stdout.write(c));
    proc.stderr.on('data', (c: Buffer) => ctx.io.stderr.write(c));
    const restore = relayStdin(ctx.io.stdin, proc, tty);
    try {
      code = commandExitCode(await proc.result);
    } finally {
      restore();
    }
  } catch (err) {
    failure = err;
  } finally {
    try {
      await close();
    } catch (err) {
      failure ??= err;
    }
  }
  if (failure !== undefined) throw failure;
  return code;
}

/** `execenv shell`. */
export function shellCommand(ctx: CommandContext): Command {
  const command = new Command('shell')
    .summary('an interactive shell in a throwaway environment')
    .description(
      'Open a throwaway environment and an interactive shell in it; closing the shell destroys the environment.\n' +
        "The shell gets a terminal where the environment has util-linux's script (Debian images do); otherwise it runs over pipes.",
    );
  withEnvironmentOptions(command)
    .option('--shell <path>', 'the shell to run (default: /bin/bash, else /bin/sh)', parseShellPath)
    .option('-e, --env <name=value>', 'set a variable in the shell (repeatable)', collect(parseEnvPair))
    .option('-w, --cwd <dir>', 'working directory inside the environment (default: /)')
    .option('-u, --user <user>', 'user name or uid[:gid] (default: root)');
  withVerbosity(command).addHelpText(
    'after',
    examples(
      'execenv shell',
      'execenv shell --image ./bookworm-minbase.tar.zst --user nobody',
      'execenv shell --driver nspawn --shell /bin/sh',
    ),
  );
  return command.action(async (flags: ShellFlags) => {
    try {
      ctx.exitCode = await shellInEnvironment(ctx, flags);
    } catch (err) {
      ctx.fail(err, EXIT.RUN_FAILED);
    }
  });
}
