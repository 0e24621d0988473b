import type { Environment } from './contract.js';
import { UnsupportedError } from './errors.js';

/**
 * Revertable environments can go back to the state they were opened in.
 *
 * @example
 * ```ts
 * import { isRevertable, type Revertable } from '@execenv/core';
 * async function eachFromClean(env: Revertable, jobs: string[][]) {
 *   for (const argv of jobs) {
 *     await env.exec(argv, { check: true });
 *     await env.revert(); // the next job starts from the state of open
 *   }
 * }
 * if (isRevertable(env)) await eachFromClean(env, [['make', 'test'], ['make', 'dist']]);
 * ```
 */
export interface Revertable extends Environment {
  /** Discards every change since open; running commands are killed. */
  revert(): Promise<void>;
}

/**
 * Rebootable environments can restart their init and keep their disk.
 *
 * @example
 * ```ts
 * import { isRebootable, type Rebootable } from '@execenv/core';
 * async function installKernel(env: Rebootable) {
 *   await env.exec(['apt-get', 'install', '-y', 'linux-image-amd64'], { check: true });
 *   await env.reboot(); // resolves once the environment is ready again, disk kept
 * }
 * if (isRebootable(env)) await installKernel(env);
 * ```
 */
export interface Rebootable extends Environment {
  /** Reboots and waits until the environment is ready again. */
  reboot(): Promise<void>;
}

/**
 * Snapshottable environments can save and restore named states.
 *
 * @example
 * ```ts
 * import type { Snapshottable } from '@execenv/core';
 * async function withSnapshot(env: Snapshottable, argv: string[]) {
 *   await env.snapshot('before');
 *   try {
 *     return await env.exec(argv);
 *   } finally {
 *     await env.restore('before');
 *   }
 * }
 * ```
 */
export interface Snapshottable extends Environment {
  /** Saves the current state under `name`. */
  snapshot(name: string): Promise<void>;
  /** Returns to the state saved under `name`. */
  restore(name: string): Promise<void>;
}

/**
 * Publishable environments can be turned into an image.
 *
 * @example
 * ```ts
 * import { isPublishable, type Publishable } from '@execenv/core';
 * async function saveAs(env: Publishable, alias: string): Promise<string> {
 *   await env.exec(['apt-get', 'clean'], { check: true });
 *   return env.publish(alias); // e.g. 'lxd:build-env', an image reference a later open takes
 * }
 * if (isPublishable(env)) console.log(await saveAs(env, 'build-env'));
 * ```
 */
export interface Publishable extends Environment {
  /** Publishes the environment's current state as an image named `alias`; returns the image reference. */
  publish(alias: string): Promise<string>;
}

function has<K extends string>(env: Environment, method: K, capability: string): boolean {
  return (
    env.capabilities.has(capability as never) && typeof (env as unknown as Record<K, unknown>)[method] === 'function'
  );
}

/**
 * Reports whether `env` declares and implements `revert`.
 *
 * @example
 * ```ts
 * import { isRevertable } from '@execenv/core';
 * if (isRevertable(env)) await env.revert();
 * else console.warn(`the ${env.driver} driver cannot revert: open a fresh environment instead`);
 * ```
 */
export function isRevertable(env: Environment): env is Revertable {
  return has(env, 'revert', 'revert');
}
/**
 * Reports whether `env` declares and implements `reboot`.
 *
 * @example
 * ```ts
 * import { isRebootable } from '@execenv/core';
 * if (!isRebootable(env)) throw new Error(`the ${env.driver} driver cannot reboot`);
 * await env.reboot();
 * ```
 */
export function isRebootable(env: Environment): env is Rebootable {
  return has(env, 'reboot', 'reboot');
}
/**
 * Reports whether `env` declares and implements `snapshot` and `restore`.
 *
 * @example
 * ```ts
 * import { isSnapshottable } from '@execenv/core';
 * // true only when the environment declares 'snapshot' and has both snapshot() and restore()
 * if (isSnapshottable(env)) await env.snapshot('configured');
 * ```
 */
export function isSnapshottable(env: Environment): env is Snapshottable {
  return has(env, 'snapshot', 'snapshot') && has(env, 'restore', 'snapshot');
}
/**
 * Reports whether `env` declares and implements `publish`.
 *
 * @example
 * ```ts
 * import { isPublishable } from '@execenv/core';
 * if (isPublishable(env)) console.log('published as', await env.publish('build-env'));
 * ```
 */
export function isPublishable(env: Environment): env is Publishable {
  return has(env, 'publish', 'publish');
}

/**
 * Reverts `env`, or throws UnsupportedError naming the driver when it cannot.
 *
 * @example
 * ```ts
 * import { hasCode, revert } from '@execenv/core';
 * try {
 *   await revert(env); // discards every change since open
 * } catch (err) {
 *   if (!hasCode(err, 'UNSUPPORTED')) throw err;
 *   console.warn(err.message); // names the driver that cannot revert
 * }
 * ```
 */
export async function revert(env: Environment): Promise<void> {
  if (!isRevertable(env)) throw new UnsupportedError(env.driver, 'revert', { envId: env.id, op: 'revert' });
  return env.revert();
}
/**
 * Reboots `env`, or throws UnsupportedError.
 *
 * @example
 * ```ts
 * import { reboot } from '@execenv/core';
 * await env.exec(['systemctl', 'set-default', 'multi-user.target'], { check: true });
 * await reboot(env); // UnsupportedError (code 'UNSUPPORTED') where the driver cannot reboot
 * ```
 */
export async function reboot(env: Environment): Promise<void> {
  if (!isRebootable(env)) throw new UnsupportedError(env.driver, 'reboot', { envId: env.id, op: 'reboot' });
  return env.reboot();
}
/**
 * Saves a snapshot of `env`, or throws UnsupportedError.
 *
 * @example
 * ```ts
 * import { restore, snapshot } from '@execenv/core';
 * await snapshot(env, 'deps-installed');
 * await env.exec(['make', 'check']);
 * await restore(env, 'deps-installed');
 * ```
 */
export async function snapshot(env: Environment, name: string): Promise<void> {
  if (!isSnapshottable(env)) throw new UnsupportedError(env.driver, 'snapshot', { envId: env.id, op: 'snapshot' });
  return env.snapshot(name);
}
/**
 * Restores a snapshot of `env`, or throws UnsupportedError.
 *
 * @example
 * ```ts
 * import { restore, snapshot } from '@execenv/core';
 * await snapshot(env, 'configured');
 * for (const suite of ['unit', 'integration']) {
 *   await env.exec(['make', suite]);
 *   await restore(env, 'configured'); // every suite starts from the same state
 * }
 * ```
 */
export async function restore(env: Environment, name: string): Promise<void> {
  if (!isSnapshottable(env)) throw new UnsupportedError(env.driver, 'snapshot', { envId: env.id, op: 'restore' });
  return env.restore(name);
}
/**
 * Publishes `env` as an image, or throws UnsupportedError.
 *
 * @example
 * ```ts
 * import { open, publish } from '@execenv/core';
 * const image = await publish(env, 'build-env'); // e.g. 'oci:localhost/build-env' with podman
 * const copy = await open(env.driver, { image }); // a new environment in the published state
 * ```
 */
export async function publish(env: Environment, alias: string): Promise<string> {
  if (!isPublishable(env)) throw new UnsupportedError(env.driver, 'publish', { envId: env.id, op: 'publish' });
  return env.publish(alias);
}
