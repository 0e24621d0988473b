import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, lstat, mkdir, readdir, readlink, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { FileOptions, FileStat } from '../contract.js';
import { type ErrorContext, InvalidSpecError, NotFoundError } from '../errors.js';
import type { ProcessRunner } from '../runner.js';
import { extractArchive } from './extract.js';
import { type IdMap, toHostId, toInsideId } from './id-map.js';
import { assertEnvPath, resolveInRoot } from './in-root.js';
import { setModeAndOwner } from './metadata.js';
import { packTree } from './pack.js';
import { tarCopy } from './tar-copy.js';

/**
 * A copy that moved bytes, for progress events.
 *
 * @example
 * ```ts
 * import { type CopyProgress, RootedFiles } from '@execenv/core';
 * const onCopy = (e: CopyProgress) => console.error(`${e.direction} ${e.path}: ${e.bytes} bytes`);
 * const files = new RootedFiles('/var/lib/foo/e1/rootfs', { onCopy });
 * ```
 */
export interface CopyProgress {
  direction: 'push' | 'pull';
  path: string;
  bytes: number;
}

/**
 * Options of RootedFiles.
 *
 * @example
 * ```ts
 * import { emit, hostRunner, RootedFiles, type RootedFilesOptions } from '@execenv/core';
 * const opts: RootedFilesOptions = {
 *   runner: hostRunner(), // device nodes, fifos, and GNU tar for directories
 *   context: { envId: id, driver: 'foo' },
 *   onCopy: (e) => emit(onEvent, { type: 'copy', envId: id, ...e }),
 * };
 * const files = new RootedFiles('/var/lib/foo/e1/rootfs', opts);
 * ```
 */
export interface RootedFilesOptions {
  /** Makes device nodes and fifos when extracting archives. */
  runner?: ProcessRunner;
  /** envId and driver for errors. */
  context?: ErrorContext;
  /** The user namespace of the environment, when its ids differ from the host's. */
  ids?: IdMap;
  /** Called when a push or pull finishes. */
  onCopy?: (e: CopyProgress) => void;
}

const isRoot = () => process.getuid?.() === 0;

function typeOf(st: Awaited<ReturnType<typeof lstat>>): FileStat['type'] {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symlink';
  return 'other';
}

/**
 * RootedFiles is the file half of an Environment for backends whose root
 * filesystem is a directory the host can open (chroot, systemd-nspawn).
 * Every path resolves inside the root, so symlinks in the environment can
 * never make a push write, or a pull read, outside it.
 *
 * @deprecated Paths are resolved on the host, and a process inside the
 * environment can swap a directory for a symlink between that check and the
 * write or read, racing it out of the root. Run file operations through the
 * in-environment agent instead: `AgentEnvironment` from
 * `@execenv/core/driver` (see docs/third-party-drivers.md).
 *
 * @example
 * ```ts
 * import { hostRunner, RootedFiles } from '@execenv/core';
 * // in a BaseEnvironment whose root filesystem is the host directory `rootfs`:
 * const files = new RootedFiles(rootfs, { runner: hostRunner(), context: { envId: this.id, driver: 'foo' } });
 * await files.push(new TextEncoder().encode('nameserver 10.0.2.3\n'), '/etc/resolv.conf', { mode: 0o644 });
 * await files.pull('/build/out', '/home/me/out');
 * ```
 */
export class RootedFiles {
  readonly #root: string;
  readonly #opts: RootedFilesOptions;

  constructor(root: string, opts: RootedFilesOptions = {}) {
    this.#root = root;
    this.#opts = opts;
  }

  #ctx(op: string): ErrorContext {
    return { ...this.#opts.context, op };
  }

