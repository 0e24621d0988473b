import { constants } from 'node:fs';
import { lchown, link, lstat, lutimes, mkdir, open, rm, symlink, unlink, utimes } from 'node:fs/promises';
import { posix } from 'node:path';
import { pipeline, type Readable } from 'node:stream';
import { type Header as Headers, extract as tarExtract } from 'tar-stream';
import { type ErrorContext, ExecenvError, UnsafePathError } from '../errors.js';
import type { ProcessRunner } from '../runner.js';
import { ArchiveGuard, normaliseEntryName } from './archive-guard.js';
import { type IdMap, toHostId } from './id-map.js';
import { resolveInRoot } from './in-root.js';
import { setModeAndOwner } from './metadata.js';

/**
 * Options of extractArchive.
 *
 * @example
 * ```ts
 * import { type ExtractOptions, extractArchive, hostRunner } from '@execenv/core';
 * const range = [{ inside: 0, outside: 100000, count: 65536 }];
 * const opts: ExtractOptions = {
 *   root: '/var/lib/foo/e1/rootfs', // `/` of the environment, seen from the host
 *   destDir: '/srv/www',
 *   runner: hostRunner(), // makes device nodes and fifos
 *   ids: { uids: range, gids: range }, // entry owner 0 becomes host uid 100000
 * };
 * const stats = await extractArchive(tar, opts);
 * ```
 */
export interface ExtractOptions {
  /** The directory that is `/` for every path of the extraction. */
  root: string;
  /** Where entries land, as a path inside `root`. Created when missing. */
  destDir: string;
  /** Keep entries' uid/gid. @default true when running as root */
  owners?: boolean;
  /**
   * The user namespace the root belongs to: entries' owners are ids inside it.
   * An owner not mapped there becomes the namespace's root.
   */
  ids?: IdMap;
  /** Makes device nodes and fifos (mknod, mkfifo); without one they are skipped and counted. */
  runner?: ProcessRunner;
  /** Called with the bytes of file content written so far. */
  onProgress?: (bytes: number) => void;
  /** envId/driver/op for the errors this throws. */
  context?: ErrorContext;
}

/**
 * What an extraction did.
 *
 * @example
 * ```ts
 * import { extractArchive } from '@execenv/core';
 * const stats = await extractArchive(tar, { root: '/tmp/unpacked', destDir: '/' });
 * console.log(`${stats.entries} entries, ${stats.bytes} bytes`);
 * if (stats.skippedSpecial > 0) console.warn(`${stats.skippedSpecial} device node(s) or fifo(s) skipped`);
 * ```
 */
export interface ExtractStats {
  /** Entries extracted. */
  entries: number;
  /** Bytes of file content written. */
  bytes: number;
  /** Device nodes and fifos skipped for lack of a runner. */
  skippedSpecial: number;
}

const WRITE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW;

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

/**
 * Extracts a tar stream below `root` without ever writing outside it: entry
 * names are checked by ArchiveGuard, parents are resolved inside `root` (so
 * a symlink already there, such as `/tmp/x -> /`, stays inside) and the last
 * component is never followed. On an unsafe entry, or any other failure, it
 * removes what this extraction created and rejects; files it overwrote are
 * not restored. Memory stays flat: file content streams straight to disk.
 *
 * @example
 * ```ts
 * import { extractArchive } from '@execenv/core';
 * // unpack what the environment sends into ./out; an entry that would leave ./out rejects with UnsafePathError
 * const stats = await extractArchive(env.pullArchive('/build/out'), { root: './out', destDir: '/' });
 * ```
 */
