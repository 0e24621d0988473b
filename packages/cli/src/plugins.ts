import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { drivers } from '@execenv/core';

/**
 * What importing one plugin module did.
 *
 * @example
 * ```ts
 * import { loadPlugins, type PluginLoad } from '@execenv/cli';
 *
 * const loads: PluginLoad[] = await loadPlugins(['execenv-driver-firecracker'], process.cwd());
 * for (const l of loads)
 *   console.log(`${l.specifier}: ${l.error ? l.error.message : `registered ${l.registered.join(', ')}`}`);
 * ```
 */
export interface PluginLoad {
  /** The specifier as configured. */
  specifier: string;
  /** Driver names it registered. */
  registered: string[];
  /** Why it could not be imported, when it could not. */
  error?: Error;
}

/**
 * The URL or package name to import for a configured plugin: paths resolve against `cwd`.
 *
 * @example
 * ```ts
 * import { pluginImportTarget } from '@execenv/cli';
 *
 * pluginImportTarget('./drivers/in-house.mjs', '/srv/ci'); // 'file:///srv/ci/drivers/in-house.mjs'
 * pluginImportTarget('execenv-driver-firecracker', '/srv/ci'); // 'execenv-driver-firecracker'
 * ```
 */
export function pluginImportTarget(specifier: string, cwd: string): string {
  if (isAbsolute(specifier) || specifier.startsWith('./') || specifier.startsWith('../'))
    return pathToFileURL(resolve(cwd, specifier)).href;
  return specifier;
}

/**
 * Imports each plugin module (a path or a package name) in order, so the
 * drivers it registers are known to the registry. A module that fails to
 * import is reported, not thrown: other commands still work.
 *
 * @example
 * ```ts
 * import { open } from '@execenv/core';
 * import { loadPlugins } from '@execenv/cli';
 *
 * const loads = await loadPlugins(['/opt/drivers/in-house.mjs', 'execenv-driver-firecracker'], process.cwd());
 * for (const l of loads) if (l.error) console.warn(`plugin ${l.specifier}: ${l.error.message}`); // never thrown
 * const env = await open('in-house', {}); // a driver the first plugin registered
 * ```
 */
export async function loadPlugins(specifiers: readonly string[], cwd: string): Promise<PluginLoad[]> {
  const loads: PluginLoad[] = [];
  for (const specifier of specifiers) {
    const before = new Set(drivers());
    try {
      await import(pluginImportTarget(specifier, cwd));
      loads.push({ specifier, registered: drivers().filter((d) => !before.has(d)) });
    } catch (err) {
      loads.push({ specifier, registered: [], error: err instanceof Error ? err : new Error(String(err)) });
    }
  }
  return loads;
}
