import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { posix } from 'node:path';
import { Readable } from 'node:stream';
import { type Header as Headers, pack as tarPack } from 'tar-stream';
import { type ErrorContext, NotFoundError } from '../errors.js';
import { type IdMap, toInsideId } from './id-map.js';
import { resolveInRoot } from './in-root.js';

/**
 * Options of packTree.
 *
 * @example
 * ```ts
 * import { type PackOptions, packTree } from '@execenv/core';
 * const range = [{ inside: 0, outside: 100000, count: 65536 }];
 * const opts: PackOptions = { ids: { uids: range, gids: range }, onProgress: (n) => console.error(`${n} bytes`) };
 * const tar = packTree('/srv/rootfs', '/home/builder/out', opts); // owners as ids inside the namespace
 * ```
 */
export interface PackOptions {
  /** envId/driver for the errors the stream emits. */
  context?: ErrorContext;
  /** The user namespace the root belongs to: owners are written as ids inside it. */
  ids?: IdMap;
  /** Called with the bytes of file content packed so far. */
  onProgress?: (bytes: number) => void;
}

type Stats = Awaited<ReturnType<typeof lstat>>;

function headerOf(name: string, st: Stats, ids?: IdMap): Pick<Headers, 'name' | 'mode' | 'uid' | 'gid' | 'mtime'> {
  return {
    name,
    // With its type bits the mode is never 0, which tar-stream would replace by a default (0o644).
    mode: Number(st.mode),
    uid: ids ? toInsideId(ids.uids, Number(st.uid)) : Number(st.uid),
    gid: ids ? toInsideId(ids.gids, Number(st.gid)) : Number(st.gid),
    mtime: st.mtime,
  };
}

/**
 * Streams `srcPath`, resolved inside `root`, as a tar archive. A directory
 * gives an entry `.` for itself, then its tree with names relative to it
 * (`a`, `sub/b`); a file gives one entry named after its basename. The final
 * component of `srcPath` is followed inside `root` (a link to /etc/shadow
 * packs the root's /etc/shadow, never the host's); links inside the tree are
 * packed as links. A missing path errors the stream with NotFoundError.
 *
 * @example
 * ```ts
 * import { createWriteStream } from 'node:fs';
 * import { pipeline } from 'node:stream/promises';
 * import { packTree } from '@execenv/core';
 * // entries '.', 'bin', 'bin/app', ... of /opt/app inside the root; a missing path errors with NotFoundError
 * await pipeline(packTree('/srv/rootfs', '/opt/app'), createWriteStream('./app.tar'));
 * ```
 */
export function packTree(root: string, srcPath: string, opts: PackOptions = {}): Readable {
  const pack = tarPack();
  let bytes = 0;

  const addFile = (name: string, path: string, st: Stats) =>
    new Promise<void>((resolve, reject) => {
      const sink = pack.entry({ ...headerOf(name, st, opts.ids), type: 'file', size: Number(st.size) }, (err) =>
        err ? reject(err) : resolve(),
      );
      const source = createReadStream(path, { highWaterMark: 1 << 20 });
      source.on('data', (c) => {
        bytes += c.length;
        opts.onProgress?.(bytes);
      });
      source.once('error', reject);
      source.pipe(sink as unknown as NodeJS.WritableStream);
    });

  const links = new Map<string, string>();
  const add = async (name: string, path: string, st: Stats): Promise<void> => {
    if (st.isDirectory()) {
      pack.entry({ ...headerOf(name, st, opts.ids), type: 'directory' });
      const children = (await readdir(path)).sort();
      for (const child of children) {
        const childPath = `${path}/${child}`;
        await add(name === '.' ? child : `${name}/${child}`, childPath, await lstat(childPath));
      }
    } else if (st.isSymbolicLink()) {
      pack.entry({ ...headerOf(name, st, opts.ids), type: 'symlink', linkname: await readlink(path) });
    } else if (st.isFile()) {
      const key = `${st.dev}:${st.ino}`;
      const first = Number(st.nlink) > 1 ? links.get(key) : undefined;
      if (first) pack.entry({ ...headerOf(name, st, opts.ids), type: 'link', linkname: first });
      else {
        if (Number(st.nlink) > 1) links.set(key, name);
        await addFile(name, path, st);
      }
    } else if (st.isFIFO()) {
      pack.entry({ ...headerOf(name, st, opts.ids), type: 'fifo' });
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      const rdev = Number(st.rdev);
      pack.entry({
        ...headerOf(name, st, opts.ids),
        type: st.isCharacterDevice() ? 'character-device' : 'block-device',
        devmajor: (rdev >> 8) & 0xfff,
        devminor: (rdev & 0xff) | ((rdev >> 12) & 0xfff00),
      });
    }
    // sockets cannot be archived: skipped
  };

  (async () => {
    const path = await resolveInRoot(root, srcPath, { followFinal: true });
    const st = await lstat(path).catch(() => undefined);
    if (!st) throw new NotFoundError(srcPath, { ...opts.context, op: 'pull' });
    await add(st.isDirectory() ? '.' : posix.basename(srcPath) || '.', path, st);
    pack.finalize();
  })().catch((err: unknown) => pack.destroy(err as Error));
  // Iterated through a node Readable: node's pipeline misses errors destroyed into a streamx stream.
  return Readable.from(pack);
}
