import { errorLine, exitCodeOf } from './cli-errors.js';
import type { CliIO } from './cli-io.js';
import { type CliSettings, cliSettings } from './config.js';
import { loadPlugins, type PluginLoad } from './plugins.js';

/**
 * CommandContext is what every command runs with: the streams, the
 * settings (read once, on first use) and the plugins they name (imported
 * once, on first use), and the exit code the command leaves.
 *
 * @example
 * ```ts
 * import { CommandContext, processIO } from '@execenv/cli';
 *
 * const ctx = new CommandContext(processIO());
 * const { driver, image } = await ctx.settings(); // read once, on first use
 * console.log(`driver ${driver.value} (${driver.source}), image ${image.value ?? "the driver's default"}`);
 * await ctx.loadPlugins(); // the configured plugins register their drivers; failures are warned about
 * ```
 */
export class CommandContext {
  /** Streams, variables and working directory. */
  readonly io: CliIO;
  /** The exit code the command sets; 0 unless it says otherwise. */
  exitCode = 0;
  /** Set when the terminal went away (SIGHUP): errors that follow from it have nowhere to go. */
  hungUp = false;
  #settings: Promise<CliSettings> | undefined;
  #plugins: Promise<PluginLoad[]> | undefined;

  constructor(io: CliIO) {
    this.io = io;
  }

  /** The command line's effective settings. */
  settings(): Promise<CliSettings> {
    this.#settings ??= cliSettings(this.io.env);
    return this.#settings;
  }

  /** Imports the configured plugins once; returns what each did. */
  async plugins(): Promise<PluginLoad[]> {
    this.#plugins ??= this.settings().then((s) => loadPlugins(s.plugins.value ?? [], this.io.cwd));
    return this.#plugins;
  }

  /** Imports the configured plugins, warning on stderr about those that fail. */
  async loadPlugins(): Promise<void> {
    for (const load of await this.plugins())
      if (load.error) this.io.stderr.write(`execenv: warning: plugin ${load.specifier}: ${load.error.message}\n`);
  }

  /** Reports the error that ended the command in one line and sets the exit code it maps to. */
  fail(err: unknown, failedCode?: number): void {
    if (!this.hungUp) this.io.stderr.write(`${errorLine(err)}\n`);
    this.exitCode = exitCodeOf(err, failedCode);
  }
}
