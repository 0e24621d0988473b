/**
 * The chroot driver of execenv: `open('chroot', { image: 'rootfs.tar.zst' })`.
 * Importing this module registers it.
 * @packageDocumentation
 */
import { register } from '@execenv/core';
import { ChrootDriver } from './chroot-driver.js';

export { ChrootDriver, DRIVER_NAME } from './chroot-driver.js';
export { ChrootEnvironment, type ChrootEnvironmentInit } from './chroot-environment.js';
export type { ChrootNetworksOptions } from './chroot-network.js';
export type { ChrootDriverOptions, ChrootEnvOptions, ChrootImageSources, ChrootMode } from './chroot-options.js';
export { defaultImagePath, ensureDefaultImage } from './default-image.js';

/**
 * The driver instance registered as `chroot`.
 *
 * @example
 * ```ts
 * import { chrootDriver } from '@execenv/chroot';
 * const { available, reason } = await chrootDriver.probe();
 * if (!available) throw new Error(`chroot driver unavailable: ${reason}`);
 * const { removed } = await chrootDriver.gc(); // leftovers of processes that died
 * ```
 */
export const chrootDriver = new ChrootDriver();

register('chroot', chrootDriver);