export async function extractArchive(tar: Readable, opts: ExtractOptions): Promise<ExtractStats> {
  // Attached before the first await: a source already flowing (a child's stdout) must not lose its first bytes.
  const extractor = tarExtract();
  const source = new Promise<void>((resolve, reject) =>
    pipeline(tar, extractor, (err) => (err ? reject(err) : resolve())),
  );
  source.catch(() => {});
  // tar-stream emits entries as events: the iterator must exist before the first one.
  const entries = extractor[Symbol.asyncIterator]();
  const owners = opts.owners ?? process.getuid?.() === 0;
  const destHost = await resolveInRoot(opts.root, opts.destDir, { followFinal: true });
  const destInRoot = destHost.slice(opts.root.replace(/\/$/, '').length) || '/';
  const created: string[] = [];
  const guard = new ArchiveGuard();
  const hostOf = new Map<string, string>([['', destHost]]);
  const parents = new Map<string, string>();
  const dirTimes: [string, Date, number][] = [];
  const stats: ExtractStats = { entries: 0, bytes: 0, skippedSpecial: 0 };

  if (!(await exists(destHost))) {
    await mkdirTracked(destHost, created);
  }

  const parentHost = async (parent: string): Promise<string> => {
    const known = hostOf.get(parent) ?? parents.get(parent);
    if (known) return known;
    const host = await resolveInRoot(opts.root, posix.join(destInRoot, parent), { followFinal: true });
    if (!(await exists(host))) await mkdirTracked(host, created);
    parents.set(parent, host);
    return host;
  };

  try {
    for await (const entry of { [Symbol.asyncIterator]: () => entries }) {
      const header = entry.header as Headers;
      const name = guard.check(header);
      const parent = posix.dirname(name) === '.' ? '' : posix.dirname(name);
      const path = name === '' ? destHost : `${await parentHost(parent)}/${posix.basename(name)}`;
      const existed = name === '' || (await exists(path));
      switch (header.type) {
        case 'directory':
          if (!existed) await mkdirTracked(path, created);
          else if (!(await lstat(path)).isDirectory()) {
            await unlink(path);
            await mkdir(path);
          }
          hostOf.set(name, path);
          break;
        case 'file':
        case 'contiguous-file':
        case undefined:
        case null:
          if (!existed) created.push(path);
          stats.bytes += await writeEntry(path, entry as AsyncIterable<Buffer>, (n) =>
            opts.onProgress?.(stats.bytes + n),
          );
          break;
        case 'symlink':
          if (existed) await unlink(path);
          else created.push(path);
          await symlink(header.linkname ?? '', path);
          break;
        case 'link': {
          const target = hostOf.get(normaliseEntryName(header.linkname ?? ''));
          if (!target) throw new UnsafePathError(header.name, 'hardlink target was not extracted');
          if (existed) await unlink(path);
          else created.push(path);
          await link(target, path);
          break;
        }
        case 'character-device':
        case 'block-device':
        case 'fifo':
          if (!opts.runner) {
            stats.skippedSpecial++;
            entry.resume();
            continue;
          }
          if (existed) await rm(path, { force: true });
          else created.push(path);
          await opts.runner.run(specialArgv(header, path));
          break;
        default:
          // pax and GNU extension headers are folded into entries by tar-stream; anything else is skipped
          entry.resume();
          continue;
      }
      entry.resume();
      guard.record(name, header.type);
      if (name !== '') hostOf.set(name, path);
      await applyMetadata(path, header, owners ? (opts.ids ?? null) : undefined, dirTimes);
      stats.entries++;
    }
    await source;
    // Directory times last, deepest first: writing into a directory changes its mtime.
    for (const [path, mtime] of dirTimes.sort((a, b) => b[2] - a[2])) await utimes(path, mtime, mtime);
    return stats;
  } catch (err) {
    tar.destroy();
    extractor.destroy();
    for (const path of created.reverse()) await rm(path, { recursive: true, force: true }).catch(() => {});
    if (err instanceof ExecenvError) {
      if (opts.context) Object.assign(err, { envId: opts.context.envId, driver: opts.context.driver });
      throw err;
    }
    throw err;
  }
}

async function mkdirTracked(path: string, created: string[]): Promise<void> {
  const first = await mkdir(path, { recursive: true });
  if (first) created.push(first);
}

async function writeEntry(path: string, entry: AsyncIterable<Buffer>, progress: (n: number) => void): Promise<number> {
  let fh = await open(path, WRITE_FLAGS, 0o600).catch(async (err: NodeJS.ErrnoException) => {
    // ELOOP: the name is a symlink; replace the link rather than write through it.
    if (err.code !== 'ELOOP') throw err;
    await unlink(path);
    return open(path, WRITE_FLAGS, 0o600);
  });
  let written = 0;
  try {
    for await (const chunk of entry) {
      await fh.write(chunk);
      written += chunk.length;
      progress(written);
    }
  } finally {
    await fh.close();
    fh = undefined as never;
  }
  return written;
}

function specialArgv(header: Headers, path: string): string[] {
  const mode = ((header.mode ?? 0o644) & 0o7777).toString(8);
  if (header.type === 'fifo') return ['mkfifo', '-m', mode, '--', path];
  const kind = header.type === 'character-device' ? 'c' : 'b';
  return ['mknod', '-m', mode, '--', path, kind, String(header.devmajor ?? 0), String(header.devminor ?? 0)];
}

/** A header's owner as host ids: `ids` undefined means owners are not kept, null means no namespace. */
function hostOwner(header: Headers, ids: IdMap | null | undefined) {
  if (ids === undefined) return undefined;
  const uid = header.uid ?? 0;
  const gid = header.gid ?? 0;
  if (ids === null) return { uid, gid };
  return {
    uid: toHostId(ids.uids, uid) ?? toHostId(ids.uids, 0) ?? 0,
    gid: toHostId(ids.gids, gid) ?? toHostId(ids.gids, 0) ?? 0,
  };
}

async function applyMetadata(
  path: string,
  header: Headers,
  ids: IdMap | null | undefined,
  dirTimes: [string, Date, number][],
) {
  const owner = hostOwner(header, ids);
  if (header.type === 'symlink') {
    if (owner) await lchown(path, owner.uid, owner.gid);
  } else if (header.type !== 'link') await setModeAndOwner(path, header.mode ?? 0o644, owner);
  const mtime = header.mtime ?? new Date();
  if (header.type === 'directory') dirTimes.push([path, mtime, path.split('/').length]);
  else if (header.type !== 'link') await lutimes(path, mtime, mtime);
}
