import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { defaultCacheDir, defaultStateDir, InvalidSpecError } from '@execenv/core';
import { defaultConfigDir } from '@execenv/images';

/**
 * Where a setting's effective value came from.
 *
 * @example
 * ```ts
 * import { cliSettings, type SettingSource } from '@execenv/cli';
 *
 * const from: Record<SettingSource, string> = { default: 'default', file: 'file', env: 'variable', flag: 'flag' };
 * const { driver } = await cliSettings(process.env);
 * console.log(`driver ${driver.value}, from the ${from[driver.source]} ${driver.origin}`);
 * ```
 */
export type SettingSource = 'default' | 'file' | 'env' | 'flag';

/**
 * One effective setting: its value and where it came from.
 *
 * @example
 * ```ts
 * import { cliSettings, type Setting } from '@execenv/cli';
 *
 * function describe(name: string, s: Setting<unknown>): string {
 *   return `${name} = ${JSON.stringify(s.value)} (${s.source}: ${s.origin})`;
 * }
 * const settings = await cliSettings(process.env);
 * console.log(describe('driver', settings.driver)); // driver = "podman" (env: $EXECENV_DRIVER)
 * ```
 */
export interface Setting<T> {
  /** The value; undefined when nothing sets it and it has no default. */
  value: T | undefined;
  /** Which layer set it. */
  source: SettingSource;
  /** The file path or variable name that set it, or what the default means. */
  origin: string;
}

/**
 * The command line's own settings (the image settings are @execenv/images').
 *
 * @example
 * ```ts
 * import { type CliSettings, cliSettings } from '@execenv/cli';
 *
 * const settings: CliSettings = await cliSettings({ ...process.env, EXECENV_PLUGINS: './drivers/in-house.mjs' });
 * settings.plugins.value; // ['./drivers/in-house.mjs']
 * settings.stateDir.value; // $EXECENV_STATE_DIR, else $XDG_STATE_HOME/execenv
 * ```
 */
export interface CliSettings {
  /** The driver `run`, `shell` and `image` use without `--driver`. */
  driver: Setting<string>;
  /** The image `run` and `shell` open without `--image`; undefined lets the driver pick its default. */
  image: Setting<string>;
  /** Modules imported before any command, which register drivers. */
  plugins: Setting<string[]>;
  /** Where leases and environment state live (core's defaultStateDir). */
  stateDir: Setting<string>;
  /** Where rebuildable caches live (core's defaultCacheDir). */
  cacheDir: Setting<string>;
}

/**
 * The driver used when nothing else names one: the one that needs no daemon.
 *
 * @example
 * ```ts
 * import { cliSettings, DEFAULT_DRIVER } from '@execenv/cli';
 *
 * const { driver } = await cliSettings(process.env);
 * if (driver.source === 'default') console.log(`no driver configured: using ${DEFAULT_DRIVER}`); // chroot
 * ```
 */
export const DEFAULT_DRIVER = 'chroot';

/**
 * The configuration file: `$EXECENV_CONFIG`, else
 * `$XDG_CONFIG_HOME/execenv/config.json`, else `~/.config/execenv/config.json`.
 * The same file holds the `images` section @execenv/images reads.
 *
 * @example
 * ```ts
 * import { configFilePath, readConfigFile } from '@execenv/cli';
 *
 * configFilePath({ XDG_CONFIG_HOME: '/etc/xdg' }); // '/etc/xdg/execenv/config.json'
 * configFilePath({ EXECENV_CONFIG: './ci.json' }); // './ci.json', as given
 * const file = await readConfigFile(configFilePath(process.env));
 * ```
 */
export function configFilePath(env: NodeJS.ProcessEnv): string {
  if (env.EXECENV_CONFIG) return env.EXECENV_CONFIG;
  return join(defaultConfigDir(env), 'config.json');
}

function invalid(where: string, problem: string): InvalidSpecError {
  return new InvalidSpecError('config', `${where}: ${problem}`);
}

