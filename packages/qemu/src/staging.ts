import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { type FileHandle, lstat, mkdir, open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type ErrorContext, ExecenvError, type ProcessRunner, TransportError, UnsafePathError } from '@execenv/core';
import { hostEnv } from '@execenv/core/driver';

/**
 * The 9p mount tag of a guest's staging share for pushes.
 *
 * @example
 * ```ts
 * import { STAGING_TAG } from '@execenv/qemu';
 * // qemuArgv exports the staging directory under this tag, read-only:
 * const share = { tag: STAGING_TAG, path: '/var/lib/execenv/envs/execenv-1/stage', readOnly: true };
 * ```
 */
export const STAGING_TAG = 'execenvstage';

/**
 * The 9p mount tag of a guest's pull share, which only the agent writes.
 *
 * @example
 * ```ts
 * import { PULL_TAG } from '@execenv/qemu';
 * // Writable, and with mapped-file security: what the guest makes there is a plain file on the host.
 * const share = { tag: PULL_TAG, path: '/var/lib/execenv/envs/execenv-1/pull', readOnly: false, security: 'mapped-file' };
 * ```
 */
export const PULL_TAG = 'execenvpull';

/**
 * Where the guest's agent reaches its pull share: the guest's init mounts it
 * outside the guest's root and hands the agent the directory as descriptor
 * 3. The agent is pid 1 of the guest root's pid namespace, so its workers
 * find the directory at `/proc/1/fd/3`; commands inherit no such
 * descriptor, run in pid namespaces of their own (where pid 1 is not the
 * agent), and find the share mounted nowhere in their tree.
 *
 * @example
 * ```ts
 * import { GUEST_PULL_DIR } from '@execenv/qemu';
 * await session.tarOutFile('/work/out', `${GUEST_PULL_DIR}/pull-0123456789abcdef.tar`);
 * ```
 */
export const GUEST_PULL_DIR = '/proc/1/fd/3';

/**
 * Where a guest sees its staging share: read-only, on the agent's own
 * `/dev` (a tmpfs), so nothing is written to the guest's disk for it.
 *
 * @example
 * ```ts
 * import { GUEST_STAGING_DIR } from '@execenv/qemu';
 * await session.tarInFile('/work', `${GUEST_STAGING_DIR}/push-0123456789abcdef.tar`);
 * ```
 */
export const GUEST_STAGING_DIR = '/dev/.execenv-stage';

/**
 * One archive written into the staging directory.
 *
 * @example
 * ```ts
 * import type { StagedArchive } from '@execenv/qemu';
 * declare const archive: StagedArchive;
 * try {
 *   await session.tarInFile('/work', archive.guestPath);
 * } finally {
 *   await archive.remove();
 * }
 * ```
 */
export interface StagedArchive {
  /** The file on the host. */
  readonly hostPath: string;
  /** The same file as the guest's agent opens it. */
  readonly guestPath: string;
  /** Removes the file; a file already gone is not an error. */
  remove(): Promise<void>;
}

/** A host directory shared into a guest, where archives pass under names the host chose. */
abstract class StagingDirectory {
  readonly hostDir: string;
  readonly guestDir: string;
  protected readonly names: () => string;
  protected readonly context: ErrorContext;

  protected constructor(hostDir: string, guestDir: string, names: () => string, context: ErrorContext) {
    this.hostDir = hostDir;
    this.guestDir = guestDir;
    this.names = names;
    this.context = context;
  }

  /** Makes (or takes) the directory, mode 0700, and fills in the options' defaults. */
  protected static async prepare(
    hostDir: string,
    kind: 'push' | 'pull',
    opts: { names?: () => string; context?: ErrorContext },
  ): Promise<{ names: () => string; context: ErrorContext }> {
    const context = opts.context ?? {};
    await makeStagingDir(hostDir, context);
    return { names: opts.names ?? (() => randomName(kind)), context };
  }
}

/**
 * PushStaging is the host side of a guest's staging share: a directory of
 * the environment on the host that QEMU exports read-only over virtio-9p.
 * A push writes its tar archive there and the agent extracts it from the
 * share, so the archive crosses into the guest by 9p's zero-copy reads
 * instead of the serial line. Only the host writes the directory, and only
 * files it creates itself, exclusively and without following a symlink;
 * it never reads anything from it.
 *
 * @example
 * ```ts
 * import { GUEST_STAGING_DIR, PushStaging } from '@execenv/qemu';
 * const staging = await PushStaging.create('/var/lib/execenv/envs/execenv-1/stage', GUEST_STAGING_DIR);
 * const archive = await staging.write(tarStream);
 * try {
 *   await session.tarInFile('/work', archive.guestPath);
 * } finally {
 *   await archive.remove();
 * }
 * ```
 */
