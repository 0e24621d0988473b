import { readdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { type Availability, type Driver, drivers, getDriver } from '@execenv/core';

/**
 * The drivers of the execenv project, each published as `@execenv/<name>`.
 *
 * @example
 * ```ts
 * import { FIRST_PARTY_DRIVERS, installHint } from '@execenv/cli';
 *
 * for (const name of FIRST_PARTY_DRIVERS) console.log(`${name}: ${installHint(name)}`);
 * // chroot: npm install @execenv/chroot, lxd: npm install @execenv/lxd, ...
 * ```
 */
export const FIRST_PARTY_DRIVERS: readonly string[] = ['chroot', 'lxd', 'nspawn', 'podman', 'qemu'];

const THIRD_PARTY_PREFIX = 'execenv-driver-';

/**
 * Names of third-party drivers installed where this command can import them
 * from: packages named `execenv-driver-<name>` in the node_modules
 * directories on its resolution path.
 *
 * @example
 * ```ts
 * import { installedThirdPartyDrivers } from '@execenv/cli';
 *
 * // execenv-driver-* packages importable from this module: ['firecracker'] for execenv-driver-firecracker
 * const names = await installedThirdPartyDrivers(import.meta.url);
 * ```
 */
export async function installedThirdPartyDrivers(from: string = import.meta.url): Promise<string[]> {
  const dirs = createRequire(from).resolve.paths('execenv-driver-x') ?? [];
  const names = new Set<string>();
  for (const dir of dirs)
    for (const entry of await readdir(dir).catch(() => [] as string[]))
      if (entry.startsWith(THIRD_PARTY_PREFIX) && entry.length > THIRD_PARTY_PREFIX.length)
        names.add(entry.slice(THIRD_PARTY_PREFIX.length));
  return [...names];
}

/**
 * Every driver name worth reporting: the project's, installed third-party ones, and any registered.
 *
 * @example
 * ```ts
 * import { describeDriver, knownDriverNames } from '@execenv/cli';
 *
 * const names = await knownDriverNames(); // ['chroot', 'lxd', 'nspawn', 'podman', 'qemu', ...others found]
 * const reports = await Promise.all(names.map((name) => describeDriver(name)));
 * ```
 */
export async function knownDriverNames(): Promise<string[]> {
  return [...new Set([...FIRST_PARTY_DRIVERS, ...(await installedThirdPartyDrivers()), ...drivers()])].sort();
}

/**
 * What `execenv drivers` says about one driver.
 *
 * @example
 * ```ts
 * import { type DriverReport, describeDriver } from '@execenv/cli';
 *
 * const report: DriverReport = await describeDriver('podman');
 * if (!report.available)
 *   console.error(`podman: ${report.reason}${report.install ? `; install: ${report.install}` : ''}`);
 * ```
 */
export interface DriverReport {
  /** The registry name. */
  name: string;
  /** Whether its package (or plugin) could be imported. */
  installed: boolean;
  /** Whether open() can work on this host. */
  available: boolean;
  /** Backend version, when known. */
  version?: string;
  /** Capabilities its environments have. */
  capabilities: string[];
  /** Why it is unavailable, or how it will run. */
  reason?: string;
  /** What to install to make it available, when that is known. */
  install?: string;
  /** Driver-specific facts from probe(). */
  details?: Record<string, string>;
}

/**
 * The command that installs the package providing a driver of this name.
 *
 * @example
 * ```ts
 * import { installHint } from '@execenv/cli';
 *
 * installHint('qemu'); // 'npm install @execenv/qemu'
 * installHint('firecracker'); // 'npm install execenv-driver-firecracker (or configure a plugin that registers it)'
 * ```
 */
export function installHint(name: string): string {
  return FIRST_PARTY_DRIVERS.includes(name)
    ? `npm install @execenv/${name}`
    : `npm install ${THIRD_PARTY_PREFIX}${name} (or configure a plugin that registers it)`;
}

/**
 * Loads a driver by name, as open() would, returning the error instead of throwing it.
 *
 * @example
 * ```ts
 * import { loadDriver } from '@execenv/cli';
 *
 * const { driver, error } = await loadDriver('lxd'); // never throws
 * if (driver) console.log(await driver.probe());
 * else console.error(error?.message); // execenv: unknown driver "lxd" (forgotten import or install?): ...
 * ```
 */
export async function loadDriver(name: string): Promise<{ driver?: Driver; error?: Error }> {
  try {
    return { driver: await getDriver(name) };
  } catch (err) {
    return { error: err instanceof Error ? err : new Error(String(err)) };
  }
}

/** Probes with a time limit: a backend whose daemon hangs is reported, not waited for. */
async function probeWithin(driver: Driver, ms: number): Promise<Availability> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<Availability>((resolve) => {
    timer = setTimeout(
      () => resolve({ available: false, reason: `probe did not answer within ${ms / 1000} s`, capabilities: [] }),
      ms,
    );
  });
  try {
    return await Promise.race([driver.probe(), late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Reports one driver: loaded as open() loads it, then probed. A driver
 * whose package is not installed, fails to import or whose probe throws is
 * reported unavailable with the reason; this never throws.
 *
 * @example
 * ```ts
 * import { describeDriver } from '@execenv/cli';
 *
 * const report = await describeDriver('qemu', 5_000); // a backend that hangs is reported after 5 s
 * console.log(report.available ? `qemu ${report.version}` : `qemu: ${report.reason}`);
 * ```
 */
export async function describeDriver(name: string, probeTimeoutMs = 30_000): Promise<DriverReport> {
  const { driver, error } = await loadDriver(name);
  if (!driver) {
    const notInstalled = (error as { code?: string })?.code === 'UNKNOWN_DRIVER';
    return {
      name,
      installed: false,
      available: false,
      capabilities: [],
      reason: notInstalled ? 'not installed' : `could not be loaded: ${error?.message}`,
      install: installHint(name),
    };
  }
  let a: Availability;
  try {
    a = await probeWithin(driver, probeTimeoutMs);
  } catch (err) {
    a = { available: false, reason: `probe failed: ${(err as Error).message}`, capabilities: [] };
  }
  return {
    name,
    installed: true,
    available: a.available,
    ...(a.version ? { version: a.version } : {}),
    capabilities: [...a.capabilities],
    ...(a.reason ? { reason: a.reason } : {}),
    ...(a.details ? { details: a.details } : {}),
  };
}
