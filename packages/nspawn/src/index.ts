/**
 * The systemd-nspawn driver of execenv: `open('nspawn', { image: 'rootfs.tar.zst' })`.
 * Importing this module registers it.
 * @packageDocumentation
 */
import { register } from '@execenv/core';
import { NspawnDriver } from './nspawn-driver.js';

export { agentListenArgv, escapeNspawnPath, type NspawnArgs, nspawnArgv } from './nspawn-args.js';
export { DRIVER_NAME, NspawnDriver } from './nspawn-driver.js';
export type { NspawnDriverOptions, NspawnEnvOptions, NspawnImageSources, NspawnMode } from './nspawn-options.js';

/** The driver instance registered as `nspawn`. */
export const nspawnDriver = new NspawnDriver();

register('nspawn', nspawnDriver);
