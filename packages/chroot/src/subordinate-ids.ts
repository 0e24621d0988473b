import { readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import type { IdMap, IdRange } from '@execenv/core';

/** A block of subordinate ids from /etc/subuid or /etc/subgid. */
export interface SubordinateRange {
  start: number;
  count: number;
}

/** The first range of /etc/subuid-style `text` that belongs to `name` or `id`. */
export function findSubordinateRange(text: string, name: string, id: number): SubordinateRange | undefined {
  for (const line of text.split('\n')) {
    const [owner, start, count] = line.trim().split(':');
    if ((owner === name || owner === String(id)) && /^\d+$/.test(start ?? '') && /^\d+$/.test(count ?? ''))
      return { start: Number(start), count: Number(count) };
  }
  return undefined;
}

/** The subordinate uid and gid ranges of the current user, when both exist. */
export async function currentSubordinateIds(): Promise<{ uids: SubordinateRange; gids: SubordinateRange } | undefined> {
  const me = userInfo();
  const read = (f: string) => readFile(f, 'utf8').catch(() => '');
  const uids = findSubordinateRange(await read('/etc/subuid'), me.username, me.uid);
  const gids = findSubordinateRange(await read('/etc/subgid'), me.username, me.gid);
  return uids && gids ? { uids, gids } : undefined;
}

/**
 * The id map of a rootless environment: the current user is root inside; with
 * subordinate ids, ids 1.. map onto them (what `unshare --map-root-user
 * --map-users=... --map-groups=...` sets up).
 */
export function rootlessIdMap(
  uid: number,
  gid: number,
  sub?: { uids: SubordinateRange; gids: SubordinateRange },
): IdMap {
  const range = (outside: number, s?: SubordinateRange): IdRange[] => [
    { inside: 0, outside, count: 1 },
    ...(s ? [{ inside: 1, outside: s.start, count: s.count }] : []),
  ];
  return { uids: range(uid, sub?.uids), gids: range(gid, sub?.gids) };
}

/** The unshare options that create that map. */
export function rootlessMapArgs(sub?: { uids: SubordinateRange; gids: SubordinateRange }): string[] {
  if (!sub) return ['--map-root-user'];
  return [
    '--map-root-user',
    `--map-users=${sub.uids.start},1,${sub.uids.count}`,
    `--map-groups=${sub.gids.start},1,${sub.gids.count}`,
  ];
}
