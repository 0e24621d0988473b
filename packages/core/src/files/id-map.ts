/**
 * One line of a user namespace's uid_map or gid_map.
 *
 * @example
 * ```ts
 * import { type IdRange, toHostId } from '@execenv/core';
 * // the uid_map line "0 100000 65536"
 * const uids: IdRange[] = [{ inside: 0, outside: 100000, count: 65536 }];
 * toHostId(uids, 1000); // 101000
 * ```
 */
export interface IdRange {
  /** First id inside the namespace. */
  inside: number;
  /** First id on the host. */
  outside: number;
  /** Number of ids. */
  count: number;
}

/**
 * The uid and gid maps of a user namespace; absent means ids are the same inside and out.
 *
 * @example
 * ```ts
 * import { extractArchive, type IdMap } from '@execenv/core';
 * const range = [{ inside: 0, outside: 100000, count: 65536 }];
 * const ids: IdMap = { uids: range, gids: range }; // a rootless environment's user namespace
 * await extractArchive(tar, { root: rootfs, destDir: '/', ids });
 * ```
 */
export interface IdMap {
  uids: readonly IdRange[];
  gids: readonly IdRange[];
}

/**
 * The id the kernel shows for host ids not mapped into a user namespace (overflowuid).
 *
 * @example
 * ```ts
 * import { OVERFLOW_ID, toInsideId } from '@execenv/core';
 * const uids = [{ inside: 0, outside: 100000, count: 65536 }];
 * const owner = toInsideId(uids, 0); // host root is not mapped: OVERFLOW_ID
 * if (owner === OVERFLOW_ID) console.warn('owned by an id outside the namespace (shown as nobody)');
 * ```
 */
export const OVERFLOW_ID = 65534;

/**
 * The host id of an id inside the namespace, or undefined when it is not mapped.
 *
 * @example
 * ```ts
 * import { toHostId } from '@execenv/core';
 * const uids = [{ inside: 0, outside: 100000, count: 65536 }];
 * toHostId(uids, 0); // 100000
 * toHostId(uids, 70000); // undefined: not mapped
 * ```
 */
export function toHostId(ranges: readonly IdRange[], id: number): number | undefined {
  const r = ranges.find((x) => id >= x.inside && id < x.inside + x.count);
  return r ? r.outside + (id - r.inside) : undefined;
}

/**
 * The id inside the namespace of a host id; OVERFLOW_ID when it is not mapped, as the kernel shows it.
 *
 * @example
 * ```ts
 * import { toInsideId } from '@execenv/core';
 * const uids = [{ inside: 0, outside: 100000, count: 65536 }];
 * toInsideId(uids, 101000); // 1000
 * toInsideId(uids, 0); // 65534 (OVERFLOW_ID): host root is not mapped
 * ```
 */
export function toInsideId(ranges: readonly IdRange[], id: number): number {
  const r = ranges.find((x) => id >= x.outside && id < x.outside + x.count);
  return r ? r.inside + (id - r.outside) : OVERFLOW_ID;
}