/**
 * Reads the configuration file as an object; a missing file is an empty one.
 *
 * @example
 * ```ts
 * import { configFilePath, readConfigFile } from '@execenv/cli';
 *
 * // {} when there is no file; InvalidSpecError (field 'config') when it is not a JSON object
 * const file = await readConfigFile(configFilePath(process.env));
 * const images = (file.images ?? {}) as Record<string, unknown>; // the section @execenv/images reads
 * ```
 */
export async function readConfigFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw invalid(path, `cannot be read (${(err as NodeJS.ErrnoException).code})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw invalid(path, `is not JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw invalid(path, 'must hold a JSON object');
  return parsed as Record<string, unknown>;
}

function fileString(file: Record<string, unknown>, key: string, path: string): string | undefined {
  const v = file[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '') throw invalid(path, `"${key}" must be a non-empty string`);
  return v;
}

function fileStrings(file: Record<string, unknown>, key: string, path: string): string[] | undefined {
  const v = file[key];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' || x === ''))
    throw invalid(path, `"${key}" must be an array of non-empty strings`);
  return v as string[];
}

function layered<T>(
  fallback: Setting<T>,
  fromFile: T | undefined,
  path: string,
  variable: string,
  fromEnv: T | undefined,
): Setting<T> {
  if (fromEnv !== undefined) return { value: fromEnv, source: 'env', origin: `$${variable}` };
  if (fromFile !== undefined) return { value: fromFile, source: 'file', origin: path };
  return fallback;
}

/**
 * The command line's effective settings: defaults, then the configuration
 * file (`driver`, `image`, `plugins`), then `EXECENV_DRIVER`,
 * `EXECENV_IMAGE` and `EXECENV_PLUGINS` (module specifiers separated by `:`).
 * Throws InvalidSpecError (field `config`) naming a malformed file.
 *
 * @example
 * ```ts
 * import { cliSettings } from '@execenv/cli';
 *
 * const { driver, image } = await cliSettings({ ...process.env, EXECENV_DRIVER: 'podman' });
 * driver; // { value: 'podman', source: 'env', origin: '$EXECENV_DRIVER' }
 * image.value; // the file's "image" or $EXECENV_IMAGE; undefined lets the driver pick
 * ```
 */
export async function cliSettings(env: NodeJS.ProcessEnv): Promise<CliSettings> {
  const path = configFilePath(env);
  const file = await readConfigFile(path);
  const plugins = env.EXECENV_PLUGINS?.split(':').filter((p) => p !== '');
  return {
    driver: layered(
      { value: DEFAULT_DRIVER, source: 'default', origin: 'the driver that needs no daemon' },
      fileString(file, 'driver', path),
      path,
      'EXECENV_DRIVER',
      env.EXECENV_DRIVER || undefined,
    ),
    image: layered(
      { value: undefined, source: 'default', origin: "the driver's default image" },
      fileString(file, 'image', path),
      path,
      'EXECENV_IMAGE',
      env.EXECENV_IMAGE || undefined,
    ),
    plugins: layered(
      { value: [], source: 'default', origin: 'none' },
      fileStrings(file, 'plugins', path),
      path,
      'EXECENV_PLUGINS',
      plugins?.length ? plugins : undefined,
    ),
    stateDir: env.EXECENV_STATE_DIR
      ? { value: env.EXECENV_STATE_DIR, source: 'env', origin: '$EXECENV_STATE_DIR' }
      : { value: defaultStateDir(env), source: 'default', origin: '$XDG_STATE_HOME/execenv' },
    cacheDir: env.EXECENV_CACHE_DIR
      ? { value: env.EXECENV_CACHE_DIR, source: 'env', origin: '$EXECENV_CACHE_DIR' }
      : { value: defaultCacheDir(env), source: 'default', origin: '$XDG_CACHE_HOME/execenv' },
  };
}
