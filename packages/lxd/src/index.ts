/**
 * The LXD driver of execenv: `open('lxd', { image: 'rootfs.tar.zst' })`.
 * Containers and virtual machines over the LXD REST API, on the local unix
 * socket or a remote HTTPS endpoint. Importing this module registers it.
 * @packageDocumentation
 */
import { register } from '@execenv/core';
import { LxdDriver } from './lxd-driver.js';

export { LxdApiError, LxdClient, LxdConnectionError, type LxdEndpoint, type LxdOperation } from './lxd-client.js';
export { DRIVER_NAME, LxdDriver } from './lxd-driver.js';
export { candidateSockets, findLocalSocket } from './lxd-endpoint.js';
export { LxdEnvironment, type LxdEnvironmentInit } from './lxd-environment.js';
export { aliasOfDigest, IMAGE_ALIAS_PREFIX, type LxdImageSource } from './lxd-images.js';
export { CONFIG_PREFIX } from './lxd-instance-config.js';
export { freeSubnet, NAT_NETWORK } from './lxd-network.js';
export { LOCAL_SOCKETS, type LxdDriverOptions, type LxdEnvOptions } from './lxd-options.js';

/**
 * The driver instance registered as `lxd`.
 *
 * @example
 * ```ts
 * import { lxdDriver } from '@execenv/lxd';
 * const { available, reason, details } = await lxdDriver.probe();
 * if (!available) throw new Error(`lxd driver unavailable: ${reason}`);
 * console.log(details?.endpoint); // e.g. /var/lib/lxd/unix.socket
 * const { removed, errors } = await lxdDriver.gc(); // instances and profiles of dead owners
 * ```
 */
export const lxdDriver = new LxdDriver();

register('lxd', lxdDriver);