export class PushStaging extends StagingDirectory {
  /**
   * Makes (or takes) the staging directory, mode 0700.
   * @param names the file names archives get; random ones by default.
   * @throws UnsafePathError when `hostDir` is a symlink or not a directory.
   */
  static async create(
    hostDir: string,
    guestDir: string,
    opts: { names?: () => string; context?: ErrorContext } = {},
  ): Promise<PushStaging> {
    const { names, context } = await StagingDirectory.prepare(hostDir, 'push', opts);
    return new PushStaging(hostDir, guestDir, names, context);
  }

  /**
   * Packs a host directory with GNU tar straight into a new archive file
   * (`tar --numeric-owner -C dir -cf FILE .`), sparing the copy through this
   * process. On failure the file is removed.
   * @throws UnsafePathError when something already sits at the new file's name; HostCommandError when tar fails.
   */
  async pack(runner: ProcessRunner, dir: string): Promise<StagedArchive> {
    const { archive, file } = await this.#create();
    await file.close();
    try {
      await runner.run(['tar', '--numeric-owner', '-C', dir, '-cf', archive.hostPath, '.'], { env: hostEnv() });
    } catch (err) {
      await archive.remove();
      throw err;
    }
    return archive;
  }

  /**
   * Writes a tar stream into a new archive file. On failure the file is
   * removed and the stream destroyed.
   * @throws UnsafePathError when something already sits at the new file's name; TransportError when writing fails.
   */
  async write(tar: Readable): Promise<StagedArchive> {
    let created: { archive: StagedArchive; file: FileHandle };
    try {
      created = await this.#create();
    } catch (err) {
      tar.destroy();
      throw err;
    }
    const { archive, file } = created;
    const { hostPath } = archive;
    try {
      // The stream closes the file when it ends, whether it finished or failed.
      await pipeline(tar, file.createWriteStream({ highWaterMark: 1 << 20 }));
    } catch (err) {
      tar.destroy();
      await file.close().catch(() => {});
      await archive.remove();
      throw stagingError(`cannot write ${hostPath}`, err, this.context);
    }
    return archive;
  }

  /** Creates a new, empty archive file: exclusively, never through a symlink, mode 0600. */
  async #create(): Promise<{ archive: StagedArchive; file: FileHandle }> {
    const name = checkedName(this.names(), this.context);
    const hostPath = join(this.hostDir, name);
    let file: FileHandle;
    try {
      file = await open(
        hostPath,
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
        0o600,
      );
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST' || (err as NodeJS.ErrnoException).code === 'ELOOP')
        throw new UnsafePathError(hostPath, "something already sits at a new staging file's name", this.context);
      throw stagingError(`cannot create ${hostPath}`, err, this.context);
    }
    const archive: StagedArchive = {
      hostPath,
      guestPath: `${this.guestDir}/${name}`,
      remove: () => unlink(hostPath).catch(() => {}),
    };
    return { archive, file };
  }
}

/**
 * PullStaging is the host side of a guest's pull share: the agent writes a
 * pulled path's archive into it (`tar-out-file`, 9p's zero-copy writes),
 * and the host streams the file into the extraction, through ArchiveGuard
 * as any archive from the guest. The guest can write there, so the host
 * trusts nothing in it: it opens only names it chose itself, with
 * O_NOFOLLOW and O_NONBLOCK, takes only a regular file (fstat), and unlinks
 * the name as soon as the file is open.
 *
 * @example
 * ```ts
 * import { GUEST_PULL_DIR, PullStaging } from '@execenv/qemu';
 * const pulls = await PullStaging.create('/var/lib/execenv/envs/execenv-1/pull', GUEST_PULL_DIR);
 * const tar = pulls.archive((guestPath) => session.tarOutFile('/work/out', guestPath));
 * await extractArchive(tar, { root: './out', destDir: '/' });
 * ```
 */
export class PullStaging extends StagingDirectory {
  /**
   * Makes (or takes) the pull directory, mode 0700.
   * @param names the file names archives get; random ones by default.
   * @throws UnsafePathError when `hostDir` is a symlink or not a directory.
   */
  static async create(
    hostDir: string,
    guestDir: string,
    opts: { names?: () => string; context?: ErrorContext } = {},
  ): Promise<PullStaging> {
    const { names, context } = await StagingDirectory.prepare(hostDir, 'pull', opts);
    return new PullStaging(hostDir, guestDir, names, context);
  }

  /**
   * Streams the archive `write` makes at the guest path it is given, while
   * it is being written: the host reads and extracts as the guest packs.
   * The stream errors with what `write` rejected with, or with
   * UnsafePathError when the file there is a symlink or not a regular file;
   * the file is gone from the directory either way.
   */
  archive(write: (guestPath: string) => Promise<unknown>): Readable {
    const out = new PassThrough({ highWaterMark: 1 << 20 });
    void this.#stream(write, out);
    return out;
  }

