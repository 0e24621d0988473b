import { lstat, readlink } from 'node:fs/promises';
import { UnsafePathError } from '../errors.js';

/** Most symlinks followed while resolving one path, as the kernel allows. */
export const MAX_SYMLINK_HOPS = 40;

/** Options of resolveInRoot. */
export interface ResolveOptions {
  /** Follow a symlink in the last component too. @default false */
  followFinal?: boolean;
}

/** Splits an absolute in-root path into components, dropping empty and `.` ones. */
export function pathComponents(path: string): string[] {
  return path.split('/').filter((c) => c !== '' && c !== '.');
}

/** Throws UnsafePathError unless `path` is absolute and free of NUL bytes. */
export function assertEnvPath(path: string): void {
  if (typeof path !== 'string' || !path.startsWith('/'))
    throw new UnsafePathError(String(path), 'paths inside an environment must be absolute');
  if (path.includes('\0')) throw new UnsafePathError(path, 'paths must not contain NUL bytes');
}

/**
 * Resolves `path`, as seen by a process chrooted into `root`, to a host path
 * below `root`: symlinks are followed with absolute targets taken relative to
 * `root`, and `..` stops at `root` (the semantics of openat2's
 * RESOLVE_IN_ROOT). Missing components are kept as named. The result is
 * always `root` or below it.
 */
export async function resolveInRoot(root: string, path: string, opts: ResolveOptions = {}): Promise<string> {
  assertEnvPath(path);
  const base = root.endsWith('/') && root.length > 1 ? root.slice(0, -1) : root;
  const resolved: string[] = [];
  const queue = pathComponents(path);
  let hops = 0;
  let missing = false;
  while (queue.length > 0) {
    const c = queue.shift()!;
    if (c === '..') {
      resolved.pop();
      continue;
    }
    const isLast = queue.length === 0;
    if (missing || (isLast && !opts.followFinal)) {
      resolved.push(c);
      continue;
    }
    const candidate = `${base}/${[...resolved, c].join('/')}`;
    let isLink = false;
    try {
      isLink = (await lstat(candidate)).isSymbolicLink();
    } catch {
      missing = true;
    }
    if (!isLink) {
      resolved.push(c);
      continue;
    }
    if (++hops > MAX_SYMLINK_HOPS) throw new UnsafePathError(path, `more than ${MAX_SYMLINK_HOPS} symlinks`);
    const target = await readlink(candidate);
    if (target.startsWith('/')) resolved.length = 0;
    queue.unshift(...pathComponents(target));
  }
  return resolved.length === 0 ? base : `${base}/${resolved.join('/')}`;
}
