import { access, constants } from 'node:fs/promises';

const SEARCH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'] as const;

/**
 * HOST_PATH is the PATH every host-side helper runs with: fixed, never the caller's.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { HOST_PATH } from '@execenv/core/driver';
 * const r = await hostRunner().run(['bwrap', '--version'], { env: { PATH: HOST_PATH } });
 * ```
 */
export const HOST_PATH = SEARCH.join(':');

/**
 * hostEnv returns the whole environment of a host helper: HOST_PATH and the C locale, so output parses the same everywhere.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { hostEnv } from '@execenv/core/driver';
 * // LC_ALL=C: the output is English and parses the same on every host.
 * const { stdout } = await hostRunner().run(['ip', '-j', 'link', 'show'], { env: hostEnv() });
 * ```
 */
export function hostEnv(): { PATH: string; LC_ALL: string } {
  return { PATH: HOST_PATH, LC_ALL: 'C' };
}

/**
 * findBinary finds an executable in the directories of HOST_PATH; undefined when absent. A name with a slash is checked as is.
 *
 * @example
 * ```ts
 * import { findBinary } from '@execenv/core/driver';
 * // In a driver's probe(): a missing backend is an answer, not an error.
 * const bwrap = await findBinary('bwrap');
 * if (!bwrap) return { available: false, reason: 'bwrap is not installed: apt-get install bubblewrap', capabilities };
 * ```
 */
export async function findBinary(name: string): Promise<string | undefined> {
  if (name.includes('/')) return (await isExecutable(name)) ? name : undefined;
  for (const dir of SEARCH) {
    const candidate = `${dir}/${name}`;
    if (await isExecutable(candidate)) return candidate;
  }
  return undefined;
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * pathExists reports whether anything the caller may see exists at `path`.
 *
 * @example
 * ```ts
 * import { pathExists } from '@execenv/core/driver';
 * const systemd = await pathExists('/run/systemd/system'); // booted with systemd
 * ```
 */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
