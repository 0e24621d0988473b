import { AgentEnvironment, type AgentEnvironmentInit, type AgentSessionLike } from '@execenv/core/driver';

/**
 * Everything a QEMU environment is made of once its guest's agent answers.
 *
 * @example
 * ```ts
 * import { FakeAgentSession } from '@execenv/core/testing';
 * import { QemuEnvironment } from '@execenv/qemu';
 * const env = new QemuEnvironment({
 *   id: 'execenv-test', driver: 'qemu', capabilities: ['isolation-machine', 'root', 'revert', 'reboot'],
 *   session: new FakeAgentSession(),
 *   restart: async (discard) => new FakeAgentSession(), // a booted guest: fresh overlay when discard
 *   destroy: async () => {},
 * });
 * ```
 */
export interface QemuEnvironmentInit extends AgentEnvironmentInit {
  /**
   * Quits the guest and boots it again, on a fresh overlay when `discard`
   * (what the guest wrote is gone) or on the same disk; returns the new
   * agent session.
   */
  restart: (discard: boolean) => Promise<AgentSessionLike>;
}

/**
 * QemuEnvironment is a virtual machine whose agent runs as init of its root
 * disk. Reverting discards the qcow2 overlay; rebooting keeps it. Either way
 * the guest boots again and running commands are killed.
 *
 * @example
 * ```ts
 * import { QemuDriver } from '@execenv/qemu';
 * const env = await new QemuDriver({ kernel: '/srv/qemu-kernel' }).open({ image: './rootfs.tar.zst' });
 * try {
 *   await env.exec(['sh', '-c', 'echo changed > /etc/motd']);
 *   await env.reboot(); // /etc/motd still says changed
 *   await env.revert(); // the image as opened
 * } finally {
 *   await env.close();
 * }
 * ```
 */
export class QemuEnvironment extends AgentEnvironment {
  readonly #restart: (discard: boolean) => Promise<AgentSessionLike>;

  constructor(init: QemuEnvironmentInit) {
    super(init);
    this.#restart = init.restart;
  }

  /** Goes back to the image as it was opened: the guest boots again on a fresh overlay. */
  async revert(): Promise<void> {
    this.ensureOpen('revert');
    await this.killRunning();
    this.session = await this.#restart(true);
  }

  /** Boots the guest again with what it wrote to its disk. */
  async reboot(): Promise<void> {
    this.ensureOpen('reboot');
    await this.killRunning();
    this.session = await this.#restart(false);
  }
}
