/**
 * The podman driver of execenv: `open('podman', { image: 'rootfs.tar.zst' })`
 * or `{ image: 'oci:docker.io/library/debian:bookworm' }`. Importing this
 * module registers it.
 * @packageDocumentation
 */
import { register } from '@execenv/core';
import { PodmanDriver } from './podman-driver.js';

export { type AgentLink, connectExec, connectSocket } from './agent-link.js';
export { AGENT_PATH, AGENT_SOCKET, type ContainerPlan, createArgs, RUN_DIR } from './container-args.js';
export {
  ID_LABEL,
  OWNER_LABEL,
  ownerLabel,
  PUBLISHED_LABEL,
  parseOwnerLabel,
  ROOTFS_LABEL,
  ROOTFS_REPOSITORY,
  rootfsImageName,
} from './labels.js';
export { isGone, PodmanCli, type PodmanCliOptions } from './podman-cli.js';
export { DRIVER_NAME, PodmanDriver } from './podman-driver.js';
export { type ContainerLifecycle, PodmanEnvironment, type PodmanEnvironmentInit } from './podman-environment.js';
export { type EnsureImageOptions, ensureImage } from './podman-images.js';
export type {
  AgentTransport,
  PodmanConnection,
  PodmanDriverOptions,
  PodmanEnvOptions,
} from './podman-options.js';
export { PODMAN_NETWORKS } from './podman-options.js';
export { CONTAINER, containerResource, NETWORK, networkResource, podmanUndo } from './podman-undo.js';

/**
 * The driver instance registered as `podman`.
 *
 * @example
 * ```ts
 * import { podmanDriver } from '@execenv/podman';
 * const { available, reason, details } = await podmanDriver.probe();
 * if (!available) throw new Error(`podman driver unavailable: ${reason}`);
 * console.log(details?.mode, details?.transport); // e.g. rootless socket
 * const pruned = await podmanDriver.pruneImages(); // imported rootfs images no container uses
 * ```
 */
export const podmanDriver = new PodmanDriver();

register('podman', podmanDriver);
