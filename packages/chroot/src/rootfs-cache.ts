import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  type ExecenvEvent,
  emit,
  extractArchive,
  HostCommandError,
  ImageNotFoundError,
  type ProcessRunner,
  withLock,
} from '@execenv/core';
import { HOST_PATH } from './host-binaries.js';
import { decompressArgv, detectTarball } from './rootfs-format.js';

/** What preparing a root filesystem needs. */
export interface RootfsContext {
  cacheDir: string;
  runner: ProcessRunner;
  onEvent?: (e: ExecenvEvent) => void;
}

const COMPLETE = '.execenv-complete';

/**
 * Returns a directory holding the root filesystem of `image`: the directory
 * itself, or the tarball extracted once (safely) into the cache, where later
 * opens find it. The directory is used read-only as an overlay lower layer.
 */
export async function prepareRootfs(image: string, ctx: RootfsContext): Promise<string> {
  let info: Awaited<ReturnType<typeof stat>>;
  let path: string;
  try {
    path = await realpath(image);
    info = await stat(path);
  } catch {
    throw new ImageNotFoundError(image, 'no such file or directory on the host', { driver: 'chroot', op: 'open' });
  }
  if (info.isDirectory()) return path;
  const format = info.isFile() ? await detectTarball(path) : undefined;
  if (!format)
    throw new ImageNotFoundError(image, 'not a directory or a tarball (plain, gzip, xz, zstd or bzip2)', {
      driver: 'chroot',
      op: 'open',
    });
  // Keyed by identity rather than content so a cache hit costs one stat, not a read of the whole tarball.
  const key = createHash('sha256').update(`${path}\0${info.size}\0${info.mtimeMs}\0${info.ino}`).digest('hex');
  const target = join(ctx.cacheDir, 'rootfs', key.slice(0, 32));
  if (await isComplete(target)) return join(target, 'root');
  await withLock(`${target}.lock`, async () => {
    if (await isComplete(target)) return;
    emit(ctx.onEvent, { type: 'image-convert', reference: image, from: format, to: 'directory' });
    const staging = `${target}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      await mkdir(join(staging, 'root'), { recursive: true, mode: 0o755 });
      await extractTarball(path, format, join(staging, 'root'), ctx);
      await writeFile(
        join(staging, COMPLETE),
        JSON.stringify({ source: path, size: info.size, mtimeMs: info.mtimeMs }),
      );
      await rm(target, { recursive: true, force: true });
      await rename(staging, target);
    } catch (err) {
      await rm(staging, { recursive: true, force: true });
      throw err;
    }
  });
  return join(target, 'root');
}

async function isComplete(dir: string): Promise<boolean> {
  try {
    await readFile(join(dir, COMPLETE));
    return true;
  } catch {
    return false;
  }
}

async function extractTarball(path: string, format: string, dest: string, ctx: RootfsContext): Promise<void> {
  const argv = decompressArgv(format as never, path);
  if (!argv) {
    await extractArchive(createReadStream(path, { highWaterMark: 1 << 20 }), {
      root: dest,
      destDir: '/',
      runner: ctx.runner,
    });
    return;
  }
  const proc = ctx.runner.spawn(argv, { env: { PATH: HOST_PATH }, stdin: 'ignore' });
  let stderr = '';
  proc.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  try {
    await extractArchive(proc.stdout as Readable, { root: dest, destDir: '/', runner: ctx.runner });
  } catch (err) {
    proc.kill('SIGKILL');
    await proc.exited.catch(() => {});
    throw err;
  }
  const exit = await proc.exited;
  if (exit.exitCode !== 0) throw new HostCommandError({ argv, ...exit, stdout: '', stderr });
}
