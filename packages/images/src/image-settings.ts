import { readdir, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { defaultCacheDir, type ErrorContext, type GcReport, InvalidSpecError } from '@execenv/core';
import { ImageCache } from './image-cache.js';
import type { IndexFreshness, IndexRefresh } from './index-documents.js';
import type { ImageServers } from './resolve-image.js';
import type { RetryPolicy } from './retry.js';
import type { TrustedKeys } from './signature.js';

/**
 * ImageSettings is where images come from and how they are kept: what
 * every driver and the command line read from one configuration (see
 * imageSettings), and what a caller may override per driver or per open.
 *
 * @example
 * ```ts
 * import { open } from '@execenv/core';
 * import type { ImageSettings } from '@execenv/images';
 * const images: ImageSettings = { servers: { lxc: 'https://images.example.org' }, keys: ['/etc/execenv/keys/a.gpg'] };
 * const env = await open('chroot', { image: 'index:debian/bookworm/amd64', driverOptions: { images } });
 * try {
 *   console.log((await env.exec(['cat', '/etc/os-release'])).stdout);
 * } finally {
 *   await env.close();
 * }
 * ```
 */
export interface ImageSettings extends IndexFreshness, RetryPolicy {
  /** Servers for `index:` references. @default DEFAULT_IMAGE_SERVERS */
  servers?: ImageServers;
  /** Keys that sign the servers' indexes and images: armored keys or key file paths. @default the files in `<config dir>/keys/` */
  keys?: TrustedKeys;
  /** Only an explicit false accepts unsigned indexes and images. @default true */
  verify?: boolean;
  /** Where images are cached. @default `<defaultCacheDir()>/images` */
  cacheDir?: string;
  /** Bytes the image cache may hold; least recently used images are evicted past it. @default no limit */
  budgetBytes?: number;
}

/**
 * The public lxc-download image server, used for `index:` references when nothing else is configured.
 *
 * @example
 * ```ts
 * import { DEFAULT_IMAGE_SERVERS, imageSettings } from '@execenv/images';
 * const { servers } = await imageSettings();
 * if (servers?.lxc !== DEFAULT_IMAGE_SERVERS.lxc)
 *   console.error(`index: images come from ${servers?.lxc ?? servers?.simplestreams}`);
 * ```
 */
export const DEFAULT_IMAGE_SERVERS: Readonly<ImageServers> = Object.freeze({
  lxc: 'https://images.linuxcontainers.org',
});

/**
 * Fingerprint of the key that signs images.linuxcontainers.org's indexes and
 * images, as the lxc-download template (compatibility level 5) pins it. Get
 * it with `gpg --keyserver hkps://keyserver.ubuntu.com --recv-keys <this>`
 * and `gpg --export <this> > ~/.config/execenv/keys/linuxcontainers.gpg`.
 *
 * @example
 * ```ts
 * import { imageSettings, LINUXCONTAINERS_KEY_FINGERPRINT, loadKeys } from '@execenv/images';
 * const ring = await loadKeys((await imageSettings()).keys ?? []);
 * if (!ring.fingerprints.includes(LINUXCONTAINERS_KEY_FINGERPRINT.toLowerCase()))
 *   console.error(`put key ${LINUXCONTAINERS_KEY_FINGERPRINT} in ~/.config/execenv/keys/ for index: images`);
 * ```
 */
export const LINUXCONTAINERS_KEY_FINGERPRINT = 'E7FB0CAEC8173D669066514CBAEFF88C22F6E216';

/**
 * Where to read the settings from.
 *
 * @example
 * ```ts
 * import { imageSettings, type ImageSettingsSource } from '@execenv/images';
 * const source: ImageSettingsSource = { env: { EXECENV_IMAGE_REFRESH: 'never' }, configFile: './test/config.json' };
 * const settings = await imageSettings(source); // this file and these variables, not $EXECENV_CONFIG and process.env
 * ```
 */
export interface ImageSettingsSource {
  /** @default process.env */
  env?: NodeJS.ProcessEnv;
  /** @default `$EXECENV_CONFIG`, else `$XDG_CONFIG_HOME/execenv/config.json`, else `~/.config/execenv/config.json` */
  configFile?: string;
}

/**
 * The execenv configuration directory: `$XDG_CONFIG_HOME/execenv`, else `~/.config/execenv`.
 *
 * @example
 * ```ts
 * import { defaultConfigDir } from '@execenv/images';
 * import { join } from 'node:path';
 * const keysDir = join(defaultConfigDir(), 'keys'); // its *.gpg, *.asc and *.pgp files are trusted by default
 * const configFile = join(defaultConfigDir(), 'config.json');
 * ```
 */
export function defaultConfigDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'execenv');
}

