import type { Environment } from './contract.js';
import { UnsupportedError } from './errors.js';

/** Revertable environments can go back to the state they were opened in. */
export interface Revertable extends Environment {
  /** Discards every change since open; running commands are killed. */
  revert(): Promise<void>;
}

/** Rebootable environments can restart their init and keep their disk. */
export interface Rebootable extends Environment {
  /** Reboots and waits until the environment is ready again. */
  reboot(): Promise<void>;
}

/** Snapshottable environments can save and restore named states. */
export interface Snapshottable extends Environment {
  /** Saves the current state under `name`. */
  snapshot(name: string): Promise<void>;
  /** Returns to the state saved under `name`. */
  restore(name: string): Promise<void>;
}

/** Publishable environments can be turned into an image. */
export interface Publishable extends Environment {
  /** Publishes the environment's current state as an image named `alias`; returns the image reference. */
  publish(alias: string): Promise<string>;
}

function has<K extends string>(env: Environment, method: K, capability: string): boolean {
  return (
    env.capabilities.has(capability as never) && typeof (env as unknown as Record<K, unknown>)[method] === 'function'
  );
}

/** Reports whether `env` declares and implements `revert`. */
export function isRevertable(env: Environment): env is Revertable {
  return has(env, 'revert', 'revert');
}
/** Reports whether `env` declares and implements `reboot`. */
export function isRebootable(env: Environment): env is Rebootable {
  return has(env, 'reboot', 'reboot');
}
/** Reports whether `env` declares and implements `snapshot` and `restore`. */
export function isSnapshottable(env: Environment): env is Snapshottable {
  return has(env, 'snapshot', 'snapshot') && has(env, 'restore', 'snapshot');
}
/** Reports whether `env` declares and implements `publish`. */
export function isPublishable(env: Environment): env is Publishable {
  return has(env, 'publish', 'publish');
}

/** Reverts `env`, or throws UnsupportedError naming the driver when it cannot. */
export function revert(env: Environment): Promise<void> {
  if (!isRevertable(env)) throw new UnsupportedError(env.driver, 'revert', { envId: env.id, op: 'revert' });
  return env.revert();
}
/** Reboots `env`, or throws UnsupportedError. */
export function reboot(env: Environment): Promise<void> {
  if (!isRebootable(env)) throw new UnsupportedError(env.driver, 'reboot', { envId: env.id, op: 'reboot' });
  return env.reboot();
}
/** Saves a snapshot of `env`, or throws UnsupportedError. */
export function snapshot(env: Environment, name: string): Promise<void> {
  if (!isSnapshottable(env)) throw new UnsupportedError(env.driver, 'snapshot', { envId: env.id, op: 'snapshot' });
  return env.snapshot(name);
}
/** Restores a snapshot of `env`, or throws UnsupportedError. */
export function restore(env: Environment, name: string): Promise<void> {
  if (!isSnapshottable(env)) throw new UnsupportedError(env.driver, 'snapshot', { envId: env.id, op: 'restore' });
  return env.restore(name);
}
/** Publishes `env` as an image, or throws UnsupportedError. */
export function publish(env: Environment, alias: string): Promise<string> {
  if (!isPublishable(env)) throw new UnsupportedError(env.driver, 'publish', { envId: env.id, op: 'publish' });
  return env.publish(alias);
}
