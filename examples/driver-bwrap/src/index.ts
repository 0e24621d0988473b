/**
 * A third-party execenv driver: `open('bwrap', { image: 'rootfs.tar.zst' })`
 * runs commands in a bubblewrap sandbox. Importing this module registers it,
 * and `open('bwrap', ...)` imports it by its package name,
 * `execenv-driver-bwrap`, when nothing registered `bwrap` yet.
 * @packageDocumentation
 */
import { register } from '@execenv/core';
import { BwrapDriver } from './bwrap-driver.js';

export { SANDBOX, type SandboxPlan, sandboxArgv } from './bwrap-argv.js';
export { BwrapDriver, DRIVER_NAME } from './bwrap-driver.js';
export { BWRAP_NETWORKS, type BwrapDriverOptions } from './bwrap-options.js';

/** The driver instance registered as `bwrap`. */
export const bwrapDriver = new BwrapDriver();

register('bwrap', bwrapDriver);