const REFRESH: readonly IndexRefresh[] = ['always', 'if-stale', 'never'];

function invalid(where: string, problem: string): InvalidSpecError {
  return new InvalidSpecError('images', `${where}: ${problem}`);
}

/** Every field of ImageSettings. */
const SETTINGS: readonly (keyof ImageSettings)[] = [
  'servers',
  'keys',
  'verify',
  'cacheDir',
  'budgetBytes',
  'refresh',
  'maxIndexAgeMs',
  'attempts',
  'backoffMs',
  'timeoutMs',
];

/**
 * Checks settings read from a file or given as an option, keeping the known
 * fields; `fail` makes the error for a problem. `strict` refuses unknown fields.
 */
function checkSettings(raw: unknown, fail: (problem: string) => InvalidSpecError, strict = false): ImageSettings {
  if (raw === undefined) return {};
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw fail('"images" must be an object');
  const r = raw as Record<string, unknown>;
  if (strict)
    for (const name of Object.keys(r))
      if (!(SETTINGS as readonly string[]).includes(name))
        throw fail(`unknown setting "${name}"; image settings are ${SETTINGS.join(', ')}`);
  const out: ImageSettings = {};
  const str = (v: unknown, name: string) => {
    if (typeof v !== 'string' || v === '') throw fail(`"${name}" must be a non-empty string`);
    return v;
  };
  if (r.servers !== undefined) {
    if (typeof r.servers !== 'object' || r.servers === null) throw fail('"servers" must be an object');
    const s = r.servers as Record<string, unknown>;
    if (strict)
      for (const name of Object.keys(s))
        if (name !== 'lxc' && name !== 'simplestreams')
          throw fail(`unknown server kind "${name}"; servers are lxc and simplestreams`);
    out.servers = {
      ...(s.lxc !== undefined ? { lxc: str(s.lxc, 'servers.lxc') } : {}),
      ...(s.simplestreams !== undefined ? { simplestreams: str(s.simplestreams, 'servers.simplestreams') } : {}),
    };
  }
  if (r.keys !== undefined) {
    if (!Array.isArray(r.keys)) throw fail('"keys" must be an array of key files or armored keys');
    out.keys = r.keys.map((k, i) => str(k, `keys[${i}]`));
  }
  if (r.verify !== undefined) {
    if (typeof r.verify !== 'boolean') throw fail('"verify" must be true or false');
    out.verify = r.verify;
  }
  if (r.cacheDir !== undefined) out.cacheDir = str(r.cacheDir, 'cacheDir');
  for (const name of ['budgetBytes', 'maxIndexAgeMs', 'attempts', 'backoffMs', 'timeoutMs'] as const) {
    const v = r[name];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw fail(`"${name}" must be a number >= 0`);
    out[name] = v;
  }
  if (r.refresh !== undefined) {
    if (!REFRESH.includes(r.refresh as IndexRefresh)) throw fail(`"refresh" must be ${REFRESH.join(', ')}`);
    out.refresh = r.refresh as IndexRefresh;
  }
  return out;
}

/**
 * Checks image settings given as an option (a driver's `images`, or
 * `spec.driverOptions.images`) before anything is fetched or created:
 * undefined stays undefined; anything but an object of known, well-typed
 * settings throws InvalidSpecError naming `field` (with `context`: the driver and operation).
 *
 * @example
 * ```ts
 * import { checkImageSettings } from '@execenv/images';
 * const options = spec.driverOptions as { images?: unknown } | undefined;
 * // INVALID_SPEC naming driverOptions.images on { verify: 'no' }
 * const images = checkImageSettings(options?.images, 'driverOptions.images', { driver: 'foo', op: 'open' });
 * ```
 */
export function checkImageSettings(raw: unknown, field: string, context?: ErrorContext): ImageSettings | undefined {
  if (raw === undefined) return undefined;
  return checkSettings(raw, (problem) => new InvalidSpecError(field, problem, context), true);
}

async function fromFile(path: string): Promise<ImageSettings> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw invalid(`config file ${path}`, `cannot be read (${(err as NodeJS.ErrnoException).code})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw invalid(`config file ${path}`, `is not JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null) throw invalid(`config file ${path}`, 'must hold an object');
  return checkSettings((parsed as { images?: unknown }).images, (problem) => invalid(`config file ${path}`, problem));
}