  async #stream(write: (guestPath: string) => Promise<unknown>, out: PassThrough): Promise<void> {
    let hostPath: string | undefined;
    let file: FileHandle | undefined;
    try {
      const name = checkedName(this.names(), this.context);
      hostPath = join(this.hostDir, name);
      const writing = new ArchiveWriting(write(`${this.guestDir}/${name}`));
      file = await openWhenMade(hostPath, writing, this.context);
      // A reader that went away (destroyed the stream) ends the reading too.
      while (!out.destroyed) {
        // Whether the guest had finished before this read: then an empty read is the end.
        const finished = writing.settled;
        const chunk = Buffer.allocUnsafe(PULL_CHUNK);
        const { bytesRead } = await file.read(chunk, 0, PULL_CHUNK, null);
        if (bytesRead > 0) {
          if (!out.write(chunk.subarray(0, bytesRead))) await drainedOrGone(out);
        } else if (finished) {
          writing.throwIfFailed();
          break;
        } else {
          await writing.orAfter(PULL_POLL_MS);
        }
      }
      await removeArchive(file, hostPath);
      out.end();
    } catch (err) {
      await removeArchive(file, hostPath);
      out.destroy(stagingError(`cannot read ${hostPath ?? 'a pulled archive'}`, err, this.context) as Error);
    }
  }
}

/** Resolves once `out` takes more, or once it is closed (its reader destroyed it): never waits on a stream that will not drain. */
function drainedOrGone(out: PassThrough): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      out.off('drain', done);
      out.off('close', done);
      resolve();
    };
    out.on('drain', done);
    out.on('close', done);
  });
}

/** How much of a pulled archive is read at a time, and how long to wait when the reader has caught up with the guest. */
const PULL_CHUNK = 1 << 20;
const PULL_POLL_MS = 2;

/** The agent's write of an archive into the pull share, watched while the host reads it. */
class ArchiveWriting {
  settled = false;
  #failure: { err: unknown } | undefined;
  readonly #done: Promise<void>;

  constructor(writing: Promise<unknown>) {
    this.#done = writing.then(
      () => {
        this.settled = true;
      },
      (err: unknown) => {
        this.settled = true;
        this.#failure = { err };
      },
    );
  }

  /** Throws what the write rejected with, once it has. */
  throwIfFailed(): void {
    if (this.#failure) throw this.#failure.err;
  }

  /** Resolves when the write settles or after `ms`, whichever is first. */
  orAfter(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([this.#done, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]).finally(() =>
      clearTimeout(timer),
    );
  }
}

/** Closes and removes a pulled archive, before its stream ends: the directory is empty once the reader has seen the end. */
async function removeArchive(file: FileHandle | undefined, hostPath: string | undefined): Promise<void> {
  await file?.close().catch(() => {});
  if (hostPath) await unlink(hostPath).catch(() => {});
}

/** Opens the archive once the agent has made it; what the agent failed with if it ends without making one. */
async function openWhenMade(hostPath: string, writing: ArchiveWriting, context: ErrorContext): Promise<FileHandle> {
  for (;;) {
    const settled = writing.settled;
    try {
      return await openGuestFile(hostPath, context);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      if (settled) {
        writing.throwIfFailed();
        throw err;
      }
      await writing.orAfter(PULL_POLL_MS);
    }
  }
}

/**
 * Opens a file the guest made, for reading: never through a symlink, never
 * blocking on a fifo, and only a regular file.
 * @throws UnsafePathError when it is a symlink or not a regular file.
 */
async function openGuestFile(hostPath: string, context: ErrorContext): Promise<FileHandle> {
  let file: FileHandle;
  try {
    file = await open(hostPath, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP')
      throw new UnsafePathError(hostPath, 'the guest left a symlink where its archive should be', context);
    throw err;
  }
  const st = await file.stat().catch(async (err: unknown) => {
    await file.close();
    throw err;
  });
  if (!st.isFile()) {
    await file.close();
    throw new UnsafePathError(hostPath, 'the guest left something other than a regular file as its archive', context);
  }
  return file;
}

/** Makes a staging directory, mode 0700, or takes the one there; refuses anything but a directory. */
async function makeStagingDir(hostDir: string, context: ErrorContext): Promise<void> {
  await mkdir(hostDir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw stagingError(`cannot make the staging directory ${hostDir}`, err, context);
  });
  const st = await lstat(hostDir);
  if (!st.isDirectory())
    throw new UnsafePathError(hostDir, 'the staging directory is not a directory (a symlink?)', context);
}

/** A name for a file in a staging directory: a plain file name, not hidden. */
function checkedName(name: string, context: ErrorContext): string {
  if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(name))
    throw new UnsafePathError(name, 'not a plain file name for the staging directory', context);
  return name;
}

function randomName(kind: 'push' | 'pull'): string {
  return `${kind}-${randomBytes(8).toString('hex')}.tar`;
}

/** A system call's failure on the host's side of the staging share; anything else (the source stream's error) as it is. */
function stagingError(what: string, err: unknown, context: ErrorContext): unknown {
  if (err instanceof ExecenvError || !(err instanceof Error) || !(err as NodeJS.ErrnoException).syscall) return err;
  return new TransportError(`execenv: ${what}: ${err.message}`, { ...context, cause: err });
}
