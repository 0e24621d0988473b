import { UnsupportedError } from '@execenv/core';
import { AgentEnvironment, type AgentEnvironmentInit } from '@execenv/core/driver';

/**
 * What an LxdEnvironment is made of once its instance runs and its agent answers.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { LxdEnvironment } from '@execenv/lxd';
 * // What LxdDriver.open does once the instance runs:
 * const agent = await startLxdAgent(client, id);
 * const env = new LxdEnvironment({
 *   id, driver: 'lxd', capabilities: ['isolation-container', 'root'], session: agent.session,
 *   instance: id, hostRunner: hostRunner(),
 *   destroy: async () => { await agent.close(); await lease.release(undo); },
 * });
 * ```
 */
export interface LxdEnvironmentInit extends AgentEnvironmentInit {
  /** The instance name (the environment id). */
  instance: string;
  /** Publishes the instance as an image; present when the environment is Publishable. */
  publish?: (alias: string) => Promise<string>;
}

/**
 * LxdEnvironment is one LXD instance with the execenv agent running inside
 * it, started through one exec of the daemon's API: commands are the
 * agent's children, in the instance's namespaces and cgroup; files and
 * archives are read and written by the agent, which resolves every path
 * inside the instance.
 *
 * @example
 * ```ts
 * import { open } from '@execenv/core';
 * import type { LxdEnvironment } from '@execenv/lxd';
 * const env = (await open('lxd', { image: './busybox.tar' })) as LxdEnvironment;
 * try {
 *   console.log(env.instance, (await env.exec(['uname', '-n'])).stdout);
 * } finally {
 *   await env.close();
 * }
 * ```
 */
export class LxdEnvironment extends AgentEnvironment {
  readonly #init: LxdEnvironmentInit;

  constructor(init: LxdEnvironmentInit) {
    super(init);
    this.#init = init;
  }

  /** The LXD instance name. */
  get instance(): string {
    return this.#init.instance;
  }

  /**
   * Publishes the instance's current state as an image under `alias`; returns `lxd:<alias>`.
   *
   * @example
   * ```ts
   * await env.exec(['sh', '-c', 'echo prepared > /etc/motd']);
   * const image = await env.publish('my-template'); // 'lxd:my-template'
   * const next = await open('lxd', { image });
   * ```
   */
  async publish(alias: string): Promise<string> {
    this.ensureOpen('publish');
    if (!this.#init.publish)
      throw new UnsupportedError(this.driver, 'publish', { envId: this.id, driver: this.driver, op: 'publish' });
    return this.#init.publish(alias);
  }
}
