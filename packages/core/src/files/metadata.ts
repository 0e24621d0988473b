import { chmod, lchown } from 'node:fs/promises';

/**
 * Sets a path's permission bits and, when `owner` is given, its owner without
 * following a final symlink. The mode goes first: in a user namespace the
 * mode of a file owned by an unmapped id can no longer be changed. setuid and
 * setgid bits, which chown clears, are set again afterwards.
 *
 * @example
 * ```ts
 * import { setModeAndOwner } from '@execenv/core';
 * // a setuid helper owned by root of a user namespace whose root is host uid 100000
 * await setModeAndOwner('/srv/rootfs/usr/bin/helper', 0o4755, { uid: 100000, gid: 100000 });
 * ```
 */
export async function setModeAndOwner(path: string, mode: number, owner?: { uid: number; gid: number }): Promise<void> {
  await chmod(path, mode & 0o7777);
  if (!owner) return;
  await lchown(path, owner.uid, owner.gid);
  if (mode & 0o6000) await chmod(path, mode & 0o7777);
}
