import { type Environment, type EnvSpec, open } from '@execenv/core';
import type { Command } from 'commander';
import type { CommandContext } from './command-context.js';
import { createProgress, progressMode } from './progress.js';

/**
 * The flags that say which environment `run` and `shell` open, and how much they say.
 *
 * @example
 * ```ts
 * import { CommandContext, type EnvironmentFlags, openEnvironment, processIO } from '@execenv/cli';
 *
 * const flags: EnvironmentFlags = { driver: 'podman', image: 'oci:docker.io/library/debian:bookworm', quiet: true };
 * const { env, close } = await openEnvironment(new CommandContext(processIO()), flags);
 * ```
 */
export interface EnvironmentFlags {
  driver?: string;
  image?: string;
  network?: string;
  quiet?: boolean;
  verbose?: boolean;
}

/** Options shared by `run` and `shell`: which environment to open. */
export function withEnvironmentOptions(command: Command): Command {
  return command
    .option('-d, --driver <name>', 'driver to open the environment with (default: configured, else chroot)')
    .option(
      '--image <ref>',
      "image reference: a rootfs tarball, directory, URL, index:DIST/RELEASE/ARCH, ... (default: configured, else the driver's own)",
    )
    .option('--network <name>', "network: none, or one the driver knows (chroot: host) (default: the driver's, none)");
}

/**
 * An environment `run` or `shell` opened, with the end of its progress and its close.
 *
 * @example
 * ```ts
 * import { CommandContext, type OpenedEnvironment, openEnvironment, processIO } from '@execenv/cli';
 *
 * const opened: OpenedEnvironment = await openEnvironment(new CommandContext(processIO()), { driver: 'nspawn' });
 * try {
 *   opened.done(); // ready: the progress display ends before the command's output
 *   await opened.env.exec(['apt-get', 'update']);
 * } finally {
 *   await opened.close();
 * }
 * ```
 */
export interface OpenedEnvironment {
  /** The environment. */
  env: Environment;
  /** Ends the progress display (the environment is ready). */
  done: () => void;
  /** Ends the progress display and closes the environment. */
  close: () => Promise<void>;
}

/**
 * Opens the environment `run` and `shell` work in, with progress on stderr.
 * Core closes environments on SIGINT and SIGTERM; a closed terminal sends
 * SIGHUP, which closes it here before the signal takes its course.
 *
 * @example
 * ```ts
 * import { CommandContext, openEnvironment, processIO } from '@execenv/cli';
 *
 * const { env, done, close } = await openEnvironment(new CommandContext(processIO()), { image: './bookworm.tar.zst' });
 * try {
 *   done();
 *   console.log((await env.exec(['cat', '/etc/debian_version'])).stdout);
 * } finally {
 *   await close();
 * }
 * ```
 */
export async function openEnvironment(ctx: CommandContext, flags: EnvironmentFlags): Promise<OpenedEnvironment> {
  await ctx.loadPlugins();
  const settings = await ctx.settings();
  const driver = flags.driver ?? settings.driver.value!;
  const image = flags.image ?? settings.image.value;
  const spec: EnvSpec = {
    ...(image !== undefined ? { image } : {}),
    ...(flags.network ? { network: flags.network } : {}),
  };
  const progress = createProgress(ctx.io.stderr, progressMode(ctx.io.stderr, flags.quiet), flags.verbose);
  try {
    const env = await open(driver, spec, { onEvent: progress.onEvent });
    // One close, whoever asks first. The hangup handler stays installed until it has finished:
    // a terminal that goes away also ends the shell's input, so the command's own close can be
    // under way when SIGHUP comes, and Node's default action would end the process mid-close.
    let closing: Promise<void> | undefined;
    const closeOnce = () => {
      closing ??= env.close();
      return closing;
    };
    // A hangup often comes twice (tmux, then the kernel as the terminal goes): every one after
    // the first is absorbed until the environment is closed, then the signal takes its course.
    const onHangup = () => {
      if (ctx.hungUp) return;
      ctx.hungUp = true;
      void closeOnce()
        .catch(() => {})
        .finally(() => {
          process.off('SIGHUP', onHangup);
          process.kill(process.pid, 'SIGHUP');
        });
    };
    process.on('SIGHUP', onHangup);
    return {
      env,
      done: () => progress.done(),
      close: async () => {
        progress.done();
        try {
          await closeOnce();
        } finally {
          if (!ctx.hungUp) process.off('SIGHUP', onHangup);
        }
      },
    };
  } catch (err) {
    progress.done();
    throw err;
  }
}