  /** Copies a host file or directory, bytes, or a stream into the environment at `dest`. */
  async push(src: string | Uint8Array | Readable, dest: string, opts: FileOptions = {}): Promise<void> {
    assertEnvPath(dest);
    if (typeof src === 'string') {
      const st = await stat(src).catch(() => undefined);
      if (!st) throw new NotFoundError(src, { ...this.#ctx('push'), envId: undefined });
      if (st.isDirectory()) {
        if (await this.#pushTreeWithTar(src, dest)) return;
        const result = await extractArchive(packTree('/', src), {
          root: this.#root,
          destDir: dest,
          runner: this.#opts.runner,
          ids: this.#opts.ids,
          context: this.#ctx('push'),
        });
        this.#opts.onCopy?.({ direction: 'push', path: dest, bytes: result.bytes });
        return;
      }
      return this.#writeFile(createReadStream(src, { highWaterMark: 1 << 20 }), dest, {
        mode: st.mode & 0o7777,
        ...opts,
      });
    }
    return this.#writeFile(src instanceof Uint8Array ? Readable.from([Buffer.from(src)]) : src, dest, opts);
  }

  /**
   * The fast path of a directory push: GNU tar unpacks into a fresh staging
   * directory (no symlink of the environment's can be in its way), renamed
   * onto the destination resolved inside the root. Taken only when the
   * destination does not exist yet and ids need no mapping.
   */
  async #pushTreeWithTar(src: string, dest: string): Promise<boolean> {
    const runner = this.#opts.runner;
    if (!runner || this.#opts.ids) return false;
    const target = await resolveInRoot(this.#root, dest, { followFinal: true });
    if (
      await lstat(target).then(
        () => true,
        () => false,
      )
    )
      return false;
    await mkdir(dirname(target), { recursive: true });
    const stage = `${dirname(target)}/.execenv-stage-${randomBytes(6).toString('hex')}`;
    try {
      await mkdir(stage, { mode: 0o700 });
      const bytes = await tarCopy(runner, src, stage);
      await rename(stage, target);
      this.#opts.onCopy?.({ direction: 'push', path: dest, bytes });
      return true;
    } catch (err) {
      await rm(stage, { recursive: true, force: true });
      throw err;
    }
  }

  async #writeFile(content: Readable, dest: string, opts: FileOptions): Promise<void> {
    const target = await resolveInRoot(this.#root, dest, { followFinal: true });
    const existing = await lstat(target).catch(() => undefined);
    if (existing?.isDirectory())
      throw new InvalidSpecError('dest', `${dest} is a directory; name the file to write`, this.#ctx('push'));
    await mkdir(dirname(target), { recursive: true });
    // Write beside the target and rename: a failed push leaves no partial file.
    const tmp = `${dirname(target)}/.execenv-${randomBytes(6).toString('hex')}`;
    let bytes = 0;
    const count = new Transform({
      transform(chunk: Buffer, _enc, done) {
        bytes += chunk.length;
        done(null, chunk);
      },
    });
    try {
      await pipeline(content, count, createWriteStream(tmp, { flags: 'wx', mode: 0o600 }));
      await setModeAndOwner(
        tmp,
        opts.mode ?? 0o644,
        isRoot() ? this.#hostOwner(opts.uid ?? 0, opts.gid ?? 0) : undefined,
      );
      await rename(tmp, target);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    this.#opts.onCopy?.({ direction: 'push', path: dest, bytes });
  }

  #hostOwner(uid: number, gid: number): { uid: number; gid: number } {
    const ids = this.#opts.ids;
    if (!ids) return { uid, gid };
    const hostUid = toHostId(ids.uids, uid);
    const hostGid = toHostId(ids.gids, gid);
    if (hostUid === undefined)
      throw new InvalidSpecError('uid', `${uid} is not mapped in this environment's user namespace`, this.#ctx('push'));
    if (hostGid === undefined)
      throw new InvalidSpecError('gid', `${gid} is not mapped in this environment's user namespace`, this.#ctx('push'));
    return { uid: hostUid, gid: hostGid };
  }

  /** Copies a file or directory of the environment to the host path `dest`. */
  async pull(src: string, dest: string): Promise<void> {
    assertEnvPath(src);
    const source = await resolveInRoot(this.#root, src, { followFinal: true });
    const st = await lstat(source).catch(() => undefined);
    if (!st) throw new NotFoundError(src, this.#ctx('pull'));
    if (st.isDirectory()) {
      await mkdir(dest, { recursive: true });
      if (this.#opts.runner && !this.#opts.ids) {
        // tar never follows symlinks while archiving, and `source` was resolved inside the root.
        const bytes = await tarCopy(this.#opts.runner, source, dest);
        this.#opts.onCopy?.({ direction: 'pull', path: src, bytes });
        return;
      }
      const result = await extractArchive(
        packTree(this.#root, src, { context: this.#ctx('pull'), ids: this.#opts.ids }),
        {
          root: dest,
          destDir: '/',
          runner: this.#opts.runner,
          context: this.#ctx('pull'),
        },
      );
      this.#opts.onCopy?.({ direction: 'pull', path: src, bytes: result.bytes });
      return;
    }
    if (!st.isFile()) throw new InvalidSpecError('src', `${src} is neither a file nor a directory`, this.#ctx('pull'));
    const tmp = `${dest}.execenv-${randomBytes(6).toString('hex')}`;
    try {
      await pipeline(
        createReadStream(source, { highWaterMark: 1 << 20 }),
        createWriteStream(tmp, { flags: 'wx', mode: 0o600 }),
      );
      await chmod(tmp, st.mode & 0o7777);
      await rename(tmp, dest);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    this.#opts.onCopy?.({ direction: 'pull', path: src, bytes: st.size });
  }

  /** Extracts a tar stream into `destDir`; unsafe entries reject with UnsafePathError. */
  async pushArchive(tar: Readable, destDir: string): Promise<void> {
    const result = await extractArchive(tar, {
      root: this.#root,
      destDir,
      runner: this.#opts.runner,
      ids: this.#opts.ids,
      context: this.#ctx('pushArchive'),
    });
    this.#opts.onCopy?.({ direction: 'push', path: destDir, bytes: result.bytes });
  }

  /** Streams `srcPath` as tar (see packTree for entry names). */
  pullArchive(srcPath: string): Readable {
    return packTree(this.#root, srcPath, { context: this.#ctx('pullArchive'), ids: this.#opts.ids });
  }

  /** Describes `path` without following a final symlink; null when missing. */
  async stat(path: string): Promise<FileStat | null> {
    const target = await resolveInRoot(this.#root, path);
    const st = await lstat(target).catch(() => undefined);
    if (!st) return null;
    return {
      type: typeOf(st),
      size: st.size,
      mode: st.mode & 0o7777,
      uid: this.#opts.ids ? toInsideId(this.#opts.ids.uids, st.uid) : st.uid,
      gid: this.#opts.ids ? toInsideId(this.#opts.ids.gids, st.gid) : st.gid,
      mtime: st.mtime,
      ...(st.isSymbolicLink() ? { linkTarget: await readlink(target) } : {}),
    };
  }

  /** Sorted names in the directory at `path`. */
  async readDir(path: string): Promise<string[]> {
    const target = await resolveInRoot(this.#root, path, { followFinal: true });
    try {
      return (await readdir(target)).sort();
    } catch {
      throw new NotFoundError(path, this.#ctx('readDir'));
    }
  }
}
