/** One line of a user namespace's uid_map or gid_map. */
export interface IdRange {
  /** First id inside the namespace. */
  inside: number;
  /** First id on the host. */
  outside: number;
  /** Number of ids. */
  count: number;
}

/** The uid and gid maps of a user namespace; absent means ids are the same inside and out. */
export interface IdMap {
  uids: readonly IdRange[];
  gids: readonly IdRange[];
}

/** The id the kernel shows for host ids not mapped into a user namespace (overflowuid). */
export const OVERFLOW_ID = 65534;

/** The host id of an id inside the namespace, or undefined when it is not mapped. */
export function toHostId(ranges: readonly IdRange[], id: number): number | undefined {
  const r = ranges.find((x) => id >= x.inside && id < x.inside + x.count);
  return r ? r.outside + (id - r.inside) : undefined;
}

/** The id inside the namespace of a host id; OVERFLOW_ID when it is not mapped, as the kernel shows it. */
export function toInsideId(ranges: readonly IdRange[], id: number): number {
  const r = ranges.find((x) => id >= x.outside && id < x.outside + x.count);
  return r ? r.inside + (id - r.outside) : OVERFLOW_ID;
}
