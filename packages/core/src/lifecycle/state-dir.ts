import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * The directory holding leases and per-environment state:
 * `$EXECENV_STATE_DIR`, else `$XDG_STATE_HOME/execenv`, else `~/.local/state/execenv`.
 *
 * @example
 * ```ts
 * import { defaultStateDir, readLeases } from '@execenv/core';
 * const leases = await readLeases(defaultStateDir()); // e.g. /home/me/.local/state/execenv/leases/*.json
 * defaultStateDir({ EXECENV_STATE_DIR: '/var/lib/ci/execenv' }); // '/var/lib/ci/execenv'
 * ```
 */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.EXECENV_STATE_DIR) return env.EXECENV_STATE_DIR;
  const base = env.XDG_STATE_HOME || join(homedir(), '.local', 'state');
  return join(base, 'execenv');
}

/**
 * The directory for caches that can be rebuilt (extracted images):
 * `$EXECENV_CACHE_DIR`, else `$XDG_CACHE_HOME/execenv`, else `~/.cache/execenv`.
 *
 * @example
 * ```ts
 * import { join } from 'node:path';
 * import { defaultCacheDir } from '@execenv/core';
 * const images = join(defaultCacheDir(), 'foo-images'); // ~/.cache/execenv/foo-images unless configured
 * defaultCacheDir({ XDG_CACHE_HOME: '/var/cache' }); // '/var/cache/execenv'
 * ```
 */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.EXECENV_CACHE_DIR) return env.EXECENV_CACHE_DIR;
  const base = env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'execenv');
}
