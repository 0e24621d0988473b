import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * The directory holding leases and per-environment state:
 * `$EXECENV_STATE_DIR`, else `$XDG_STATE_HOME/execenv`, else `~/.local/state/execenv`.
 */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.EXECENV_STATE_DIR) return env.EXECENV_STATE_DIR;
  const base = env.XDG_STATE_HOME || join(homedir(), '.local', 'state');
  return join(base, 'execenv');
}

/**
 * The directory for caches that can be rebuilt (extracted images):
 * `$EXECENV_CACHE_DIR`, else `$XDG_CACHE_HOME/execenv`, else `~/.cache/execenv`.
 */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.EXECENV_CACHE_DIR) return env.EXECENV_CACHE_DIR;
  const base = env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'execenv');
}
