/**
 * The systemd-nspawn driver of execenv: `open('nspawn', { image: 'rootfs.tar.zst' })`.
 * Importing this module registers it.
 * @packageDocumentation
 */
import { register } from '@execenv/core';
import { NspawnDriver } from './nspawn-driver.js';

export { agentListenArgv, escapeNspawnPath, type NspawnArgs, nspawnArgv } from './nspawn-args.js';
export { DRIVER_NAME, NspawnDriver } from './nspawn-driver.js';
export type { NspawnNetworksOptions } from './nspawn-network.js';
export type { NspawnDriverOptions, NspawnEnvOptions, NspawnImageSources, NspawnMode } from './nspawn-options.js';

/**
 * The driver instance registered as `nspawn`.
 *
 * @example
 * ```ts
 * import { nspawnDriver } from '@execenv/nspawn';
 * const { available, reason, details } = await nspawnDriver.probe();
 * if (!available) throw new Error(`nspawn driver unavailable: ${reason}`);
 * console.log(`resource limits: ${details?.resourceLimits}`); // 'yes' where systemd is PID 1
 * ```
 */
export const nspawnDriver = new NspawnDriver();

register('nspawn', nspawnDriver);
