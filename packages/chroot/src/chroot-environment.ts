import { AgentEnvironment, type AgentEnvironmentInit, type AgentSessionLike } from '@execenv/core/driver';

/**
 * Everything a chroot environment is made of once its agent answers.
 *
 * @example
 * ```ts
 * import { ChrootEnvironment } from '@execenv/chroot';
 * import { FakeAgentSession } from '@execenv/core/testing';
 * const env = new ChrootEnvironment({
 *   id: 'execenv-test', driver: 'chroot', capabilities: ['isolation-chroot', 'root', 'revert'],
 *   session: new FakeAgentSession(),
 *   restart: async () => new FakeAgentSession(), // a fresh agent over the emptied overlay
 *   destroy: async () => {},
 * });
 * ```
 */
export interface ChrootEnvironmentInit extends AgentEnvironmentInit {
  /**
   * Stops the agent, empties the overlay's upper layer, mounts the root
   * again and starts a new agent, returning its session.
   */
  restart: () => Promise<AgentSessionLike>;
}

/**
 * ChrootEnvironment is an overlay of the image whose agent is the init of
 * the environment's mount and pid namespaces: every command and file
 * operation goes through it, so paths resolve inside the root and a timeout
 * or abort reaches every process a command started.
 *
 * @example
 * ```ts
 * import { ChrootDriver } from '@execenv/chroot';
 * const env = await new ChrootDriver().open({ image: '/srv/bookworm-minbase.tar.zst' });
 * try {
 *   await env.exec(['sh', '-c', 'rm -rf /usr/share/doc']);
 *   await env.revert(); // the image as opened again
 * } finally {
 *   await env.close();
 * }
 * ```
 */
export class ChrootEnvironment extends AgentEnvironment {
  readonly #restart: () => Promise<AgentSessionLike>;

  constructor(init: ChrootEnvironmentInit) {
    super(init);
    this.#restart = init.restart;
  }

  /** Goes back to the image as it was opened: every change is discarded and running commands are killed. */
  async revert(): Promise<void> {
    this.ensureOpen('revert');
    await this.killRunning();
    this.session = await this.#restart();
  }
}
