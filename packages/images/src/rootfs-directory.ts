import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, realpath, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, pipeline, type Readable } from 'node:stream';
import {
  ArchiveGuard,
  type ExecenvEvent,
  emit,
  HostCommandError,
  ImageNotFoundError,
  type ProcessRunner,
} from '@execenv/core';
import { HOST_PATH } from '@execenv/core/driver';
import { extract as tarExtract } from 'tar-stream';
import { markTreeComplete, touchTree } from './cached-trees.js';
import type { ImageCache } from './image-cache.js';
import { decompressArgv, detectTarball, type TarballFormat } from './tarball-format.js';
import { ownedTempName } from './temp-names.js';

/**
 * Bumped whenever the conversion's output changes, so old results are not reused.
 *
 * @example
 * ```ts
 * import { DIRECTORY_CONVERTER_VERSION, ImageCache } from '@execenv/images';
 * const trees = await new ImageCache().listTrees();
 * const outdated = trees.filter((t) => t.version < DIRECTORY_CONVERTER_VERSION); // never reused, only pruned
 * console.log(`${outdated.length} trees extracted by an older converter`);
 * ```
 */
export const DIRECTORY_CONVERTER_VERSION = 2;

const HOST_ENV = { PATH: HOST_PATH };

/**
 * What converting a root filesystem needs.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { convertToQcow2, ImageCache, type RootfsContext, rootfsDirectory } from '@execenv/images';
 * const ctx: RootfsContext = { cache: new ImageCache(), runner: hostRunner(), onEvent: (e) => console.error(e.type) };
 * const root = await rootfsDirectory('./bookworm.tar.zst', ctx);
 * const disk = await convertToQcow2('./bookworm.tar.zst', {}, ctx);
 * ```
 */
export interface RootfsContext {
  cache: ImageCache;
  runner: ProcessRunner;
  onEvent?: (e: ExecenvEvent) => void;
}

/**
 * The sha256 of a file's content, computed once per file identity (path, size, mtime, inode) and remembered.
 *
 * @example
 * ```ts
 * import { fileDigest, ImageCache } from '@execenv/images';
 * const cache = new ImageCache();
 * const digest = await fileDigest('./bookworm.tar.zst', cache); // hashed once per path, size, mtime and inode
 * console.log(await cache.get(digest)); // its blob, when the cache holds one
 * ```
 */
export async function fileDigest(path: string, cache: ImageCache): Promise<string> {
  const st = await stat(path);
  const key = `file-digest\n${path}\n${st.size}\n${st.mtimeMs}\n${st.ino}`;
  const known = await cache.lookupDigest(key);
  if (known) return known;
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  const digest = hash.digest('hex');
  await cache.link(key, digest);
  return digest;
}

/**
 * Returns a directory holding the root filesystem `image`: the directory
 * itself, or the tarball (plain, gzip, xz, zstd or bzip2, detected from its
 * content) extracted safely, once, into the cache, keyed by the tarball's
 * sha256 and the converter version. No entry can land outside that
 * directory, whatever its name or links. Use the result read-only.
 * `subdirectory` names the tree inside the tarball that is the root
 * filesystem (`rootfs` for an LXD unified tarball).
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { ImageCache, rootfsDirectory } from '@execenv/images';
 * const ctx = { cache: new ImageCache(), runner: hostRunner() };
 * const root = await rootfsDirectory('./bookworm.tar.zst', ctx); // extracted once, then reused
 * const unified = await rootfsDirectory('./bookworm-lxd.tar.gz', ctx, 'rootfs'); // its rootfs/ tree
 * ```
 */
export async function rootfsDirectory(image: string, ctx: RootfsContext, subdirectory?: string): Promise<string> {
  let path: string;
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    path = await realpath(image);
    info = await stat(path);
  } catch {
    throw new ImageNotFoundError(image, 'no such file or directory on the host', { op: 'open' });
  }
  if (info.isDirectory()) return path;
  const format = info.isFile() ? await detectTarball(path) : undefined;
  if (!format)
    throw new ImageNotFoundError(image, 'not a directory or a tarball (plain, gzip, xz, zstd or bzip2)', {
      op: 'open',
    });
  const digest = await fileDigest(path, ctx.cache);
  const target = join(ctx.cache.dir, 'converted', `directory-v${DIRECTORY_CONVERTER_VERSION}`, digest);
  const rootOf = async () => {
    const root = join(target, 'root', subdirectory ?? '');
    // lstat: the tree must be a real directory of the tarball, never a link it planted.
    if (!(await lstat(root).catch(() => undefined))?.isDirectory())
      throw new ImageNotFoundError(image, `the tarball has no ${subdirectory}/ tree`, { op: 'open' });
    return root;
  };
  if (await touchTree(target)) return rootOf();
  await ctx.cache.withKey(`directory\n${digest}`, async () => {
    if (await touchTree(target)) return;
    emit(ctx.onEvent, { type: 'image-convert', reference: image, from: format, to: 'directory' });
    // Named for this process: should it die mid-extraction, the next sweep of the cache removes it.
    const staging = `${target}.${await ownedTempName()}.tmp`;
    try {
      await mkdir(join(staging, 'root'), { recursive: true, mode: 0o755 });
      const size = await extractTarball(path, format, join(staging, 'root'), ctx.runner);
      await markTreeComplete(staging, { source: path, digest, format }, size);
      await rm(target, { recursive: true, force: true });
      await rename(staging, target);
    } catch (err) {
      await rm(staging, { recursive: true, force: true });
      throw err;
    }
  });
  return rootOf();
}

