import { lstat, readlink } from 'node:fs/promises';
import { UnsafePathError } from '../errors.js';

/**
 * Most symlinks followed while resolving one path, as the kernel allows.
 *
 * @example
 * ```ts
 * import { MAX_SYMLINK_HOPS, resolveInRoot } from '@execenv/core';
 * // with /a -> /b and /b -> /a inside the root, resolving gives up after MAX_SYMLINK_HOPS (40) links
 * await resolveInRoot('/srv/rootfs', '/a', { followFinal: true }); // throws UnsafePathError
 * ```
 */
export const MAX_SYMLINK_HOPS = 40;

/**
 * Options of resolveInRoot.
 *
 * @example
 * ```ts
 * import { type ResolveOptions, resolveInRoot } from '@execenv/core';
 * const follow: ResolveOptions = { followFinal: true };
 * await resolveInRoot('/srv/rootfs', '/etc/resolv.conf', follow); // where the link points, inside the root
 * await resolveInRoot('/srv/rootfs', '/etc/resolv.conf'); // the link itself: '/srv/rootfs/etc/resolv.conf'
 * ```
 */
export interface ResolveOptions {
  /** Follow a symlink in the last component too. @default false */
  followFinal?: boolean;
}

/**
 * Splits an absolute in-root path into components, dropping empty and `.` ones.
 *
 * @example
 * ```ts
 * import { pathComponents } from '@execenv/core';
 * pathComponents('/usr//lib/./x86_64-linux-gnu/'); // ['usr', 'lib', 'x86_64-linux-gnu']
 * pathComponents('/a/../b'); // ['a', '..', 'b']: `..` is left to the resolver
 * ```
 */
export function pathComponents(path: string): string[] {
  return path.split('/').filter((c) => c !== '' && c !== '.');
}

/**
 * Throws UnsafePathError unless `path` is absolute and free of NUL bytes.
 *
 * @example
 * ```ts
 * import { assertEnvPath } from '@execenv/core';
 * // first in a driver's push, stat or readDir:
 * assertEnvPath(dest); // UnsafePathError for 'tmp/x' or a path with a NUL byte
 * ```
 */
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
 *
 * @example
 * ```ts
 * import { resolveInRoot } from '@execenv/core';
 * // with the symlink /srv/rootfs/tmp/x -> /
 * await resolveInRoot('/srv/rootfs', '/tmp/x/etc/passwd'); // '/srv/rootfs/etc/passwd', never the host's
 * await resolveInRoot('/srv/rootfs', '/../../etc'); // '/srv/rootfs/etc': `..` stops at the root
 * ```
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