const SIZE = /^(\d+)\s*([KMGT]i?B?)?$/i;

function bytes(text: string, name: string): number {
  const m = SIZE.exec(text.trim());
  if (!m) throw invalid(`$${name}`, `"${text}" is not a size (bytes, or a number with K, M, G or T)`);
  const unit = (m[2] ?? '').charAt(0).toUpperCase();
  return Number(m[1]) * 1024 ** ['', 'K', 'M', 'G', 'T'].indexOf(unit);
}

/**
 * The settings `EXECENV_*` variables give:
 * `EXECENV_IMAGE_SERVER` (lxc-download server), `EXECENV_SIMPLESTREAMS_SERVER`,
 * `EXECENV_IMAGE_KEYS` (key files separated by `:`), `EXECENV_IMAGE_VERIFY`
 * (`0`/`false` to accept unsigned images), `EXECENV_IMAGE_CACHE_DIR`,
 * `EXECENV_IMAGE_BUDGET` (bytes, or with K, M, G, T), `EXECENV_IMAGE_REFRESH`
 * (`always`, `if-stale`, `never`), `EXECENV_INDEX_MAX_AGE` (seconds),
 * `EXECENV_IMAGE_TIMEOUT` (seconds a request may wait for the server, 0 for ever).
 */
function fromEnv(env: NodeJS.ProcessEnv): ImageSettings {
  const out: ImageSettings = {};
  const lxc = env.EXECENV_IMAGE_SERVER;
  const simplestreams = env.EXECENV_SIMPLESTREAMS_SERVER;
  if (lxc || simplestreams) out.servers = { ...(lxc ? { lxc } : {}), ...(simplestreams ? { simplestreams } : {}) };
  if (env.EXECENV_IMAGE_KEYS) out.keys = env.EXECENV_IMAGE_KEYS.split(':').filter((k) => k !== '');
  const verify = env.EXECENV_IMAGE_VERIFY?.toLowerCase();
  if (verify) {
    if (!['0', '1', 'true', 'false', 'yes', 'no'].includes(verify))
      throw invalid('$EXECENV_IMAGE_VERIFY', `"${verify}" is not 1, 0, true or false`);
    out.verify = !['0', 'false', 'no'].includes(verify);
  }
  if (env.EXECENV_IMAGE_CACHE_DIR) out.cacheDir = env.EXECENV_IMAGE_CACHE_DIR;
  if (env.EXECENV_IMAGE_BUDGET) out.budgetBytes = bytes(env.EXECENV_IMAGE_BUDGET, 'EXECENV_IMAGE_BUDGET');
  const refresh = env.EXECENV_IMAGE_REFRESH;
  if (refresh) {
    if (!REFRESH.includes(refresh as IndexRefresh))
      throw invalid('$EXECENV_IMAGE_REFRESH', `"${refresh}" is not ${REFRESH.join(', ')}`);
    out.refresh = refresh as IndexRefresh;
  }
  const maxAge = env.EXECENV_INDEX_MAX_AGE;
  if (maxAge) {
    if (!/^\d+$/.test(maxAge)) throw invalid('$EXECENV_INDEX_MAX_AGE', `"${maxAge}" is not a number of seconds`);
    out.maxIndexAgeMs = Number(maxAge) * 1000;
  }
  const timeout = env.EXECENV_IMAGE_TIMEOUT;
  if (timeout) {
    if (!/^\d+(\.\d+)?$/.test(timeout))
      throw invalid('$EXECENV_IMAGE_TIMEOUT', `"${timeout}" is not a number of seconds`);
    out.timeoutMs = Number(timeout) * 1000;
  }
  return out;
}

/** Key files in `<config dir>/keys/` (`*.gpg`, `*.asc`, `*.pgp`), sorted. */
async function keysInConfigDir(dir: string): Promise<string[]> {
  const names = await readdir(join(dir, 'keys')).catch(() => [] as string[]);
  return names
    .filter((n) => /\.(gpg|asc|pgp)$/.test(n))
    .sort()
    .map((n) => join(dir, 'keys', n));
}

/**
 * Layers settings: each defined field of a later layer replaces the
 * earlier one's (`servers` and `keys` as a whole).
 *
 * @example
 * ```ts
 * import { imageSettings, mergeImageSettings } from '@execenv/images';
 * const driverOptions = { refresh: 'always' as const };
 * const specOptions = { servers: { simplestreams: 'https://images.example.org' } }; // replaces `servers` whole
 * const settings = mergeImageSettings(await imageSettings(), driverOptions, specOptions);
 * ```
 */
