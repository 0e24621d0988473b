import { ExecenvError } from '@execenv/core';
import { AgentEnvironment, type AgentEnvironmentInit, type AgentSessionLike, DEFAULT_PATH } from '@execenv/core/driver';
import { checkSnapshotName, type DiskSnapshots } from './disk-snapshots.js';

/**
 * How a guest is booted again: shut down cleanly first (the guest syncs its
 * disk) or quit at once, and what is done to its disk in between.
 *
 * @example
 * ```ts
 * import type { GuestRestart } from '@execenv/qemu';
 * const reboot: GuestRestart = { graceful: true };
 * const revert: GuestRestart = { graceful: false, whileStopped: () => freshOverlay() };
 * ```
 */
export interface GuestRestart {
  graceful: boolean;
  /** Runs while QEMU is stopped, before the guest boots again. */
  whileStopped?: () => Promise<void>;
}

/**
 * Everything a QEMU environment is made of once its guest's agent answers.
 *
 * @example
 * ```ts
 * import { FakeAgentSession } from '@execenv/core/testing';
 * import { QemuEnvironment } from '@execenv/qemu';
 * declare const snapshots: import('@execenv/qemu').DiskSnapshots;
 * const env = new QemuEnvironment({
 *   id: 'execenv-test', driver: 'qemu', capabilities: ['isolation-machine', 'root', 'revert', 'reboot', 'snapshot'],
 *   session: new FakeAgentSession(),
 *   restart: async ({ whileStopped }) => {
 *     await whileStopped?.();
 *     return new FakeAgentSession(); // a booted guest
 *   },
 *   freshDisk: async () => {},
 *   snapshots,
 *   destroy: async () => {},
 * });
 * ```
 */
export interface QemuEnvironmentInit extends AgentEnvironmentInit {
  /** Quits the guest, runs `whileStopped`, and boots it again; returns the new agent session. */
  restart: (how: GuestRestart) => Promise<AgentSessionLike>;
  /** Replaces the overlay with a fresh one on the base disk; called while QEMU is stopped. */
  freshDisk: () => Promise<void>;
  /** The overlay's internal snapshots. */
  snapshots: DiskSnapshots;
}

/**
 * QemuEnvironment is a virtual machine whose agent runs as init of its root
 * disk. Reverting discards the qcow2 overlay (and its snapshots); rebooting
 * keeps it. Snapshots are of the disk: taking one keeps the guest running,
 * restoring one boots the guest again on the disk as it was. Whenever the
 * guest boots again running commands are killed.
 *
 * @example
 * ```ts
 * import { QemuDriver } from '@execenv/qemu';
 * const env = await new QemuDriver({ kernel: '/srv/qemu-kernel' }).open({ image: './rootfs.tar.zst' });
 * try {
 *   await env.exec(['sh', '-c', 'echo changed > /etc/motd']);
 *   await env.snapshot('changed');
 *   await env.reboot(); // /etc/motd still says changed
 *   await env.revert(); // the image as opened; the snapshot is gone with the overlay
 * } finally {
 *   await env.close();
 * }
 * ```
 */
export class QemuEnvironment extends AgentEnvironment {
  readonly #restart: (how: GuestRestart) => Promise<AgentSessionLike>;
  readonly #freshDisk: () => Promise<void>;
  readonly #snapshots: DiskSnapshots;

  constructor(init: QemuEnvironmentInit) {
    super(init);
    this.#restart = init.restart;
    this.#freshDisk = init.freshDisk;
    this.#snapshots = init.snapshots;
  }

  /** Goes back to the image as it was opened: the guest boots again on a fresh overlay, without snapshots. */
  async revert(): Promise<void> {
    this.ensureOpen('revert');
    await this.#bootAgain(false, async () => {
      await this.#freshDisk();
      this.#snapshots.forgetAll();
    });
  }

  /** Boots the guest again with what it wrote to its disk. */
  async reboot(): Promise<void> {
    this.ensureOpen('reboot');
    await this.#bootAgain(true);
  }

  /**
   * Saves the guest's disk under `name`, replacing a snapshot of that name.
   * The guest syncs its disk and keeps running; an image without `sync`
   * is shut down cleanly instead and boots again, ending running commands.
   * @throws InvalidSpecError (`name`) on a name that is not a letter followed by letters, digits, `.`, `_` or `-`.
   */
  async snapshot(name: string): Promise<void> {
    checkSnapshotName(name, { envId: this.id, op: 'snapshot' });
    this.ensureOpen('snapshot');
    if (await this.#syncGuest()) await this.#snapshots.takeLive(name);
    else await this.#bootAgain(true, () => this.#snapshots.takeStopped(name));
  }

  /**
   * Boots the guest again on its disk as it was saved under `name`: what
   * was written since is gone, and running commands are killed.
   * @throws ExecenvError NOT_FOUND when there is no snapshot `name`; InvalidSpecError (`name`) on a malformed name.
   */
  async restore(name: string): Promise<void> {
    checkSnapshotName(name, { envId: this.id, op: 'restore' });
    this.ensureOpen('restore');
    if (!this.#snapshots.has(name))
      throw new ExecenvError(
        'NOT_FOUND',
        `execenv: restore: ${this.id} has no snapshot "${name}"${this.#snapshots.names.length > 0 ? ` (it has ${this.#snapshots.names.join(', ')})` : ''}`,
        { envId: this.id, driver: this.driver, op: 'restore' },
      );
    await this.#bootAgain(false, () => this.#snapshots.applyStopped(name));
  }

  /**
   * Kills running commands, then quits and boots the guest again with
   * `whileStopped` run in between. The guest boots even when `whileStopped`
   * fails; its error is thrown after.
   */
  async #bootAgain(graceful: boolean, whileStopped?: () => Promise<void>): Promise<void> {
    await this.killRunning();
    let failure: { error: unknown } | undefined;
    this.session = await this.#restart({
      graceful,
      whileStopped: async () => {
        try {
          await whileStopped?.();
        } catch (error) {
          failure = { error };
        }
      },
    });
    if (failure) throw failure.error;
  }

  /** Runs `sync` in the guest as root, so its disk holds what it wrote; false when the image cannot. */
  async #syncGuest(): Promise<boolean> {
    try {
      const proc = this.session.exec({
        cwd: '/',
        uid: 0,
        gid: 0,
        groups: [],
        env: { PATH: DEFAULT_PATH },
        argv: ['sync'],
      });
      proc.stdin?.end();
      proc.stdout?.resume();
      proc.stderr?.resume();
      return (await proc.exited).exitCode === 0;
    } catch {
      return false;
    }
  }
}
