import { posix } from 'node:path';
import type { FileOptions, FileStat } from '../contract.js';
import { UnsafePathError } from '../errors.js';

/**
 * One file, directory or symlink of a FakeFileSystem.
 *
 * @example
 * ```ts
 * import { FakeDriver, type FakeNode } from '@execenv/core/testing';
 * const env = await new FakeDriver().open({});
 * await build(env); // the code under test
 * const outputs: [string, Readonly<FakeNode>][] = env.files.entries('/out').filter(([, n]) => n.type === 'file');
 * for (const [path, node] of outputs) console.log(path, node.mode.toString(8), node.data.length);
 * ```
 */
export interface FakeNode {
  type: 'file' | 'directory' | 'symlink';
  data: Uint8Array;
  target?: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: Date;
}

/**
 * FakeFileSystem is the in-memory tree of a FakeEnvironment: absolute paths,
 * directories created on demand, symlinks stored but never followed.
 *
 * @example
 * ```ts
 * import { FakeDriver } from '@execenv/core/testing';
 * const env = await new FakeDriver().open({});
 * env.files.writeFile('/src/main.c', new TextEncoder().encode('int main(void) { return 0; }\n'));
 * await build(env); // the code under test: compiles /src and installs into /srv/app
 * expect(env.files.readDir('/srv/app')).toEqual(['app.conf', 'main']);
 * expect(env.files.stat('/srv/app/main')?.mode).toBe(0o755);
 * ```
 */
export class FakeFileSystem {
  readonly #nodes = new Map<string, FakeNode>([['/', dir()]]);

  /** Writes a file, creating its parent directories. */
  writeFile(path: string, data: Uint8Array, opts: FileOptions = {}): void {
    const p = normalise(path);
    this.mkdir(posix.dirname(p));
    this.#nodes.set(p, {
      type: 'file',
      data,
      mode: opts.mode ?? 0o644,
      uid: opts.uid ?? 0,
      gid: opts.gid ?? 0,
      mtime: new Date(),
    });
  }

  /** Creates a directory and its parents. */
  mkdir(path: string, mode = 0o755): void {
    const p = normalise(path);
    if (this.#nodes.has(p)) return;
    this.mkdir(posix.dirname(p));
    this.#nodes.set(p, { ...dir(), mode });
  }

  /** Creates a symlink. */
  symlink(target: string, path: string): void {
    const p = normalise(path);
    this.mkdir(posix.dirname(p));
    this.#nodes.set(p, { ...dir(), type: 'symlink', target, mode: 0o777 });
  }

  /** Sets a path's mode, owner and mtime; no-op when it does not exist. */
  setMeta(path: string, meta: { mode?: number; uid?: number; gid?: number; mtime?: Date }): void {
    const n = this.#nodes.get(normalise(path));
    if (!n) return;
    if (meta.mode !== undefined) n.mode = meta.mode & 0o7777;
    if (meta.uid !== undefined) n.uid = meta.uid;
    if (meta.gid !== undefined) n.gid = meta.gid;
    if (meta.mtime) n.mtime = meta.mtime;
  }

  /** A file's content, or undefined when there is no such file. */
  readFile(path: string): Uint8Array | undefined {
    const n = this.#nodes.get(normalise(path));
    return n?.type === 'file' ? n.data : undefined;
  }

  /** Describes a path, or null. */
  stat(path: string): FileStat | null {
    const n = this.#nodes.get(normalise(path));
    if (!n) return null;
    return {
      type: n.type,
      size: n.type === 'symlink' ? (n.target?.length ?? 0) : n.data.length,
      mode: n.mode,
      uid: n.uid,
      gid: n.gid,
      mtime: n.mtime,
      ...(n.target ? { linkTarget: n.target } : {}),
    };
  }

  /** Sorted names in a directory, or undefined when it is no directory. */
  readDir(path: string): string[] | undefined {
    const p = normalise(path);
    if (this.#nodes.get(p)?.type !== 'directory') return undefined;
    const prefix = p === '/' ? '/' : `${p}/`;
    return [...this.#nodes.keys()]
      .filter((k) => k !== p && k.startsWith(prefix) && !k.slice(prefix.length).includes('/'))
      .map((k) => k.slice(prefix.length))
      .sort();
  }

  /** Every path at or below `path` with its node, parents before children. */
  entries(path: string): [string, Readonly<FakeNode>][] {
    const p = normalise(path);
    return [...this.#nodes.entries()]
      .filter(([k]) => k === p || k.startsWith(p === '/' ? '/' : `${p}/`))
      .sort(([a], [b]) => (a < b ? -1 : 1));
  }

  /** Removes a path and everything below it. */
  remove(path: string): void {
    const p = normalise(path);
    for (const k of [...this.#nodes.keys()]) if (k === p || k.startsWith(`${p}/`)) this.#nodes.delete(k);
  }
}

function dir(): FakeNode {
  return { type: 'directory', data: new Uint8Array(), mode: 0o755, uid: 0, gid: 0, mtime: new Date() };
}

function normalise(path: string): string {
  if (!path.startsWith('/') || path.includes('\0'))
    throw new UnsafePathError(path, 'paths inside an environment are absolute');
  return posix.normalize(path).replace(/(.)\/$/, '$1');
}