/**
 * Streams a tarball's decompressed content, through the host's decompressor.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { detectTarball, openTarball, scanArchive } from '@execenv/images';
 * const format = await detectTarball('./rootfs.tar.xz');
 * if (format) {
 *   const tar = openTarball('./rootfs.tar.xz', format, hostRunner()); // xz -dc on the host
 *   console.log(await scanArchive(tar.stream), 'bytes of file content');
 *   await tar.done(); // rejects with HostCommandError when the decompressor failed
 * }
 * ```
 */
export function openTarball(
  path: string,
  format: TarballFormat,
  runner: ProcessRunner,
): { stream: Readable; done: () => Promise<void>; kill: () => void } {
  const argv = decompressArgv(format, path);
  if (!argv) {
    const stream = createReadStream(path, { highWaterMark: 1 << 20 });
    return { stream, done: async () => {}, kill: () => stream.destroy() };
  }
  const proc = runner.spawn(argv, { env: HOST_ENV, stdin: 'ignore' });
  let stderr = '';
  proc.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  return {
    stream: proc.stdout as Readable,
    kill: () => {
      proc.kill('SIGKILL');
      // Output nobody reads any more must still drain, or the process is never reported done.
      (proc.stdout as Readable).resume();
    },
    done: async () => {
      const exit = await proc.exited;
      if (exit.exitCode !== 0) throw new HostCommandError({ argv, ...exit, stdout: '', stderr });
    },
  };
}

/**
 * Checks every entry of a tar stream with ArchiveGuard without writing
 * anything; rejects with UnsafePathError at the first bad one. Resolves
 * with the bytes of file content the archive holds.
 *
 * @example
 * ```ts
 * import { hasCode } from '@execenv/core';
 * import { scanArchive } from '@execenv/images';
 * import { createReadStream } from 'node:fs';
 * const bytes = await scanArchive(createReadStream('./upload.tar')).catch((err: unknown) => {
 *   if (hasCode(err, 'UNSAFE_PATH')) console.error('refused:', err.message);
 *   throw err;
 * });
 * ```
 */
export async function scanArchive(tar: Readable): Promise<number> {
  const extractor = tarExtract();
  const entries = extractor[Symbol.asyncIterator]();
  const done = new Promise<void>((resolve, reject) =>
    pipeline(tar, extractor, (err) => (err ? reject(err) : resolve())),
  );
  done.catch(() => {});
  const guard = new ArchiveGuard();
  let size = 0;
  for await (const entry of { [Symbol.asyncIterator]: () => entries }) {
    const name = guard.check(entry.header);
    guard.record(name, entry.header.type);
    if (entry.header.type === 'file' || entry.header.type === 'contiguous-file') size += entry.header.size ?? 0;
    entry.resume();
  }
  await done;
  return size;
}

/**
 * Extracts with GNU tar into `dest`, a fresh empty directory (so no symlink
 * of anyone else's is in its way, and tar writes nothing outside it), while
 * the same decompressed stream goes through scanArchive: an unsafe entry
 * kills tar and rejects with UnsafePathError; the caller removes `dest`.
 * Resolves with the bytes of file content extracted.
 */
async function extractTarball(
  path: string,
  format: TarballFormat,
  dest: string,
  runner: ProcessRunner,
): Promise<number> {
  const source = openTarball(path, format, runner);
  const root = process.getuid?.() === 0;
  // Extended attributes carry file capabilities (security.capability) and ACLs; only root may set those.
  const xattrs = ['--xattrs', `--xattrs-include=${root ? '*' : 'user.*'}`];
  const owners = root ? ['--same-owner'] : ['--no-same-owner'];
  const tarArgv = ['tar', '--numeric-owner', '--same-permissions', ...owners, ...xattrs, '-C', dest, '-xf', '-'];
  const tar = runner.spawn(tarArgv, { env: HOST_ENV, stdout: 'ignore' });
  let tarErr = '';
  tar.stderr?.on('data', (c: Buffer) => (tarErr += c.toString()));
  tar.stdin?.on('error', () => {});
  const scan = new PassThrough({ highWaterMark: 1 << 20 });
  source.stream.pipe(scan);
  if (tar.stdin) source.stream.pipe(tar.stdin);
  let size: number;
  try {
    size = await scanArchive(scan);
    const exit = await tar.exited;
    if (exit.exitCode !== 0) throw new HostCommandError({ argv: tarArgv, ...exit, stdout: '', stderr: tarErr });
  } catch (err) {
    tar.kill('SIGKILL');
    source.kill();
    await Promise.allSettled([tar.exited, source.done()]);
    throw err;
  }
  await source.done();
  return size;
}
