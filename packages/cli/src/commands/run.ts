import { Command } from 'commander';
import type { CommandContext } from '../command-context.js';
import { commandExitCode, EXIT } from '../exit-codes.js';
import { type EnvironmentFlags, openEnvironment, withEnvironmentOptions } from '../opened-environment.js';
import { Output } from '../output.js';
import { collect, parseEnvPair, parsePull, parsePush, parseTimeoutSeconds, type Transfer } from '../run-flags.js';
import { examples, withVerbosity } from './common-options.js';

/** Flags of `execenv run`. */
export interface RunFlags extends EnvironmentFlags {
  push?: Transfer[];
  pull?: Transfer[];
  env?: [string, string][];
  cwd?: string;
  user?: string;
  timeout?: number;
}

/**
 * Runs one command in a throwaway environment: open, push, run, pull, close.
 * The command's stdout and stderr stream through; its exit code is returned.
 */
export async function runInEnvironment(ctx: CommandContext, argv: string[], flags: RunFlags): Promise<number> {
  const out = new Output(ctx.io, flags);
  const { env, close } = await openEnvironment(ctx, flags);
  let code: number = EXIT.RUN_FAILED;
  let failure: unknown;
  try {
    for (const t of flags.push ?? []) {
      out.debug(`push ${t.host} -> ${env.id}:${t.guest}`);
      await env.push(t.host, t.guest);
    }
    const stdin = ctx.io.stdin.isTTY ? 'ignore' : ctx.io.stdin;
    const r = await env.exec(argv, {
      env: Object.fromEntries(flags.env ?? []),
      ...(flags.cwd ? { cwd: flags.cwd } : {}),
      ...(flags.user ? { user: flags.user } : {}),
      ...(flags.timeout ? { timeout: flags.timeout } : {}),
      stdin,
      buffer: false,
      onStdout: (c) => ctx.io.stdout.write(c),
      onStderr: (c) => ctx.io.stderr.write(c),
    });
    code = commandExitCode(r);
    if (r.timedOut) out.info(`${argv[0]} timed out after ${flags.timeout! / 1000} s and was killed`);
    for (const t of flags.pull ?? []) {
      out.debug(`pull ${env.id}:${t.guest} -> ${t.host}`);
      try {
        await env.pull(t.guest, t.host);
      } catch (err) {
        // A failed command's missing results are no news: its own exit code says more.
        if (code === 0) throw err;
        out.warn(`could not pull ${t.guest}: ${(err as Error).message}`);
      }
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

/** `execenv run`. */
export function runCommand(ctx: CommandContext): Command {
  const cwd = ctx.io.cwd;
  const command = new Command('run')
    .summary('run a command in a throwaway environment')
    .description(
      "Run a command in a throwaway environment: open it, push files in, run the command, pull results out, close it.\nThe command's stdout and stderr stream through and its exit code becomes execenv's.",
    )
    .argument('<command...>', 'the command and its arguments; put them after -- when they start with -')
    .passThroughOptions();
  withEnvironmentOptions(command)
    .option(
      '--push <host:guest>',
      'copy a host file or directory in before the command (repeatable)',
      collect((v) => parsePush(v, cwd)),
    )
    .option(
      '--pull <guest:host>',
      'copy a file or directory out after the command (repeatable)',
      collect((v) => parsePull(v, cwd)),
    )
    .option(
      '-e, --env <name=value>',
      'set a variable for the command; the host environment never leaks in (repeatable)',
      collect(parseEnvPair),
    )
    .option('-w, --cwd <dir>', 'working directory inside the environment (default: /)')
    .option('-u, --user <user>', 'user name or uid[:gid] to run as (default: root)')
    .option(
      '-t, --timeout <seconds>',
      'kill the command and everything it started after this many seconds (exit 124)',
      parseTimeoutSeconds,
    );
  withVerbosity(command).addHelpText(
    'after',
    examples(
      "execenv run -- sh -c 'cat /etc/debian_version; id'",
      'execenv run --image ./bookworm.tar.zst --push ./src:/build/src --cwd /build/src --pull /build/src/out:./out -- make',
      'echo hello | execenv run --user nobody -e LANG=C.UTF-8 -- cat',
      'execenv run --timeout 30 --driver podman --image oci:docker.io/library/debian:bookworm -- apt-get update',
    ),
  );
  return command.action(async (argv: string[], flags: RunFlags) => {
    try {
      ctx.exitCode = await runInEnvironment(ctx, argv, flags);
    } catch (err) {
      ctx.fail(err, EXIT.RUN_FAILED);
    }
  });
}
