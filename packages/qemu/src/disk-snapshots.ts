import { type ErrorContext, ExecenvError, InvalidSpecError } from '@execenv/core';
import type { QemuImg } from '@execenv/images';
import type { QmpClient } from './qmp.js';

/**
 * What a snapshot may be called: a letter, then letters, digits, `.`, `_`
 * or `-`, 64 at most. qemu-img finds a snapshot by its numeric id as well as
 * by its name, so a name must not look like an id.
 */
const SNAPSHOT_NAME = /^[A-Za-z][A-Za-z0-9._-]{0,63}$/;

/**
 * Checks a snapshot name before anything is done with it.
 * @throws InvalidSpecError naming the field `name`.
 *
 * @example
 * ```ts
 * import { checkSnapshotName } from '@execenv/qemu';
 * checkSnapshotName('deps-installed', { op: 'snapshot' }); // fine
 * checkSnapshotName('1', { op: 'snapshot' }); // InvalidSpecError: invalid name: ... must start with a letter ...
 * ```
 */
export function checkSnapshotName(name: unknown, context: ErrorContext): asserts name is string {
  if (typeof name !== 'string' || !SNAPSHOT_NAME.test(name))
    throw new InvalidSpecError(
      'name',
      `a snapshot name starts with a letter, then letters, digits, '.', '_' or '-' (64 at most), got ${JSON.stringify(name)}`,
      { driver: 'qemu', ...context },
    );
}

/**
 * How DiskSnapshots reaches the overlay.
 *
 * @example
 * ```ts
 * import { QemuImg } from '@execenv/images';
 * import { type DiskSnapshotsInit, DiskSnapshots, QmpClient, ROOT_DRIVE } from '@execenv/qemu';
 * const qmp = await QmpClient.connect('/state/envs/execenv-abc/qmp.sock');
 * const init: DiskSnapshotsInit = {
 *   disk: '/state/envs/execenv-abc/disk.qcow2', device: ROOT_DRIVE, qemuImg: new QemuImg(),
 *   qmp: () => qmp, context: { envId: 'execenv-abc' },
 * };
 * const snapshots = new DiskSnapshots(init);
 * ```
 */
export interface DiskSnapshotsInit {
  /** The environment's qcow2 overlay. */
  disk: string;
  /** The QEMU block device the overlay is attached as (`-drive id=`). */
  device: string;
  qemuImg: QemuImg;
  /** QMP of the guest running now. */
  qmp: () => QmpClient;
  /** Context of the errors. */
  context: ErrorContext;
}

/**
 * DiskSnapshots are the internal qcow2 snapshots of one environment's
 * overlay: taken through QMP while the guest runs, or with qemu-img while it
 * is stopped, and applied with qemu-img while it is stopped. A name taken
 * again replaces its snapshot. It knows the names it took: the overlay is
 * the environment's own.
 *
 * @example
 * ```ts
 * import { QemuImg } from '@execenv/images';
 * import { DiskSnapshots } from '@execenv/qemu';
 * declare const guest: { qmp: import('@execenv/qemu').QmpClient };
 * const snapshots = new DiskSnapshots({
 *   disk: '/state/envs/execenv-abc/disk.qcow2', device: 'root', qemuImg: new QemuImg(),
 *   qmp: () => guest.qmp, context: { envId: 'execenv-abc' },
 * });
 * await snapshots.takeLive('configured'); // after the guest synced its disk
 * // later, with QEMU stopped:
 * await snapshots.applyStopped('configured');
 * ```
 */
export class DiskSnapshots {
  readonly #init: DiskSnapshotsInit;
  readonly #names = new Set<string>();

  constructor(init: DiskSnapshotsInit) {
    this.#init = init;
  }

  /** Whether a snapshot of this name was taken (and not discarded by forgetAll). */
  has(name: string): boolean {
    return this.#names.has(name);
  }

  /** The names taken, oldest first. */
  get names(): string[] {
    return [...this.#names];
  }

  /**
   * Takes a snapshot of the running guest's disk (`blockdev-snapshot-internal-sync`).
   * What the guest has not written to its disk (its page cache) is not in it: sync first.
   * @throws ExecenvError TRANSPORT with QEMU's error.
   */
  async takeLive(name: string): Promise<void> {
    const { device } = this.#init;
    await this.#qmp('snapshot', async (qmp) => {
      if (this.#names.has(name)) await qmp.execute('blockdev-snapshot-delete-internal-sync', { device, name });
      this.#names.delete(name);
      await qmp.execute('blockdev-snapshot-internal-sync', { device, name });
    });
    this.#names.add(name);
  }

  /** Takes a snapshot of the disk while QEMU is stopped (`qemu-img snapshot -c`). */
  async takeStopped(name: string): Promise<void> {
    const { qemuImg, disk } = this.#init;
    if (this.#names.has(name)) await qemuImg.snapshotDelete(disk, name);
    this.#names.delete(name);
    await qemuImg.snapshotCreate(disk, name);
    this.#names.add(name);
  }

  /** Returns the disk to a snapshot while QEMU is stopped (`qemu-img snapshot -a`); the snapshot stays. */
  async applyStopped(name: string): Promise<void> {
    await this.#init.qemuImg.snapshotApply(this.#init.disk, name);
  }

  /** Forgets every name: the overlay they were in was replaced. */
  forgetAll(): void {
    this.#names.clear();
  }

  async #qmp(op: string, run: (qmp: QmpClient) => Promise<void>): Promise<void> {
    try {
      await run(this.#init.qmp());
    } catch (err) {
      throw new ExecenvError('TRANSPORT', `execenv: ${op}: QEMU: ${(err as Error).message}`, {
        driver: 'qemu',
        ...this.#init.context,
        op,
        cause: err,
      });
    }
  }
}