export function mergeImageSettings(...layers: readonly (ImageSettings | undefined)[]): ImageSettings {
  const out: Record<string, unknown> = {};
  for (const layer of layers) for (const [k, v] of Object.entries(layer ?? {})) if (v !== undefined) out[k] = v;
  return out as ImageSettings;
}

/**
 * The effective image settings of this user, as every driver and the
 * command line see them: built-in defaults (DEFAULT_IMAGE_SERVERS, the key
 * files in `<config dir>/keys/`), then the `images` section of the
 * configuration file (`$EXECENV_CONFIG`, else
 * `$XDG_CONFIG_HOME/execenv/config.json`), then `EXECENV_*` variables. A
 * malformed file or variable throws InvalidSpecError (field `images`)
 * naming it. Layer explicit options on top with mergeImageSettings.
 *
 * @example
 * ```ts
 * import { imageCacheOf, imageSettings, resolveImage } from '@execenv/images';
 * const settings = await imageSettings(); // built-in defaults, then config.json, then EXECENV_* variables
 * const image = await resolveImage('index:debian/bookworm/amd64', { ...settings, cache: imageCacheOf(settings) });
 * ```
 */
export async function imageSettings(source: ImageSettingsSource = {}): Promise<ImageSettings> {
  const env = source.env ?? process.env;
  const configDir = defaultConfigDir(env);
  const file = source.configFile ?? (env.EXECENV_CONFIG || join(configDir, 'config.json'));
  const defaults: ImageSettings = { servers: { ...DEFAULT_IMAGE_SERVERS } };
  const keys = await keysInConfigDir(configDir);
  if (keys.length > 0) defaults.keys = keys;
  return mergeImageSettings(defaults, await fromFile(file), fromEnv(env));
}

/**
 * The ImageCache the settings describe: `cacheDir` (else `<defaultCacheDir()>/images`) with its budget.
 *
 * @example
 * ```ts
 * import { imageCacheOf, imageSettings } from '@execenv/images';
 * const cache = imageCacheOf(await imageSettings()); // settings.cacheDir, with settings.budgetBytes
 * if (cache.budgetBytes !== undefined) await cache.prune(cache.budgetBytes);
 * ```
 */
export function imageCacheOf(settings: ImageSettings, env: NodeJS.ProcessEnv = process.env): ImageCache {
  return new ImageCache({
    dir: settings.cacheDir ?? join(defaultCacheDir(env), 'images'),
    budgetBytes: settings.budgetBytes,
  });
}

/**
 * A driver's effective image settings and their cache: the user's
 * configuration and EXECENV_* variables (imageSettings), then `layers` in
 * order (the driver's options, the spec's). A driver given a cache root of
 * its own keeps its images under `<cacheDir>/images`, whatever the settings say.
 *
 * @example
 * ```ts
 * import { driverImages, imageRootDirectory, resolveImage } from '@execenv/images';
 * // In a driver's open(): the user's settings, then the driver's options, then the spec's.
 * const { images, cache } = await driverImages(options.cacheDir, options.images, envOptions?.images);
 * const resolved = await resolveImage(spec.image, { ...images, cache, runner, onEvent: opts.onEvent });
 * const root = await imageRootDirectory(resolved, { cache, runner, onEvent: opts.onEvent });
 * ```
 */
export async function driverImages(
  cacheDir: string | undefined,
  ...layers: readonly (ImageSettings | undefined)[]
): Promise<{ images: ImageSettings; cache: ImageCache }> {
  const images = mergeImageSettings(await imageSettings(), ...layers);
  const cache = imageCacheOf(cacheDir ? { ...images, cacheDir: join(cacheDir, 'images') } : images);
  return { images, cache };
}

/**
 * What a driver's gc() does with its image cache: sweeps what killed
 * processes left there (partial downloads, half-made conversions) and
 * records a failure in the report instead of throwing it.
 *
 * @example
 * ```ts
 * import { driverImages, sweepImageCache } from '@execenv/images';
 * // In a driver's gc(), after its own leftovers:
 * const report = await leaseGc(stateDir, 'foo', undo);
 * return sweepImageCache(report, driverImages(options.cacheDir, options.images));
 * ```
 */
export async function sweepImageCache(report: GcReport, images: Promise<{ cache: ImageCache }>): Promise<GcReport> {
  await images
    .then(({ cache }) => cache.sweep())
    .catch((err: Error) => report.errors.push(`image cache: ${err.message}`));
  return report;
}
