import {
  DriverUnavailableError,
  HostCommandError,
  hostRunner,
  ImageNotFoundError,
  type ProcessRunner,
} from '@execenv/core';
import { hostEnv } from '@execenv/core/driver';

/**
 * An internal snapshot of a qcow2 image.
 *
 * @example
 * ```ts
 * import { QemuImg, type QemuSnapshot } from '@execenv/images';
 * const snapshots: QemuSnapshot[] = await new QemuImg().snapshots('./vm.qcow2');
 * for (const s of snapshots) console.log(s.id, s.name, s.date.toISOString(), s.vmStateSize > 0 ? 'with VM state' : '');
 * ```
 */
export interface QemuSnapshot {
  id: string;
  name: string;
  /** Bytes of saved VM state (0 for disk-only snapshots). */
  vmStateSize: number;
  date: Date;
}

/**
 * What `qemu-img info` says about an image.
 *
 * @example
 * ```ts
 * import { QemuImg, type QemuImageInfo } from '@execenv/images';
 * const qemuImg = new QemuImg();
 * const info: QemuImageInfo = await qemuImg.info('./disk.qcow2');
 * if (info.virtualSize < 8 * 2 ** 30) await qemuImg.resize('./disk.qcow2', '8G');
 * console.log(info.format, info.backingFile ?? 'no backing file');
 * ```
 */
export interface QemuImageInfo {
  /** `qcow2`, `raw`, ... */
  format: string;
  /** Size the guest sees, in bytes. */
  virtualSize: number;
  /** Bytes used on the host. */
  actualSize?: number;
  /** The backing file of an overlay. */
  backingFile?: string;
  /** Format of the backing file. */
  backingFormat?: string;
  snapshots: QemuSnapshot[];
}

/**
 * Options of QemuImg.create.
 *
 * @example
 * ```ts
 * import { type CreateOptions, QemuImg } from '@execenv/images';
 * const overlay: CreateOptions = { backingFile: '/var/cache/execenv/base.qcow2', backingFormat: 'qcow2' };
 * await new QemuImg().create('/tmp/run-1.qcow2', overlay); // as large as its backing file
 * await new QemuImg().create('/tmp/scratch.raw', { format: 'raw', size: '1G' });
 * ```
 */
export interface CreateOptions {
  /** @default 'qcow2' */
  format?: string;
  /** Virtual size (`10G`, bytes); optional with a backing file. */
  size?: string | number;
  /** Make an overlay on this image. */
  backingFile?: string;
  /** Format of the backing file. @default 'qcow2' */
  backingFormat?: string;
}

const HOST_ENV = hostEnv();

/**
 * QemuImg wraps the qemu-img command: typed results, argv arrays through the
 * one process runner, errors that say what failed and how to fix it.
 *
 * @example
 * ```ts
 * import { hasCode } from '@execenv/core';
 * import { QemuImg } from '@execenv/images';
 * const qemuImg = new QemuImg(); // the host's qemu-img, through hostRunner()
 * await qemuImg.create('./overlay.qcow2', { backingFile: '/var/cache/execenv/base.qcow2' }).catch((err: unknown) => {
 *   if (hasCode(err, 'DRIVER_UNAVAILABLE')) console.error(err.message); // says what to install
 *   throw err;
 * });
 * await qemuImg.snapshotCreate('./overlay.qcow2', 'clean');
 * ```
 */
export class QemuImg {
  readonly #runner: ProcessRunner;
  readonly #binary: string;

  constructor(runner: ProcessRunner = hostRunner(), binary = 'qemu-img') {
    this.#runner = runner;
    this.#binary = binary;
  }

  async #run(args: string[], path?: string): Promise<string> {
    try {
      return (await this.#runner.run([this.#binary, ...args], { env: HOST_ENV })).stdout;
    } catch (err) {
      if (err instanceof HostCommandError && err.result.exitCode === null && !err.result.signal)
        throw new DriverUnavailableError('qemu', `${this.#binary} could not run: apt-get install qemu-utils`, {
          cause: err,
        });
      if (err instanceof HostCommandError && path && /No such file or directory/.test(err.result.stderr))
        throw new ImageNotFoundError(path, 'no such file', { op: `qemu-img ${args[0]}`, cause: err });
      throw err;
    }
  }

  /** Describes an image (`qemu-img info --output=json`). */
  async info(path: string): Promise<QemuImageInfo> {
    const raw = JSON.parse(await this.#run(['info', '--output=json', '--force-share', path], path)) as Record<
      string,
      unknown
    >;
    const snapshots = ((raw.snapshots as Record<string, unknown>[] | undefined) ?? []).map((s) => ({
      id: String(s.id),
      name: String(s.name),
      vmStateSize: Number(s['vm-state-size'] ?? 0),
      date: new Date(Number(s['date-sec'] ?? 0) * 1000),
    }));
    return {
      format: String(raw.format),
      virtualSize: Number(raw['virtual-size']),
      ...(raw['actual-size'] !== undefined ? { actualSize: Number(raw['actual-size']) } : {}),
      ...(raw['backing-filename'] !== undefined ? { backingFile: String(raw['backing-filename']) } : {}),
      ...(raw['backing-filename-format'] !== undefined
        ? { backingFormat: String(raw['backing-filename-format']) }
        : {}),
      snapshots,
    };
  }

  /** Creates an image, or an overlay on `backingFile`. */
  async create(path: string, opts: CreateOptions = {}): Promise<void> {
    const args = ['create', '-q', '-f', opts.format ?? 'qcow2'];
    if (opts.backingFile) args.push('-b', opts.backingFile, '-F', opts.backingFormat ?? 'qcow2');
    args.push(path);
    if (opts.size !== undefined) args.push(String(opts.size));
    await this.#run(args, opts.backingFile);
  }

  /** Converts an image to another format. */
  async convert(src: string, dest: string, to = 'qcow2', from?: string): Promise<void> {
    await this.#run(['convert', '-q', ...(from ? ['-f', from] : []), '-O', to, src, dest], src);
  }

  /** Changes an image's virtual size (`+1G`, `10G`, bytes). */
  async resize(path: string, size: string | number): Promise<void> {
    await this.#run(['resize', '-q', path, String(size)], path);
  }

  /** The image's internal snapshots. */
  async snapshots(path: string): Promise<QemuSnapshot[]> {
    return (await this.info(path)).snapshots;
  }

  /** Saves an internal snapshot named `name`. */
  async snapshotCreate(path: string, name: string): Promise<void> {
    await this.#run(['snapshot', '-c', name, path], path);
  }

  /** Reverts the image to the snapshot `name`. */
  async snapshotApply(path: string, name: string): Promise<void> {
    await this.#run(['snapshot', '-a', name, path], path);
  }

  /** Deletes the snapshot `name`. */
  async snapshotDelete(path: string, name: string): Promise<void> {
    await this.#run(['snapshot', '-d', name, path], path);
  }
}
